// Package devidptest serves a devidp.Provider for tests in other packages and
// drives its login form the way a browser would, so a relying-party test
// needs only a cookie-jar http.Client.
package devidptest

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/portcullis-proxy/portcullis/internal/devidp"
)

// Server is a provider served over TLS by an httptest.Server.
type Server struct {
	// IdP is the provider, for its test seams.
	IdP *devidp.Provider
	// HTTP is the test server; HTTP.Client() trusts its certificate.
	HTTP *httptest.Server
	// URL is the issuer.
	URL string
}

// Start serves a provider for cfg on a new TLS test server, which is closed
// when the test ends. cfg.Issuer is set to the server's URL.
func Start(t testing.TB, cfg devidp.Config) *Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	cfg.Issuer = srv.URL
	idp, err := devidp.New(cfg)
	if err != nil {
		t.Fatalf("devidptest: %v", err)
	}
	srv.Config.Handler = idp.Handler()
	return &Server{IdP: idp, HTTP: srv, URL: srv.URL}
}

// CAFile writes the provider's TLS certificate as PEM to a file of the test's temporary
// directory and returns its path: what a relying party configured with oidc.ca_root_file needs
// to trust this provider.
func (s *Server) CAFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "idp-ca.pem")
	block := &pem.Block{Type: "CERTIFICATE", Bytes: s.HTTP.Certificate().Raw}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatalf("devidptest: write CA file: %v", err)
	}
	return path
}

// Form is the provider's login form as a client sees it.
type Form struct {
	// Action is the absolute URL to POST to.
	Action string
	// Hidden holds the hidden fields (the auth request id and CSRF token).
	Hidden url.Values
	// Username is the pre-filled username (from login_hint or a previous
	// attempt).
	Username string
	// HasOTP reports whether the one-time code field is shown.
	HasOTP bool
	// Error is the message shown above the form, if any.
	Error string
}

var (
	reAction   = regexp.MustCompile(`<form id="devidp-login" method="post" action="([^"]+)">`)
	reHidden   = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)">`)
	reUsername = regexp.MustCompile(`name="username"[^>]*value="([^"]*)"`)
	reError    = regexp.MustCompile(`<p role="alert" class="error">([^<]*)</p>`)
)

// ErrNoForm is returned by ParseForm for a page without the login form.
var ErrNoForm = errors.New("devidptest: no devidp login form in page")

// ParseForm reads a login page.
func ParseForm(page []byte) (*Form, error) {
	s := string(page)
	m := reAction.FindStringSubmatch(s)
	if m == nil {
		return nil, ErrNoForm
	}
	f := &Form{Action: html.UnescapeString(m[1]), Hidden: url.Values{}, HasOTP: strings.Contains(s, `name="otp"`)}
	for _, m := range reHidden.FindAllStringSubmatch(s, -1) {
		f.Hidden.Set(html.UnescapeString(m[1]), html.UnescapeString(m[2]))
	}
	if m := reUsername.FindStringSubmatch(s); m != nil {
		f.Username = html.UnescapeString(m[1])
	}
	if m := reError.FindStringSubmatch(s); m != nil {
		f.Error = html.UnescapeString(m[1])
	}
	return f, nil
}

// Values is the POST body that logs in; otp may be empty.
func (f *Form) Values(username, password, otp string) url.Values {
	v := url.Values{}
	for k, vs := range f.Hidden {
		v[k] = append([]string(nil), vs...)
	}
	v.Set("username", username)
	v.Set("password", password)
	if otp != "" {
		v.Set("otp", otp)
	}
	return v
}

// Login reads the login page in page (its body is consumed and closed),
// fills in the credentials and posts them with c. It returns the response
// to the POST as c's redirect policy leaves it: with a client that stops at
// the relying party, a 302 whose Location carries code and state on success;
// otherwise a page showing the form again (401 for wrong credentials, 200
// when a one-time code is still required).
func Login(ctx context.Context, c *http.Client, page *http.Response, username, password, otp string) (*http.Response, error) {
	body, err := io.ReadAll(io.LimitReader(page.Body, 1<<20))
	page.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("devidptest: read login page: %w", err)
	}
	f, err := ParseForm(body)
	if err != nil {
		return nil, fmt.Errorf("%w (status %d)", err, page.StatusCode)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, f.Action, strings.NewReader(f.Values(username, password, otp).Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return c.Do(req)
}

// TOTP is the one-time code for a base32 secret at a time, as the
// provider's users' authenticator would show it (RFC 6238, SHA-1, 6 digits,
// 30 s).
func TOTP(secret string, at time.Time) (string, error) {
	return totp.GenerateCodeCustom(secret, at, totp.ValidateOpts{Period: 30, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
}
