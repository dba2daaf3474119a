package proxy

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/store"
)

// accMachines: API keys on the access layer (machine.go), each way around them tried.
func accMachines(t *testing.T, b *accBed) {
	alice := b.user(accAlice)
	anon := func() *http.Client {
		jar, _ := cookiejar.New(nil)
		return &http.Client{Jar: jar, Timeout: 10 * time.Second,
			Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	const (
		keyID  = "abcdefghijklmnop"
		secret = "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrst"
		key    = "pc_" + keyID + "_" + secret
	)
	machine := store.MachineUser("acme", "billing-export")
	setUp := func() {
		b.members.reset()
		sponsor := b.aliceIn("acme")
		sponsor.Roles = []string{"billing", "user"}
		b.members.set(acmeOrg(), sponsor)
		b.members.set(&store.Org{ID: "globex", Name: "Globex", Status: store.OrgActive}, b.aliceIn("globex"))
		b.members.set(nil, &store.Membership{Org: "globex", User: store.MachineUser("globex", "billing-export"), Kind: store.KindService,
			Roles: []string{"billing"}, Status: store.MembershipActive,
			Machine: &store.Machine{ID: "billing-export", Name: "Globex's", Sponsor: alice}})
		b.members.set(nil, &store.Membership{Org: "acme", User: machine, Kind: store.KindService, Roles: []string{"billing"},
			Status: store.MembershipActive, ExpiresAt: time.Now().Add(24 * time.Hour),
			Machine: &store.Machine{ID: "billing-export", Name: "Billing export", Sponsor: alice,
				Keys: []store.APIKey{{ID: keyID, ExpiresAt: time.Now().Add(time.Hour)}}}})
		b.members.mu.Lock()
		b.members.keys[keyID] = &store.APIKeyOwner{Org: "acme", Machine: "billing-export", Hash: apikey.Hash(key)}
		b.members.mu.Unlock()
	}
	bearer := func(k string) http.Header {
		return http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + k}}
	}
	edit := func(f func(m *store.Membership)) {
		b.members.mu.Lock()
		defer b.members.mu.Unlock()
		m := *b.members.mems["acme\x00"+machine]
		mc := *m.Machine
		mc.Keys = append([]store.APIKey(nil), mc.Keys...)
		m.Machine = &mc
		f(&m)
		b.members.mems["acme\x00"+machine] = &m
	}
	refused := func(t *testing.T, r *accResp, status int, code string) {
		t.Helper()
		if got, _, _ := r.problem(); r.StatusCode != status || got != code {
			t.Errorf("got %d %s, want %d %s: %s", r.StatusCode, got, status, code, r.body)
		}
	}

	t.Run("a key reaches its org's API with the machine's identity, its sponsor, and no key", func(t *testing.T) {
		setUp()
		hits := b.up.hits()
		for _, scheme := range []string{"Bearer ", "bearer ", "BEARER  "} {
			r := accDo(t, anon(), "GET", b.base+"/api/acme/invoices", nil, http.Header{"Authorization": {scheme + key}})
			if r.StatusCode != 200 {
				t.Fatalf("%q: %d %s", scheme, r.StatusCode, r.body)
			}
		}
		if b.up.hits() != hits+3 {
			t.Fatal("the portal was not reached")
		}
		h := b.up.last()
		for name, want := range map[string]string{"X-Portcullis-User": machine, "X-Portcullis-Org": "acme", "X-Portcullis-Kind": "service",
			"X-Portcullis-Roles": "billing", "X-Portcullis-Sponsor": alice, "X-Portcullis-Email": "", "Authorization": ""} {
			if got := h.Get(name); got != want {
				t.Errorf("portal got %s %q, want %q", name, got, want)
			}
		}
		tok, err := jwt.ParseSigned(h.Get("X-Portcullis-Assertion"), []jose.SignatureAlgorithm{jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		var std jwt.Claims
		var c assertion.Claims
		var jwks jose.JSONWebKeySet
		if err := json.Unmarshal(b.signer.JWKS(), &jwks); err != nil {
			t.Fatal(err)
		}
		if err := tok.Claims(jwks.Keys[0].Key, &std, &c); err != nil || std.Subject != machine || c.Kind != "service" || c.Sponsor != alice || c.Org != "acme" || c.Email != "" {
			t.Errorf("assertion %+v %+v %v", std, c, err)
		}
		// The same route without a key, and a session-chosen route with one.
		refused(t, accDo(t, anon(), "GET", b.base+"/api/acme/invoices", nil, accAPI), 401, "credential_missing")
		if r := accDo(t, anon(), "GET", b.base+"/both/x", nil, bearer(key)); r.StatusCode != 200 || b.up.last().Get("X-Portcullis-Org") != "acme" {
			t.Errorf("session-chosen route: %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("a route that does not accept keys refuses one, and never decides it as a person", func(t *testing.T) {
		setUp()
		hits, events := b.up.hits(), len(b.audit.Events())
		for _, path := range []string{"/o/acme/x", "/authn/x", "/adm/acme/x"} {
			refused(t, accDo(t, anon(), "GET", b.base+path, nil, bearer(key)), 401, "credential_not_accepted")
			// Signed in, the key still is not ignored.
			refused(t, accDo(t, b.cli, "GET", b.base+path, nil, bearer(key)), 401, "credential_not_accepted")
		}
		// A public route takes no credential: the key would reach the portal as it is.
		refused(t, accDo(t, anon(), "GET", b.base+"/pub/x", nil, bearer(key)), 401, "credential_not_accepted")
		if b.up.hits() != hits {
			t.Error("a refused key reached the portal")
		}
		fa := bearer(key)
		fa.Set("X-Forwarded-Host", strings.TrimPrefix(b.base, "https://"))
		fa.Set("X-Forwarded-Proto", "https")
		fa.Set("X-Forwarded-Method", "GET")
		fa.Set("X-Forwarded-Uri", "/pub/x")
		if r := accDo(t, anon(), "GET", b.base+"/.portcullis/auth", nil, fa); r.StatusCode == 200 || r.Header.Get("X-Portcullis-Reason") != "credential_not_accepted" {
			t.Errorf("forward-auth about a public path with a key: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
		// Anyone can send these: counted, not audited one by one (the trail is not for floods).
		refused(t, accDo(t, anon(), "GET", b.base+"/both/x", nil, http.Header{"Authorization": {"Bearer pc_junk"},
			"Cookie": {"__Host-portcullis=x"}}), 400, "credential_mixed")
		if n := len(b.audit.Events()); n != events {
			t.Errorf("%d refusals of made-up credentials audited one by one: %+v", n-events, b.audit.Events()[events:])
		}
	})

	t.Run("a key elsewhere than the Authorization header is not read", func(t *testing.T) {
		setUp()
		refused(t, accDo(t, anon(), "GET", b.base+"/api/acme/x?api_key="+key+"&access_token="+key, nil, accAPI), 401, "credential_missing")
		refused(t, accDo(t, anon(), "GET", b.base+"/api/acme/x", nil, http.Header{"Accept": {"application/json"},
			"Cookie": {"api_key=" + key + "; __Host-portcullis-key=" + key}}), 401, "credential_missing")
		refused(t, accDo(t, anon(), "GET", b.base+"/api/acme/x", nil, http.Header{"Accept": {"application/json"},
			"X-Api-Key": {key}, "Authorization": {"Basic " + key}}), 401, "credential_missing")
	})

	t.Run("a key with a session cookie is refused", func(t *testing.T) {
		setUp()
		refused(t, accDo(t, b.cli, "GET", b.base+"/both/x", nil, bearer(key)), 400, "credential_mixed")
		// A cookie of the same name in another case is the same cookie to Portcullis.
		refused(t, accDo(t, anon(), "GET", b.base+"/both/x", nil, http.Header{"Authorization": {"Bearer " + key},
			"Cookie": {"__host-PORTCULLIS=x"}}), 400, "credential_mixed")
		// The person alone is decided as herself (her session's organisation is whatever
		// earlier tests chose).
		if r := b.get("/both/x", accAPI); strings.HasPrefix(func() string { c, _, _ := r.problem(); return c }(), "credential_") {
			t.Errorf("alice on /both: %d %s", r.StatusCode, r.body)
		}
	})

	t.Run("wrong, unknown and malformed keys are invalid, with a bearer challenge", func(t *testing.T) {
		setUp()
		for name, k := range map[string]string{
			"wrong secret":      key[:len(key)-1] + "b",
			"unknown id":        "pc_bbbbbbbbbbbbbbbb_" + secret,
			"malformed":         "pc_" + keyID,
			"admin token shape": "pcadm_" + keyID + "_" + secret,
			"upper case":        strings.ToUpper(key),
		} {
			// Not ours or not well-formed: on a key-only route, invalid all the same.
			r := accDo(t, anon(), "GET", b.base+"/api/acme/x", nil, bearer(k))
			refused(t, r, 401, "credential_invalid")
			if ch := r.Header.Get("WWW-Authenticate"); !strings.Contains(ch, `error="invalid_token"`) {
				t.Errorf("%s: challenge %q", name, ch)
			}
		}
	})

	t.Run("revoked, expired, another org, suspended machine, inactive sponsor", func(t *testing.T) {
		before := len(b.audit.Events())
		for _, tc := range []struct {
			name   string
			change func()
			path   string
			status int
			code   string
		}{
			{"revoked", func() { edit(func(m *store.Membership) { m.Machine.Keys[0].Revoked = time.Now() }) }, "/api/acme/x", 401, "credential_revoked"},
			{"expired", func() { edit(func(m *store.Membership) { m.Machine.Keys[0].ExpiresAt = time.Now() }) }, "/api/acme/x", 401, "credential_expired"},
			{"another org, where a machine of the same id lives", func() {}, "/api/globex/x", 403, "not_member"},
			{"an org that does not exist", func() {}, "/api/initech/x", 403, "not_member"},
			{"machine suspended", func() { edit(func(m *store.Membership) { m.Status = store.MembershipSuspended }) }, "/api/acme/x", 403, "membership_suspended"},
			{"role missing", func() { edit(func(m *store.Membership) { m.Roles = []string{"viewer"} }) }, "/api/acme/x", 403, "role_missing"},
			{"sponsor lost the role", func() { b.members.set(nil, b.aliceIn("acme")) }, "/api/acme/x", 403, "role_missing"},
			{"sponsor revoked", func() {
				m := b.aliceIn("acme")
				m.Status = store.MembershipRevoked
				b.members.set(nil, m)
			}, "/api/acme/x", 403, "sponsor_inactive"},
			{"sponsor expired", func() {
				m := b.aliceIn("acme")
				m.ExpiresAt = time.Now().Add(-time.Minute)
				b.members.set(nil, m)
			}, "/api/acme/x", 403, "sponsor_inactive"},
			{"org ended", func() {
				o := acmeOrg()
				o.Status = store.OrgEnded
				b.members.set(o, nil)
			}, "/api/acme/x", 403, "org_inactive"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				setUp()
				tc.change()
				hits := b.up.hits()
				r := accDo(t, anon(), "GET", b.base+tc.path, nil, bearer(key))
				refused(t, r, tc.status, tc.code)
				if b.up.hits() != hits {
					t.Error("the portal was reached")
				}
				if tc.status == 401 && !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
					t.Errorf("challenge %q", r.Header.Get("WWW-Authenticate"))
				}
			})
		}
		var audited []string
		for _, ev := range b.audit.Events()[before:] {
			if ev.Type == audit.AccessDenied {
				audited = append(audited, ev.Reason)
				if ev.User != machine && ev.Reason != "not_member" {
					t.Errorf("denial of %s audited for %q", ev.Reason, ev.User)
				}
			}
		}
		if len(audited) != 9 { // the expired key is counted
			t.Errorf("audited %v", audited)
		}
	})

	t.Run("the store down fails closed", func(t *testing.T) {
		setUp()
		b.members.fail(store.ErrUnavailable)
		refused(t, accDo(t, anon(), "GET", b.base+"/api/acme/x", nil, bearer(key)), 503, "store_unavailable")
	})

	t.Run("forward-auth does not take keys: the ingress would pass them on", func(t *testing.T) {
		setUp()
		host := strings.TrimPrefix(b.base, "https://")
		h := bearer(key)
		h.Set("X-Forwarded-Host", host)
		h.Set("X-Forwarded-Proto", "https")
		h.Set("X-Forwarded-Method", "GET")
		h.Set("X-Forwarded-Uri", "/api/acme/x")
		r := accDo(t, anon(), "GET", b.base+"/.portcullis/auth", nil, h)
		if r.StatusCode != 401 || r.Header.Get("X-Portcullis-Reason") != "credential_not_accepted" {
			t.Errorf("forward-auth with a key: %d %s", r.StatusCode, r.Header.Get("X-Portcullis-Reason"))
		}
	})
}

// accClientTokens: client-credentials tokens of the trusted issuer on a route with auth
// [client_jwt] (machine.go), and the ways around them.
func accClientTokens(t *testing.T, b *accBed) {
	alice := b.user(accAlice)
	anon := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var disc struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	idpc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if resp, err := idpc.Get(b.issuer + "/.well-known/openid-configuration"); err != nil || json.NewDecoder(resp.Body).Decode(&disc) != nil {
		t.Fatalf("discovery: %v", err)
	}
	token := func(id, secret string) string {
		t.Helper()
		cc := clientcredentials.Config{ClientID: id, ClientSecret: secret, TokenURL: disc.TokenEndpoint}
		tok, err := cc.Token(context.WithValue(context.Background(), oauth2.HTTPClient, idpc))
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	machine := store.MachineUser("acme", "billing-sync")
	setUp := func(bound bool) {
		b.members.reset()
		b.members.set(acmeOrg(), b.aliceIn("acme"))
		mc := &store.Machine{ID: "billing-sync", Name: "Billing sync", Sponsor: alice}
		if bound {
			mc.Clients = []store.FederatedClient{{Issuer: b.issuer, Subject: "billing-sync"}}
		}
		b.members.set(nil, &store.Membership{Org: "acme", User: machine, Kind: store.KindService, Roles: []string{"user"},
			Status: store.MembershipActive, ExpiresAt: time.Now().Add(24 * time.Hour), Machine: mc})
		b.members.mu.Lock()
		b.members.clients[b.issuer+"\x00billing-sync"] = &store.ClientOwner{Org: "acme", Machine: "billing-sync", Issuer: b.issuer, Subject: "billing-sync"}
		b.members.mu.Unlock()
	}
	bearer := func(tok string) http.Header {
		return http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + tok}}
	}
	refused := func(t *testing.T, r *accResp, status int, code string) {
		t.Helper()
		if got, _, _ := r.problem(); r.StatusCode != status || got != code {
			t.Errorf("got %d %s, want %d %s: %s", r.StatusCode, got, status, code, r.body)
		}
	}
	good := token("billing-sync", "sync-secret")

	setUp(true)
	r := accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(good))
	if r.StatusCode != 200 {
		t.Fatalf("a bound client's token: %d %s", r.StatusCode, r.body)
	}
	if h := b.up.last(); h.Get("X-Portcullis-User") != machine || h.Get("X-Portcullis-Sponsor") != alice || h.Get("Authorization") != "" {
		t.Errorf("portal got %v", h)
	}
	refused(t, accDo(t, anon, "GET", b.base+"/japi/globex/x", nil, bearer(good)), 403, "not_member")
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(token("elsewhere", "else-secret"))), 401, "credential_invalid")
	parts := strings.Split(good, ".")
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`))+"."+parts[1]+".")), 401, "credential_invalid")
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, http.Header{"Accept": {"application/json"}, "Authorization": {"Bearer " + good},
		"Cookie": {"__Host-portcullis=x"}}), 400, "credential_mixed")
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, accAPI), 401, "credential_missing")
	// On a route for people, a bearer JWT is the portal's business: the person still needs a session.
	refused(t, accDo(t, anon, "GET", b.base+"/o/acme/x", nil, bearer(good)), 401, "no_session")

	// The index names the machine, but its record does not list the client (unbound): nothing.
	setUp(false)
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(good)), 401, "credential_invalid")
	// No index entry at all.
	setUp(true)
	b.members.mu.Lock()
	clear(b.members.clients)
	b.members.mu.Unlock()
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(good)), 401, "credential_invalid")
	// The sponsor's end ends the machine.
	setUp(true)
	m := b.aliceIn("acme")
	m.Status = store.MembershipSuspended
	b.members.set(nil, m)
	refused(t, accDo(t, anon, "GET", b.base+"/japi/acme/x", nil, bearer(good)), 403, "sponsor_inactive")
}
