package devidptest_test

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
)

// The whole flow as a relying party in another package would write it.
func TestStartAndLogin(t *testing.T) {
	const secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
	s := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "rp", Secret: "rp-secret", RedirectURIs: []string{"https://rp.test/cb"}}},
		Users:   []devidp.User{{Subject: "u1", Username: "alice", Password: "pw", TOTPSecret: secret}},
	})
	ctx := oidc.ClientContext(context.Background(), s.HTTP.Client())
	ctx = context.WithValue(ctx, oauth2.HTTPClient, s.HTTP.Client())
	p, err := oidc.NewProvider(ctx, s.URL)
	if err != nil {
		t.Fatal(err)
	}
	conf := oauth2.Config{ClientID: "rp", ClientSecret: "rp-secret", Endpoint: p.Endpoint(), RedirectURL: "https://rp.test/cb", Scopes: []string{"openid"}}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Transport: s.HTTP.Client().Transport, Jar: jar,
		CheckRedirect: func(r *http.Request, _ []*http.Request) error {
			if r.URL.Host == "rp.test" {
				return http.ErrUseLastResponse
			}
			return nil
		}}
	verifier := oauth2.GenerateVerifier()
	page, err := browser.Get(conf.AuthCodeURL("st", oauth2.S256ChallengeOption(verifier), oauth2.SetAuthURLParam("acr_values", devidp.ACRMFA)))
	if err != nil {
		t.Fatal(err)
	}
	code, err := devidptest.TOTP(secret, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := devidptest.Login(ctx, browser, page, "alice", "pw", code)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("no redirect: %d", resp.StatusCode)
	}
	tok, err := conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		t.Fatal(err)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: "rp"}).Verify(ctx, tok.Extra("id_token").(string))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		ACR string `json:"acr"`
	}
	if err := idt.Claims(&c); err != nil || c.ACR != devidp.ACRMFA {
		t.Fatalf("acr = %q, %v", c.ACR, err)
	}
}

func TestParseFormRejectsOtherPages(t *testing.T) {
	if _, err := devidptest.ParseForm([]byte("<html>hello</html>")); err != devidptest.ErrNoForm {
		t.Fatalf("err = %v", err)
	}
}
