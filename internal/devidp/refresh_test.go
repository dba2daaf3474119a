package devidp

import (
	"errors"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// refreshFlow signs bob in with offline_access and returns the token response.
func refreshFlow(t *testing.T, tb *testbed) *oauth2.Token {
	t.Helper()
	tb.conf.Scopes = append(tb.conf.Scopes, oidc.ScopeOfflineAccess)
	f := tb.start(t)
	loc, page := f.submit(t, "bob", "bob-pw", "")
	if loc == nil {
		t.Fatalf("login failed: %d\n%s", page.status, page.body)
	}
	tok, _ := tb.exchange(t, f, f.code(t, loc))
	if tok.RefreshToken == "" {
		t.Fatal("no refresh token for offline_access")
	}
	return tok
}

// redeem exchanges a refresh token once.
func redeem(tb *testbed, rt string) (*oauth2.Token, error) {
	return tb.conf.TokenSource(tb.ctx, &oauth2.Token{RefreshToken: rt}).Token()
}

// Without offline_access there is no refresh token.
func TestNoRefreshTokenWithoutOfflineAccess(t *testing.T) {
	tb := newTestbed(t, nil)
	f := tb.start(t)
	loc, _ := f.submit(t, "bob", "bob-pw", "")
	tok, _ := tb.exchange(t, f, f.code(t, loc))
	if tok.RefreshToken != "" {
		t.Fatal("refresh token issued without offline_access")
	}
}

// A refresh token gives a new ID token of the same login and a new refresh token; the one
// spent is refused afterwards (rotation), and so is one presented by another client.
func TestRefreshTokenRotates(t *testing.T) {
	tb := newTestbed(t, nil)
	tok := refreshFlow(t, tb)
	next, err := redeem(tb, tok.RefreshToken)
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if next.RefreshToken == "" || next.RefreshToken == tok.RefreshToken {
		t.Fatalf("refresh token not rotated: %q", next.RefreshToken)
	}
	raw, _ := next.Extra("id_token").(string)
	idt, err := tb.rp.Verifier(&oidc.Config{ClientID: tb.conf.ClientID}).Verify(tb.ctx, raw)
	if err != nil {
		t.Fatalf("refreshed id token: %v", err)
	}
	if idt.Subject != "u-bob" {
		t.Fatalf("refreshed id token sub %q", idt.Subject)
	}
	if _, err := redeem(tb, tok.RefreshToken); !invalidGrant(err) {
		t.Fatalf("spent refresh token: %v, want invalid_grant", err)
	}
	other := tb.conf
	other.ClientID, other.ClientSecret = publicC, ""
	if _, err := other.TokenSource(tb.ctx, &oauth2.Token{RefreshToken: next.RefreshToken}).Token(); err == nil {
		t.Fatal("another client redeemed the refresh token")
	}
	if n := tb.idp.RefreshTokenUses("bob"); n < 2 {
		t.Fatalf("RefreshTokenUses = %d, want at least 2", n)
	}
}

// A disabled user's refresh token is refused with invalid_grant, their access token no longer
// answers at userinfo, and the login form refuses them.
func TestDisableUser(t *testing.T) {
	tb := newTestbed(t, nil)
	tok := refreshFlow(t, tb)
	if _, err := tb.rp.UserInfo(tb.ctx, oauth2.StaticTokenSource(tok)); err != nil {
		t.Fatalf("userinfo before: %v", err)
	}
	tb.idp.DisableUser("bob")
	if _, err := redeem(tb, tok.RefreshToken); !invalidGrant(err) {
		t.Fatalf("disabled user's refresh: %v, want invalid_grant", err)
	}
	if _, err := tb.rp.UserInfo(tb.ctx, oauth2.StaticTokenSource(tok)); err == nil {
		t.Fatal("userinfo answered for a disabled user")
	}
	f := tb.start(t)
	if loc, _ := f.submit(t, "bob", "bob-pw", ""); loc != nil {
		t.Fatal("a disabled user logged in")
	}
}

// SetEmail shows in the next refreshed ID token and in userinfo.
func TestSetEmail(t *testing.T) {
	tb := newTestbed(t, nil)
	tok := refreshFlow(t, tb)
	tb.idp.SetEmail("bob", "bob@elsewhere.test", false)
	next, err := redeem(tb, tok.RefreshToken)
	if err != nil {
		t.Fatal(err)
	}
	ui, err := tb.rp.UserInfo(tb.ctx, oauth2.StaticTokenSource(next))
	if err != nil {
		t.Fatal(err)
	}
	if ui.Email != "bob@elsewhere.test" || ui.EmailVerified {
		t.Fatalf("userinfo email %q verified %v", ui.Email, ui.EmailVerified)
	}
}

func invalidGrant(err error) bool {
	var re *oauth2.RetrieveError
	return errors.As(err, &re) && re.ErrorCode == "invalid_grant"
}
