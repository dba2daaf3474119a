package devidp

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
)

func TestNewReportsEveryProblem(t *testing.T) {
	_, err := New(Config{
		Issuer: "http://idp.example.test",
		Clients: []Client{
			{ID: "a", RedirectURIs: []string{"/relative"}},
			{ID: "a"},
			{RedirectURIs: []string{"https://ok.example/cb"}, BackchannelLogoutURI: "nope"},
		},
		Users: []User{
			{Subject: "s", Username: "u", Password: "p", TOTPSecret: "not base32!"},
			{Subject: "s", Username: "u"},
		},
	})
	if err == nil {
		t.Fatal("New accepted a bad config")
	}
	for _, want := range []string{
		"issuer: \"http://idp.example.test\": must be https unless AllowInsecureIssuer is set",
		"clients[0].redirect_uris[0]: \"/relative\": must be an absolute URL",
		"clients[1].id: duplicate \"a\"",
		"clients[1].redirect_uris: at least one is required",
		"clients[2].id: required",
		"clients[2].backchannel_logout_uri",
		"users[0].totp_secret: not base32",
		"users[1].subject: duplicate \"s\"",
		"users[1].username: duplicate \"u\"",
		"users[1].password: required",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestNewRefusesTrailingSlash(t *testing.T) {
	_, err := New(Config{Issuer: "https://idp.example.test/", Clients: []Client{{ID: "c", RedirectURIs: []string{rpRedirect}}}})
	if err == nil || !strings.Contains(err.Error(), "must not end with a slash") {
		t.Fatalf("err = %v", err)
	}
}

func TestNewNeedsIssuerAndClient(t *testing.T) {
	_, err := New(Config{})
	if err == nil || !strings.Contains(err.Error(), "issuer: required") || !strings.Contains(err.Error(), "clients: at least one") {
		t.Fatalf("err = %v", err)
	}
}

// An http issuer works only with AllowInsecureIssuer.
func TestAllowInsecureIssuer(t *testing.T) {
	srv := httptest.NewServer(nil)
	defer srv.Close()
	cfg := Config{Issuer: srv.URL, Clients: []Client{{ID: "c", RedirectURIs: []string{rpRedirect}}}}
	if _, err := New(cfg); err == nil {
		t.Fatal("http issuer accepted without AllowInsecureIssuer")
	}
	cfg.AllowInsecureIssuer = true
	idp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = idp.Handler()
	if _, err := oidc.NewProvider(t.Context(), srv.URL); err != nil {
		t.Fatalf("discovery over http: %v", err)
	}
}

// An issuer with a path: the handler is mounted under it and every endpoint,
// the login form included, lives below it.
func TestIssuerWithPath(t *testing.T) {
	mux := http.NewServeMux()
	srv := httptest.NewTLSServer(mux)
	defer srv.Close()
	idp, err := New(Config{
		Issuer:  srv.URL + "/idp",
		Clients: []Client{{ID: confidentialC, Secret: confidentialS, RedirectURIs: []string{rpRedirect}}},
		Users:   testUsers,
	})
	if err != nil {
		t.Fatal(err)
	}
	mux.Handle("/idp/", idp.Handler())
	full := attachRP(t, srv, idp, nil, srv.URL+"/idp")
	f := full.start(t)
	if !strings.HasPrefix(f.form.action, srv.URL+"/idp/login") {
		t.Errorf("form action %q", f.form.action)
	}
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	_, raw := full.exchange(t, f, f.code(t, loc))
	if c := full.verify(t, f, raw); c.Iss != srv.URL+"/idp" {
		t.Errorf("iss = %q", c.Iss)
	}
}
