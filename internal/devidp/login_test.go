package devidp

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestLoginFormCSRF(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	for name, csrf := range map[string]string{"missing": "", "wrong": "x" + f.form.hidden.Get("csrf")} {
		t.Run(name, func(t *testing.T) {
			v := url.Values{"authRequestID": {f.form.hidden.Get("authRequestID")}, "csrf": {csrf}, "username": {"bob"}, "password": {"bob-pw"}}
			resp, err := f.browser.PostForm(f.form.action, v)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Fatalf("status %d, want 403", resp.StatusCode)
			}
		})
	}
	// The genuine form still works.
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	f.code(t, loc)
}

func TestLoginFormNotReusable(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	f.code(t, loc)
	if loc, page := f.submit(t, "alice", "alice-pw", ""); loc != nil || page.status != http.StatusBadRequest {
		t.Fatalf("second submission: %v, %d; want 400", loc, page.status)
	}
}

func TestLoginFormUnknownRequest(t *testing.T) {
	tb := newTestbed(t, nil)
	for _, q := range []string{"", "?authRequestID=nope"} {
		resp, err := tb.srv.Client().Get(tb.srv.URL + pathLogin + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: status %d, want 400", q, resp.StatusCode)
		}
	}
}

func TestLoginFormEscapes(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	_, page := f.submit(t, `"><script>alert(1)</script>`, "x", "")
	if strings.Contains(page.body, "<script>alert(1)") {
		t.Fatal("username echoed unescaped")
	}
	if page.username != `"><script>alert(1)</script>` {
		t.Errorf("username round trip = %q", page.username)
	}
}

func TestLoginFormHeaders(t *testing.T) {
	tb := newTestbed(t, nil)
	b := tb.browser(t)
	resp, err := b.Get(tb.conf.AuthCodeURL("st", s256(t)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Cache-Control") != "no-store" || !strings.Contains(resp.Header.Get("Content-Security-Policy"), "frame-ancestors 'none'") {
		t.Errorf("headers: %v", resp.Header)
	}
}
