package proxy

// The performance budget of docs/design.md, checked through the real handler path: a cold
// authorised request costs exactly one Redis round trip, a warm one none (issue 8). Two
// proxies share one private redis-server, wired as cmd/portcullis wires them (store.Cache and
// session.Manager over one store.Store): one with both caches off, one with both on. Round
// trips are counted by the Store's own client (store.Store.RoundTrips).

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/devidp"
	"github.com/portcullis-proxy/portcullis/internal/devidp/devidptest"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// rtProxy is one Portcullis with its own Store (so its own round-trip count).
type rtProxy struct {
	base  string
	st    *store.Store
	cache *store.Cache
}

// newRTProxy starts a proxy whose membership and session caches are on or off, against Redis
// at addr and the provider idp (CA file ca). Every proxy's public URL is base.
func newRTProxy(t *testing.T, ts *httptest.Server, base, addr, idp, ca, upstream string, caches bool) *rtProxy {
	t.Helper()
	yaml := fmt.Sprintf(`server:
  public_url: %[1]s
  metrics_listen: "off"
tls:
  mode: "off"
log:
  access_log: false
redis:
  address: %[2]s
authz:
  cache: %[6]v
  cache_ttl: 1m
session:
  cache: %[6]v
  cache_ttl: 1m
  touch_interval: 30m
oidc:
  issuer: %[3]s
  client_id: portcullis
  client_secret: unit-secret
  ca_root_file: %[4]s
routes:
  - name: public
    path: /pub
    upstream: %[5]s
    public: true
  - name: org
    path: /o
    upstream: %[5]s
    org: {from: path, path_segment: 2}
  - name: sess
    path: /s
    upstream: %[5]s
    org: {from: session}
`, base, addr, idp, ca, upstream, caches)
	p := filepath.Join(t.TempDir(), "portcullis.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := config.Load(p)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	st, err := store.New(cfg.Redis)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	// As cmd/portcullis wireRedis does: the caches follow authz.cache and session.cache.
	cache := store.NewCache(st, cfg.Authz.CacheLifetime(), log)
	t.Cleanup(func() { cache.Close() })
	m, err := session.NewManager(cfg.OIDC, cfg.Session, cfg.Server.PublicBase, st, session.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	srv, err := New(SettingsOf(cfg), Options{Logger: log, Gate: m, StepUp: m, Orgs: m, Endpoints: m.Endpoints(), Members: cache})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv
	ts.StartTLS()
	t.Cleanup(ts.Close)
	if caches {
		deadline := time.Now().Add(5 * time.Second)
		for !cache.Subscribed() && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	return &rtProxy{base: base, st: st, cache: cache}
}

func TestColdRequestOneRoundTrip(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "portal") }))
	t.Cleanup(up.Close)
	tsOff, tsOn := httptest.NewUnstartedServer(nil), httptest.NewUnstartedServer(nil)
	baseOff, baseOn := "https://"+tsOff.Listener.Addr().String(), "https://"+tsOn.Listener.Addr().String()
	idp := devidptest.Start(t, devidp.Config{
		Clients: []devidp.Client{{ID: "portcullis", Secret: "unit-secret", RedirectURIs: []string{baseOff + config.CallbackPath}}},
		Users: []devidp.User{{Subject: accAlice, Username: "alice", Password: "pw", Email: "alice@acme.example", EmailVerified: true},
			{Subject: "sub-bob", Username: "bob", Password: "pw", Email: "bob@acme.example", EmailVerified: true}},
	})
	ca := idp.CAFile(t)
	rs := redistest.Start(t)
	off := newRTProxy(t, tsOff, baseOff, rs.Addr, idp.URL, ca, up.URL, false)
	on := newRTProxy(t, tsOn, baseOn, rs.Addr, idp.URL, ca, up.URL, true)

	// acme, with alice and bob as members; globex, without them.
	ctx := t.Context()
	orgs := store.NewOrgs(off.st, nil)
	const admin = "https://idp.example|admin"
	alice, bob := store.UserKey(idp.URL, accAlice), store.UserKey(idp.URL, "sub-bob")
	for _, id := range []string{"acme", "globex"} {
		if _, err := orgs.CreateOrg(ctx, store.Org{ID: id, Name: id}, admin, ""); err != nil {
			t.Fatal(err)
		}
		if _, err := orgs.AddDomain(ctx, id, "acme.example", admin, ""); err != nil && id == "acme" {
			t.Fatal(err)
		}
	}
	if _, err := orgs.SetDomainStatus(ctx, "acme", "acme.example", store.DomainVerified, admin, ""); err != nil {
		t.Fatal(err)
	}
	grant := func(user string) {
		t.Helper()
		if _, err := orgs.Grant(ctx, store.Membership{Org: "acme", User: user, Kind: store.KindEmployee}, admin, ""); err != nil {
			t.Fatal(err)
		}
	}
	grant(alice)
	grant(bob)

	// Sign in through the caches-off proxy; the cookie (host 127.0.0.1) goes to both.
	sign := func(user string) *http.Client {
		b := &accBed{t: t, base: baseOff}
		return b.signIn(user)
	}
	aliceC, bobC := sign("alice"), sign("bob")

	// get answers path on p, returning the status and the round trips it took.
	get := func(c *http.Client, p *rtProxy, path string) (int, uint64) {
		t.Helper()
		before := p.st.RoundTrips()
		r := accDo(t, c, "GET", p.base+path, nil, accAPI)
		return r.StatusCode, p.st.RoundTrips() - before
	}

	// Alice chooses acme for the session-chosen route (the picker, as a browser would).
	var pick struct{ CSRF string }
	if r := accDo(t, aliceC, "GET", baseOff+"/.portcullis/orgs", nil, accAPI); json.Unmarshal([]byte(r.body), &pick) != nil || pick.CSRF == "" {
		t.Fatalf("picker: %d %s", r.StatusCode, r.body)
	}
	if r := accDo(t, aliceC, "POST", baseOff+"/.portcullis/orgs", url.Values{"org": {"acme"}, "csrf": {pick.CSRF}}, nil); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("choose acme: %d %s", r.StatusCode, r.body)
	}

	t.Run("caches off", func(t *testing.T) {
		// The first use of the prefetch script on a server costs one more round trip
		// (EVALSHA answers NOSCRIPT, then EVAL loads it); every later one does not.
		if code, n := get(aliceC, off, "/o/acme/x"); code != 200 || n > 2 {
			t.Errorf("first request: %d in %d round trips", code, n)
		}
		for _, path := range []string{"/o/acme/x", "/s/x"} {
			for i := range 5 {
				if code, n := get(aliceC, off, path); code != 200 || n != 1 {
					t.Errorf("%s #%d: %d in %d round trips, want 200 in 1", path, i, code, n)
				}
			}
		}
		// Refusals cost one as well: an organisation alice is not a member of, by path
		// (the prefetch reads globex for her, and finds nothing).
		if code, n := get(aliceC, off, "/o/globex/x"); code != 403 || n != 1 {
			t.Errorf("other org: %d in %d round trips", code, n)
		}
		// A revocation is seen by the very next request, and a regrant too.
		if _, err := orgs.Revoke(ctx, "acme", alice, admin, ""); err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/o/acme/x", "/s/x"} {
			if code, _ := get(aliceC, off, path); code != 403 {
				t.Errorf("%s right after the revocation: %d", path, code)
			}
		}
		// Bob's membership is untouched, and alice's revoked one is never his.
		if code, n := get(bobC, off, "/o/acme/x"); code != 200 || n != 1 {
			t.Errorf("bob: %d in %d round trips", code, n)
		}
		grant(alice)
		if code, _ := get(aliceC, off, "/o/acme/x"); code != 200 {
			t.Errorf("right after the regrant: %d", code)
		}
	})

	t.Run("caches on", func(t *testing.T) {
		// Bob's requests until one costs nothing: then the session cache hears its
		// invalidations too (it serves nothing before), and alice's caches are still cold.
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, n := get(bobC, on, "/o/acme/x"); n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob's requests never became warm")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if code, n := get(aliceC, on, "/o/acme/x"); code != 200 || n != 1 {
			t.Errorf("cold: %d in %d round trips, want 200 in 1", code, n)
		}
		for i := range 5 {
			if code, n := get(aliceC, on, "/o/acme/x"); code != 200 || n != 0 {
				t.Errorf("warm #%d: %d in %d round trips, want 200 in 0", i, code, n)
			}
		}
		// A membership change drops the cached membership (not the session): one round trip,
		// and the change is seen.
		if _, err := orgs.Revoke(ctx, "acme", alice, admin, ""); err != nil {
			t.Fatal(err)
		}
		deadline = time.Now().Add(5 * time.Second)
		for {
			code, n := get(aliceC, on, "/o/acme/x")
			if code == 403 {
				if n > 1 {
					t.Errorf("after the revocation: %d round trips", n)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the revocation was never seen")
			}
			time.Sleep(5 * time.Millisecond)
		}
		grant(alice)
	})

	t.Run("only organisation is remembered", func(t *testing.T) {
		// Bob has one organisation and never chose: the first request on the session-chosen
		// route picks acme for him and records it, so later ones do not list his organisations
		// again (with caches on, they cost nothing once the session is cached again).
		if code, _ := get(bobC, on, "/s/x"); code != 200 {
			t.Fatalf("first request: %d", code)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			if code, n := get(bobC, on, "/s/x"); code == 200 && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob's requests on the session-chosen route never became free")
			}
			time.Sleep(5 * time.Millisecond)
		}
		for i := range 5 {
			if code, n := get(bobC, on, "/s/x"); code != 200 || n != 0 {
				t.Errorf("warm #%d: %d in %d round trips, want 200 in 0", i, code, n)
			}
		}
		if p := accDo(t, bobC, "GET", baseOn+"/.portcullis/whoami", nil, accAPI); !strings.Contains(p.body, `"active_org":"acme"`) {
			t.Errorf("whoami after the automatic choice: %s", p.body)
		}
		// With caches off, the recorded choice makes it one round trip, like any other.
		if code, n := get(bobC, off, "/s/x"); code != 200 || n != 1 {
			t.Errorf("caches off: %d in %d round trips, want 200 in 1", code, n)
		}
	})

	t.Run("redis down fails closed", func(t *testing.T) {
		rs.Stop()
		for _, path := range []string{"/o/acme/x", "/s/x"} {
			r := accDo(t, aliceC, "GET", off.base+path, nil, accAPI)
			if reason, _, _ := r.problem(); r.StatusCode != 503 || reason != "store_unavailable" {
				t.Errorf("%s with Redis stopped: %d %s", path, r.StatusCode, r.body)
			}
		}
	})
}
