package devidp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// logoutReceiver is a relying party's back-channel logout endpoint.
type logoutReceiver struct {
	srv    *httptest.Server
	mu     sync.Mutex
	tokens []string
	ctypes []string
	status int
}

func newLogoutReceiver(t *testing.T) *logoutReceiver {
	t.Helper()
	r := &logoutReceiver{status: http.StatusOK}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		_ = req.ParseForm()
		r.mu.Lock()
		r.tokens = append(r.tokens, req.PostForm.Get("logout_token"))
		r.ctypes = append(r.ctypes, req.Header.Get("Content-Type"))
		st := r.status
		r.mu.Unlock()
		w.WriteHeader(st)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *logoutReceiver) received() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.tokens...)
}

// backchannelBed is a testbed whose confidential client has a back-channel
// logout URI served by rcv.
func backchannelBed(t *testing.T) (*testbed, *logoutReceiver) {
	rcv := newLogoutReceiver(t)
	tb := newTestbed(t, func(c *Config) {
		c.Clients[0].BackchannelLogoutURI = rcv.srv.URL + "/backchannel"
		c.BackchannelClient = rcv.srv.Client()
	})
	return tb, rcv
}

// verifyLogoutToken checks a logout token the way a relying party must
// (Back-Channel Logout 1.0 §2.6), with go-jose against the JWKS.
func verifyLogoutToken(t *testing.T, tb *testbed, raw string) map[string]json.RawMessage {
	t.Helper()
	jws, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatalf("parse logout token: %v", err)
	}
	if typ, _ := jws.Signatures[0].Header.ExtraHeaders["typ"].(string); typ != "logout+jwt" {
		t.Errorf("typ = %q, want logout+jwt", typ)
	}
	set := tb.jwks(t)
	keys := set.Key(jws.Signatures[0].Header.KeyID)
	if len(keys) != 1 {
		t.Fatalf("kid %q: %d keys in JWKS", jws.Signatures[0].Header.KeyID, len(keys))
	}
	payload, err := jws.Verify(keys[0].Key)
	if err != nil {
		t.Fatalf("verify logout token: %v", err)
	}
	var c map[string]json.RawMessage
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	var iss string
	var aud []string
	var iat, exp int64
	var events map[string]json.RawMessage
	_ = json.Unmarshal(c["iss"], &iss)
	_ = json.Unmarshal(c["aud"], &aud)
	_ = json.Unmarshal(c["iat"], &iat)
	_ = json.Unmarshal(c["exp"], &exp)
	_ = json.Unmarshal(c["events"], &events)
	if iss != tb.srv.URL || len(aud) != 1 || aud[0] != confidentialC {
		t.Errorf("iss, aud = %q, %v", iss, aud)
	}
	now := time.Now().Unix()
	if iat < now-60 || iat > now+5 || exp <= now || exp > now+300 {
		t.Errorf("iat, exp = %d, %d (now %d)", iat, exp, now)
	}
	if _, ok := c["jti"]; !ok {
		t.Error("no jti")
	}
	if ev, ok := events["http://schemas.openid.net/event/backchannel-logout"]; !ok || string(ev) != "{}" {
		t.Errorf("events = %s", c["events"])
	}
	if _, ok := c["nonce"]; ok {
		t.Error("logout token carries a nonce")
	}
	return c
}

func TestBackchannelLogoutBySID(t *testing.T) {
	tb, rcv := backchannelBed(t)
	c, _ := tb.login(t, "bob", "bob-pw", "")

	status, err := tb.idp.SendBackchannelLogout(context.Background(), c.SID)
	if err != nil || status != http.StatusOK {
		t.Fatalf("SendBackchannelLogout = %d, %v", status, err)
	}
	got := rcv.received()
	if len(got) != 1 {
		t.Fatalf("%d logout tokens received", len(got))
	}
	if rcv.ctypes[0] != "application/x-www-form-urlencoded" {
		t.Errorf("content type %q", rcv.ctypes[0])
	}
	claims := verifyLogoutToken(t, tb, got[0])
	if string(claims["sid"]) != `"`+c.SID+`"` || string(claims["sub"]) != `"u-bob"` {
		t.Errorf("sid, sub = %s, %s", claims["sid"], claims["sub"])
	}

	// The session is over: the same sid is unknown now.
	if _, err := tb.idp.SendBackchannelLogout(context.Background(), c.SID); !errors.Is(err, ErrUnknownLogoutTarget) {
		t.Errorf("second logout of the same sid: %v, want ErrUnknownLogoutTarget", err)
	}
}

func TestBackchannelLogoutBySubject(t *testing.T) {
	tb, rcv := backchannelBed(t)
	tb.login(t, "bob", "bob-pw", "")
	status, err := tb.idp.SendBackchannelLogout(context.Background(), "u-bob")
	if err != nil || status != http.StatusOK {
		t.Fatalf("SendBackchannelLogout = %d, %v", status, err)
	}
	got := rcv.received()
	if len(got) != 1 {
		t.Fatalf("%d logout tokens", len(got))
	}
	claims := verifyLogoutToken(t, tb, got[0])
	if _, ok := claims["sid"]; ok || string(claims["sub"]) != `"u-bob"` {
		t.Errorf("sid, sub = %s, %s; want sub only", claims["sid"], claims["sub"])
	}
}

func TestBackchannelLogoutReportsStatus(t *testing.T) {
	tb, rcv := backchannelBed(t)
	rcv.status = http.StatusBadRequest
	c, _ := tb.login(t, "bob", "bob-pw", "")
	status, err := tb.idp.SendBackchannelLogout(context.Background(), c.SID)
	if err != nil || status != http.StatusBadRequest {
		t.Fatalf("SendBackchannelLogout = %d, %v; want 400, nil", status, err)
	}
}

func TestBackchannelLogoutErrors(t *testing.T) {
	tb := newTestbed(t, nil) // no client has a back-channel URI
	c, _ := tb.login(t, "bob", "bob-pw", "")
	if _, err := tb.idp.SendBackchannelLogout(context.Background(), c.SID); !errors.Is(err, ErrNoBackchannelClient) {
		t.Errorf("err = %v, want ErrNoBackchannelClient", err)
	}
	if _, err := tb.idp.SendBackchannelLogout(context.Background(), "nobody"); !errors.Is(err, ErrUnknownLogoutTarget) {
		t.Errorf("err = %v, want ErrUnknownLogoutTarget", err)
	}
}
