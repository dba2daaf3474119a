package devidp

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"testing"
)

// endSessionURL is the end_session_endpoint from discovery.
func (tb *testbed) endSessionURL(t *testing.T) string {
	t.Helper()
	var d struct {
		EndSession string `json:"end_session_endpoint"`
	}
	if err := tb.rp.Claims(&d); err != nil || d.EndSession == "" {
		t.Fatalf("end_session_endpoint: %q, %v", d.EndSession, err)
	}
	return d.EndSession
}

func TestEndSessionRedirectsToRegisteredURI(t *testing.T) {
	tb, _ := backchannelBed(t)
	c, raw := tb.login(t, "bob", "bob-pw", "")
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {rpPostLogout}, "state": {"bye"}}
	resp, err := tb.browser(t).Get(tb.endSessionURL(t) + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := resp.Location()
	if resp.StatusCode != http.StatusFound || loc == nil || loc.Scheme+"://"+loc.Host+loc.Path != rpPostLogout || loc.Query().Get("state") != "bye" {
		t.Fatalf("status %d, location %v; want %s?state=bye", resp.StatusCode, loc, rpPostLogout)
	}
	// The login session is gone.
	if _, err := tb.idp.SendBackchannelLogout(context.Background(), c.SID); !errors.Is(err, ErrUnknownLogoutTarget) {
		t.Errorf("session still known after end_session: %v", err)
	}
}

func TestEndSessionRefusesUnregisteredURI(t *testing.T) {
	tb := newTestbed(t, nil)
	_, raw := tb.login(t, "bob", "bob-pw", "")
	q := url.Values{"id_token_hint": {raw}, "post_logout_redirect_uri": {"https://evil.example/"}}
	resp, err := tb.browser(t).Get(tb.endSessionURL(t) + "?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc, _ := resp.Location(); loc != nil && loc.Host == "evil.example" {
		t.Fatalf("redirected to %v", loc)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("status %d, want 400", resp.StatusCode)
	}
}

func TestEndSessionWithoutHintGoesToDefaultPage(t *testing.T) {
	tb := newTestbed(t, nil)
	resp, err := tb.browser(t).Get(tb.endSessionURL(t))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != pathLoggedOut {
		t.Errorf("status %d at %s, want 200 at %s", resp.StatusCode, resp.Request.URL.Path, pathLoggedOut)
	}
}
