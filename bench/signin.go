package main

// Alice's organisation and membership, her sign-in through devidp's login form, and her
// step-up.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/store"
)

// seed creates the organisation acme with the verified domain acme.example and alice's
// membership, as `portcullis admin` would, and returns the organisations' store and alice's
// user key (alice is sub-alice at issuer).
func seed(ctx context.Context, st *store.Store, issuer string) (*store.Orgs, string, error) {
	orgs := store.NewOrgs(st, store.NewAudit(st, 0))
	user := store.UserKey(issuer, "sub-alice")
	if _, err := orgs.CreateOrg(ctx, store.Org{ID: "acme", Name: "Acme Corp"}, "admin|bench", "bench"); err != nil {
		return nil, "", fmt.Errorf("seed org: %w", err)
	}
	if _, err := orgs.AddDomain(ctx, "acme", "acme.example", "admin|bench", "bench"); err != nil {
		return nil, "", fmt.Errorf("seed domain: %w", err)
	}
	if _, err := orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, "admin|bench", "bench"); err != nil {
		return nil, "", fmt.Errorf("seed domain: %w", err)
	}
	if _, err := orgs.Grant(ctx, store.Membership{Org: "acme", User: user, Kind: store.KindEmployee, Roles: []string{"user"}}, "admin|bench", "bench"); err != nil {
		return nil, "", fmt.Errorf("seed membership: %w", err)
	}
	return orgs, user, nil
}

// seedMachine gives acme a machine identity sponsored by alice (user), with her role, and
// returns its API key.
func seedMachine(ctx context.Context, orgs *store.Orgs, user string) (string, error) {
	if _, err := orgs.CreateMachine(ctx, store.Membership{Org: "acme", Roles: []string{"user"}, ExpiresAt: time.Now().Add(24 * time.Hour),
		Machine: &store.Machine{ID: "export", Name: "Bench export", Sponsor: user}}, "admin|bench", "bench"); err != nil {
		return "", fmt.Errorf("seed machine: %w", err)
	}
	key, _, err := orgs.CreateAPIKey(ctx, "acme", "export", time.Now().Add(time.Hour), "", 0, "admin|bench", "bench")
	if err != nil {
		return "", fmt.Errorf("seed api key: %w", err)
	}
	return key, nil
}

const totpSecret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

// signIn signs alice in through the proxy at base and returns the Cookie header to send and
// the browser-like client holding it.
func signIn(base string) (string, *http.Client, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{
		Jar:           jar,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       10 * time.Second,
	}
	get := func(u string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		return c.Do(req)
	}
	resp, err := get(base + "/.portcullis/login?rd=/public/")
	cookie, err := follow(c, base, resp, err, "")
	return cookie, c, err
}

// follow follows redirects like a browser from resp, fills in devidp's login form as alice (with
// the one-time code when otp), visits the callback and returns the session cookie.
func follow(c *http.Client, base string, resp *http.Response, err error, otp string) (string, error) {
	get := func(u string) (*http.Response, error) {
		req, _ := http.NewRequest("GET", u, nil)
		req.Header.Set("Accept", "text/html")
		req.Header.Set("Sec-Fetch-Mode", "navigate")
		return c.Do(req)
	}
	for range 20 {
		if err != nil {
			return "", err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 3:
			u, perr := resp.Request.URL.Parse(resp.Header.Get("Location"))
			if perr != nil {
				return "", perr
			}
			if strings.HasPrefix(u.String(), base+config.CallbackPath) {
				if resp, err = get(u.String()); err != nil {
					return "", err
				}
				resp.Body.Close()
				pu, _ := url.Parse(base)
				for _, ck := range c.Jar.Cookies(pu) {
					if ck.Name == "__Host-portcullis" {
						return ck.Name + "=" + ck.Value, nil
					}
				}
				return "", fmt.Errorf("no session cookie after the callback (%d)", resp.StatusCode)
			}
			resp, err = get(u.String())
		case resp.StatusCode == 200 && strings.Contains(string(b), "devidp-login"):
			resp.Body = io.NopCloser(strings.NewReader(string(b)))
			code := ""
			if otp != "" {
				if code, err = devidptest.TOTP(otp, time.Now()); err != nil {
					return "", err
				}
			}
			resp, err = devidptest.Login(context.Background(), c, resp, "alice", "alice-pw", code)
		default:
			return "", fmt.Errorf("sign-in stuck at %s: %d %s", resp.Request.URL, resp.StatusCode, b)
		}
	}
	return "", errors.New("too many redirects")
}

// stepUp earns alice an elevation for path: the interstitial's ticket, posted to
// /.portcullis/step-up, devidp with the one-time code, and the callback.
func stepUp(c *http.Client, base, path string) (string, error) {
	req, _ := http.NewRequest("GET", base+path, nil)
	req.Header.Set("Accept", "text/html")
	req.Header.Set("Sec-Fetch-Mode", "navigate")
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`name="ticket" value="([^"]+)"`).FindStringSubmatch(string(b))
	if resp.StatusCode != http.StatusUnauthorized || m == nil {
		return "", fmt.Errorf("%s: want the step-up interstitial, got %d %s", path, resp.StatusCode, b)
	}
	req, _ = http.NewRequest("POST", base+"/.portcullis/step-up", strings.NewReader(url.Values{"ticket": {html.UnescapeString(m[1])}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Accept", "text/html")
	resp, err = c.Do(req)
	return follow(c, base, resp, err, totpSecret)
}
