package proxy

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/peer"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// BenchmarkAuthorisedWarm is the whole handler on an org-scoped route with both caches warm:
// session, membership decision, identity headers, assertion and forwarding, as wired by
// cmd/portcullis. Compare with BenchmarkForwardPortcullis (a public route):
//
//	go test -run XXX -bench 'AuthorisedWarm|ForwardPortcullis' -benchmem ./proxy
//
// The session is written straight into Redis in package session's record format (no provider
// is needed to use an existing session).
func BenchmarkAuthorisedWarm(b *testing.B) {
	srv, secret, st := newWarmBed(b)
	runWarm(b, st, func() {
		req := httptest.NewRequest("GET", "/o/acme/x", nil)
		req.Host = "portal.example.test"
		req.RemoteAddr = "192.0.2.1:1234"
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", session.CookieName+"="+secret)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d %s", rec.Code, rec.Body)
		}
		_, _ = io.Copy(io.Discard, rec.Body)
	})
}

// BenchmarkAPIKeyWarm is BenchmarkAuthorisedWarm for a machine identity: its API key on an
// org-scoped API route, with the key index, the machine's and its sponsor's memberships
// cached. It should cost what the cookie request does (the budget):
//
//	go test -run XXX -bench 'AuthorisedWarm|APIKeyWarm' -benchmem ./proxy
func BenchmarkAPIKeyWarm(b *testing.B) {
	srv, _, st := newWarmBed(b)
	key := warmMachineKey(b, st)
	runWarm(b, st, func() {
		req := httptest.NewRequest("GET", "/api/acme/x", nil)
		req.Host = "portal.example.test"
		req.RemoteAddr = "192.0.2.1:1234"
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		srv.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("status %d %s", rec.Code, rec.Body)
		}
		_, _ = io.Copy(io.Discard, rec.Body)
	})
}

// warmMachineKey gives acme a machine identity sponsored by the bed's member, and returns its
// API key.
func warmMachineKey(b *testing.B, st *store.Store) string {
	ctx := b.Context()
	orgs := store.NewOrgs(st, nil)
	const admin = "https://idp.example|admin"
	if _, err := orgs.CreateMachine(ctx, store.Membership{Org: "acme", Roles: []string{"user"}, ExpiresAt: time.Now().Add(24 * time.Hour),
		Machine: &store.Machine{ID: "export", Name: "Export", Sponsor: store.UserKey(warmIssuer, "sub-alice")}}, admin, ""); err != nil {
		b.Fatal(err)
	}
	key, _, err := orgs.CreateAPIKey(ctx, "acme", "export", time.Now().Add(time.Hour), "", 0, admin, "")
	if err != nil {
		b.Fatal(err)
	}
	return key
}

// BenchmarkForwardAuthWarm is BenchmarkAuthorisedWarm's request asked about by an ingress
// (nginx's convention, on the forward-auth listener's handler): the same decision, headers and
// assertion, without forwarding.
func BenchmarkForwardAuthWarm(b *testing.B) {
	srv, secret, st := newWarmBed(b)
	h := srv.forwardAuthHandler()
	runWarm(b, st, func() {
		req := httptest.NewRequest("GET", forwardAuthPath, nil)
		req.RemoteAddr = "127.0.0.1:1234"
		req.Header.Set(hdrOriginalMethod, "GET")
		req.Header.Set(hdrOriginalURI, "/o/acme/x")
		req.Header.Set("X-Forwarded-Host", "portal.example.test")
		req.Header.Set("X-Forwarded-Proto", "https")
		req.Header.Set("X-Forwarded-For", "192.0.2.1")
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", session.CookieName+"="+secret)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 || rec.Header().Get("X-Portcullis-Org") != "acme" {
			b.Fatalf("status %d %v %s", rec.Code, rec.Header(), rec.Body)
		}
	})
}

// BenchmarkExtAuthzWarm is the same question as Envoy's CheckRequest, answered by Check.
func BenchmarkExtAuthzWarm(b *testing.B) {
	srv, secret, st := newWarmBed(b)
	a := &extAuthz{s: srv}
	ctx := peer.NewContext(b.Context(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1234}})
	runWarm(b, st, func() {
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "192.0.2.1"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Path: "/o/acme/x", Host: "portal.example.test", Scheme: "https",
				Headers: map[string]string{":method": "GET", ":path": "/o/acme/x", ":authority": "portal.example.test",
					"accept": "application/json", "cookie": session.CookieName + "=" + secret},
			}},
		}}
		resp, err := a.Check(ctx, req)
		if err != nil || resp.GetOkResponse() == nil {
			b.Fatalf("%v %v", resp, err)
		}
	})
}

// warmIssuer is unreachable: discovery fails, sessions still work.
const warmIssuer = "https://127.0.0.1:1"

// newWarmBed is the handler as cmd/portcullis wires it, with one member (alice, of acme) and
// her session written straight into Redis; forward-auth is enabled for loopback.
func newWarmBed(b *testing.B) (*Server, string, *store.Store) {
	up := benchUpstream(b)
	rs := redistest.Start(b)
	const issuer = warmIssuer
	yaml := fmt.Sprintf(`server:
  public_url: https://portal.example.test
  metrics_listen: "off"
  trusted_proxies: [127.0.0.1/32]
forward_auth: {enabled: true, listen: "127.0.0.1:0"}
tls:
  mode: "off"
log:
  access_log: false
redis:
  address: %[1]s
oidc:
  issuer: %[2]s
  client_id: portcullis
  client_secret: unit-secret
routes:
  - name: org
    path: /o
    upstream: %[3]s
    org: {from: path, path_segment: 2}
  - name: api
    path: /api
    upstream: %[3]s
    org: {from: path, path_segment: 2}
    auth: [api_key]
`, rs.Addr, issuer, up.URL)
	p := filepath.Join(b.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		b.Fatal(err)
	}
	cfg, _, err := config.Load(p)
	if err != nil {
		b.Fatal(err)
	}
	st, err := store.New(cfg.Redis)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	log := slog.New(slog.DiscardHandler)
	cache := store.NewCache(st, cfg.Authz.CacheTTL.D(), log)
	b.Cleanup(func() { cache.Close() })
	m, err := session.NewManager(cfg.OIDC, cfg.Session, cfg.Server.PublicBase, st, session.Options{Logger: log})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	key, _, err := assertion.GenerateKey()
	if err != nil {
		b.Fatal(err)
	}
	signer, err := assertion.New(key, "https://portal.example.test", time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	// As serve wires it: the last use of a membership is written at most hourly, off the path.
	uses := store.NewUseRecorder(st, 0, log)
	b.Cleanup(uses.Close)
	srv, err := New(SettingsOf(cfg), Options{Logger: log, Gate: m, StepUp: m, Orgs: m, Endpoints: m.Endpoints(), Members: cache, APIKeys: cache, Signer: signer, Uses: uses})
	if err != nil {
		b.Fatal(err)
	}

	ctx := b.Context()
	user := store.UserKey(issuer, "sub-alice")
	orgs := store.NewOrgs(st, nil)
	const admin = "https://idp.example|admin"
	if _, err := orgs.CreateOrg(ctx, store.Org{ID: "acme", Name: "Acme"}, admin, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := orgs.AddDomain(ctx, "acme", "acme.example", admin, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, admin, ""); err != nil {
		b.Fatal(err)
	}
	if _, err := orgs.Grant(ctx, store.Membership{Org: "acme", User: user, Kind: store.KindEmployee, Roles: []string{"user"}}, admin, ""); err != nil {
		b.Fatal(err)
	}
	secret := strings.Repeat("A", 43)
	sum := sha256.Sum256([]byte(secret))
	now := time.Now()
	rec, _ := json.Marshal(map[string]any{"user": user, "iss": issuer, "sub": "sub-alice", "email": "alice@acme.example",
		"email_verified": true, "created": now, "last_seen": now, "expires": now.Add(8 * time.Hour), "csrf_key": []byte("0123456789abcdef"),
		"amr": []string{"pwd"}})
	if err := st.CreateSession(ctx, base64.RawURLEncoding.EncodeToString(sum[:]), user, issuer, "", rec, time.Hour, time.Hour); err != nil {
		b.Fatal(err)
	}

	return srv, secret, st
}

// runWarm runs do in parallel once it asks Redis nothing, reporting round trips per op.
func runWarm(b *testing.B, st *store.Store, do func()) {
	// Warm: until a request asks Redis nothing (both subscriptions confirmed, both caches full).
	deadline := time.Now().Add(10 * time.Second)
	for {
		before := st.RoundTrips()
		do()
		if st.RoundTrips() == before {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("requests never became warm")
		}
		time.Sleep(10 * time.Millisecond)
	}
	before := st.RoundTrips()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			do()
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(st.RoundTrips()-before)/float64(b.N), "redis/op")
}
