package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// Issue 6 through the real binary: recovery guards in front of a portal that records every
// request it receives, with a real redis-server seeded through store.Orgs (security cases REC,
// DOS-02, REDIS-03).

// recPortal is the legacy portal: it records what reaches it, byte for byte.
type recPortal struct {
	*httptest.Server
	mu   sync.Mutex
	seen []recHit
}

type recHit struct {
	method, uri, ctype string
	length             int64
	body               []byte
}

func newRecPortal(t *testing.T) *recPortal {
	p := &recPortal{}
	p.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.seen = append(p.seen, recHit{r.Method, r.RequestURI, r.Header.Get("Content-Type"), r.ContentLength, b})
		p.mu.Unlock()
		io.WriteString(w, "portal: if an account exists, mail is on its way")
	}))
	t.Cleanup(p.Close)
	return p
}

func (p *recPortal) hits() []recHit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]recHit(nil), p.seen...)
}

type recoveryBed struct {
	t      *testing.T
	base   string
	c      *http.Client
	portal *recPortal
	redis  *redistest.Server
	st     *store.Store
	proc   *proc
}

const (
	recActor = "e2e-admin"
	recAlice = "https://idp.example.test|alice"
)

func newRecoveryBed(t *testing.T) *recoveryBed { t.Helper(); return newRecoveryBedOn(t, oneServer) }

func newRecoveryBedOn(t *testing.T, top topology) *recoveryBed {
	t.Helper()
	rs := startE2ERedis(t, top)
	st, err := store.New(rs.config())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	seedRecovery(t, st)

	portal := newRecPortal(t)
	listen := freePort(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfgPath, fmt.Sprintf(`server:
  listen: %[1]s
  metrics_listen: "off"
tls:
  mode: self_signed
redis:
%[2]s
  read_timeout: 500ms
  dial_timeout: 500ms
routes:
  - name: reset
    path: /legacy/password/reset
    path_match: exact
    methods: [POST]
    upstream: %[3]s
    public: true
    recovery_guard:
      identifier: [{from: form, name: email}, {from: multipart, name: email}]
      rate_limit: {per_identifier: 1000, per_client: 10000}
  - name: api-recovery
    path: /legacy/api/v1/recovery
    path_match: exact
    upstream: %[3]s
    public: true
    recovery_guard:
      methods: [POST, PUT]
      identifier: [{from: json, name: /email}]
      blocked_response: forbidden
      identifier_in_audit: mask
      rate_limit: {per_identifier: 1000, per_client: 10000}
  - name: recover
    path: /legacy/account/recover
    path_match: exact
    methods: [GET, POST]
    upstream: %[3]s
    public: true
    recovery_guard:
      methods: [GET, POST]
      identifier: [{from: query, name: email}, {from: form, name: email}]
      rate_limit: {per_identifier: 1000, per_client: 10000}
  - name: limited
    path: /legacy/limited
    upstream: %[3]s
    public: true
    recovery_guard:
      identifier: [{from: form, name: email}]
      rate_limit: {per_identifier: 3, per_client: 10000, window: 1h}
  - name: public
    path: /
    upstream: %[3]s
    public: true
`, listen, rs.yaml(), portal.URL))
	p := startBinary(t, cfgPath)
	c := &http.Client{
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, MaxIdleConnsPerHost: 32},
		Timeout:   10 * time.Second,
	}
	return &recoveryBed{t: t, base: "https://" + listen, c: c, portal: portal, redis: rs.server, st: st, proc: p}
}

// seedRecovery writes the organisations of the security catalogue: fresh.example verified for
// an active org; stale.example lapsed; old-corp.example of an ended org; kappa-legacy.example of
// a merged org; xn--bcher-alt-q9a.example of a suspended one; people with live, revoked and
// offboarded memberships; an invitation nobody accepted.
func seedRecovery(t *testing.T, st *store.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := store.NewOrgs(st, nil)
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	org := func(id, domain string) {
		t.Helper()
		must(o.CreateOrg(ctx, store.Org{ID: id, Name: id}, recActor, "seed"))
		must(o.AddDomain(ctx, id, domain, recActor, "seed"))
		must(o.SetDomainStatus(ctx, id, domain, store.DomainVerified, recActor, "seed"))
	}
	person := func(orgID, sub, email string) string {
		t.Helper()
		user := "https://idp.example.test|" + sub
		must(o.Grant(ctx, store.Membership{Org: orgID, User: user, Kind: store.KindEmployee}, recActor, "seed"))
		if err := st.RecordPerson(ctx, email, user, time.Now(), 0); err != nil {
			t.Fatal(err)
		}
		return user
	}
	org("acme", "fresh.example")
	person("acme", "alice", "alice@fresh.example")
	bob := person("acme", "bob", "bob@fresh.example")
	must(o.Revoke(ctx, "acme", bob, recActor, "left"))
	eve := person("acme", "eve", "eve@fresh.example")
	must(o.Offboard(ctx, eve, recActor, "offboarded"))
	must(o.Invite(ctx, store.Invitation{Org: "acme", Email: "invited@fresh.example", Kind: store.KindEmployee}, recActor, "seed"))

	org("stale", "stale.example")
	person("stale", "victim", "victim@stale.example")
	must(o.SetDomainStatus(ctx, "stale", "stale.example", store.DomainLapsed, recActor, "domain expired"))

	org("oldcorp", "old-corp.example")
	person("oldcorp", "victim2", "victim@old-corp.example")
	must(o.SetOrgStatus(ctx, "oldcorp", store.OrgStatus{Status: store.OrgEnded}, recActor, "contract over"))

	org("kappa", "kappa-legacy.example")
	person("kappa", "victim3", "victim@kappa-legacy.example")
	must(o.SetOrgStatus(ctx, "kappa", store.OrgStatus{Status: store.OrgActive, MergedInto: "acme"}, recActor, "merged"))

	org("buecher", "xn--bcher-alt-q9a.example")
	person("buecher", "victim4", "victim@xn--bcher-alt-q9a.example")
	must(o.SetOrgStatus(ctx, "buecher", store.OrgStatus{Status: store.OrgSuspended}, recActor, "unpaid"))
}

type recAnswer struct {
	status int
	body   string
	close  bool
}

func (b *recoveryBed) send(method, target, ctype string, body []byte) recAnswer {
	b.t.Helper()
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, _ := http.NewRequest(method, b.base+target, rd)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return recAnswer{resp.StatusCode, string(rb), resp.Close}
}

func (b *recoveryBed) form(target, body string) recAnswer {
	return b.send("POST", target, "application/x-www-form-urlencoded", []byte(body))
}

// arrives checks that the request reached the portal once more, byte-identical.
func (b *recoveryBed) arrives(what string, a recAnswer, before int, method, uri string, body []byte) {
	b.t.Helper()
	hits := b.portal.hits()
	if a.status != 200 || !strings.HasPrefix(a.body, "portal:") || len(hits) != before+1 {
		b.t.Errorf("%s: %d %q, portal hits %d (want %d)", what, a.status, a.body, len(hits), before+1)
		return
	}
	h := hits[len(hits)-1]
	if h.method != method || h.uri != uri || !bytes.Equal(h.body, body) || h.length != int64(len(body)) {
		b.t.Errorf("%s: portal got %s %s %q (length %d), want %s %s %q", what, h.method, h.uri, h.body, h.length, method, uri, body)
	}
}

// stopped checks that nothing reached the portal.
func (b *recoveryBed) stopped(what string, a recAnswer, before, status int, body string) {
	b.t.Helper()
	if n := len(b.portal.hits()); n != before {
		b.t.Errorf("%s: forwarded to the portal (%d hits, want %d)", what, n, before)
	}
	if a.status != status || (body != "" && !strings.Contains(a.body, body)) {
		b.t.Errorf("%s: %d %q, want %d with %q", what, a.status, a.body, status, body)
	}
}

func TestE2ERecoveryGuard(t *testing.T) { testRecoveryGuard(t, newRecoveryBed(t)) }

// TestE2ERecoveryGuardSentinel is TestE2ERecoveryGuard behind Redis Sentinel.
func TestE2ERecoveryGuardSentinel(t *testing.T) { testRecoveryGuard(t, newRecoveryBedOn(t, sentinel)) }

func testRecoveryGuard(t *testing.T, b *recoveryBed) {
	const generic = "If an account exists for that address, a reset link is on its way."

	// Allowed: forwarded byte for byte, as form, JSON, multipart and query.
	n := 0
	for _, body := range []string{"email=alice%40fresh.example&csrf=x1", "email=ALICE@Fresh.Example", "email=alice@fresh.example."} {
		b.arrives("form "+body, b.form("/legacy/password/reset", body), n, "POST", "/legacy/password/reset", []byte(body))
		n++
	}
	js := []byte(`{"email":"alice@fresh.example","lang":"en"}`)
	b.arrives("json", b.send("POST", "/legacy/api/v1/recovery", "application/json", js), n, "POST", "/legacy/api/v1/recovery", js)
	n++
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("email", "alice@fresh.example")
	_ = mw.WriteField("csrf", "x2")
	_ = mw.Close()
	b.arrives("multipart", b.send("POST", "/legacy/password/reset", mw.FormDataContentType(), mp.Bytes()), n, "POST", "/legacy/password/reset", mp.Bytes())
	n++
	b.arrives("query", b.send("GET", "/legacy/account/recover?email=alice@fresh.example", "", nil), n, "GET", "/legacy/account/recover?email=alice@fresh.example", nil)
	n++
	// Invited by acme, never signed in: a portal's existing user on the first day; allowed.
	b.arrives("invited, never signed in", b.form("/legacy/password/reset", "email=invited%40fresh.example"), n, "POST", "/legacy/password/reset", []byte("email=invited%40fresh.example"))
	n++

	// Stale: blocked with the generic answer (or 403 on the forbidden route); nothing forwarded.
	for _, e := range []string{
		"victim@stale.example", "Victim@STALE.EXAMPLE", "victim@Stale.Example", "victim+reset@stale.example",
		"v.i.c.t.i.m@stale.example", "victim@old-corp.example", "victim@kappa-legacy.example",
		"victim@xn--bcher-alt-q9a.example", "victim@BÜCHER-ALT.example", "victim@bu\u0308cher-alt.example",
		"victim@stale.example.", "victim@mail.stale.example", "victim@a.b.stale.example.",
		" victim@stale.example", "victim@stale.example ", "victim@stale.example\t",
		"victim@ſtale.example", "victim@ＳＴＡＬＥ.example", "victim@stale．example", "victim@stale。example",
		"victim@stale｡example", "victim@stale.exam\u00adple", "victim@old-corp.example\u200b", "victim@\u212aappa-legacy.example",
		"bob@fresh.example",    // revoked
		"eve@fresh.example",    // offboarded
		"nobody@fresh.example", // nobody known
		"alice+reset@fresh.example",
		"someone@unknown.example", // no org ever had the domain
	} {
		b.stopped("form "+e, b.form("/legacy/password/reset", "email="+url.QueryEscape(e)), n, 200, generic)
		b.stopped("query "+e, b.send("GET", "/legacy/account/recover?email="+url.QueryEscape(e), "", nil), n, 200, generic)
		js, _ := json.Marshal(map[string]string{"email": e})
		b.stopped("json "+e, b.send("POST", "/legacy/api/v1/recovery", "application/json", js), n, 403, "")
	}

	// Tricks: refused as malformed (400/415), never forwarded.
	for _, tc := range []struct{ what, target, ctype, body string }{
		{"cyrillic а look-alike", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@stаle.example")},
		{"cyrillic ѕ look-alike", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@ѕtale.example")},
		{"dotless i", "/legacy/password/reset", "form", "email=" + url.QueryEscape("vıctim@stale.example")},
		{"quoted local part", "/legacy/password/reset", "form", "email=" + url.QueryEscape(`"a@b"@fresh.example`)},
		{"quoted attacker", "/legacy/password/reset", "form", "email=" + url.QueryEscape(`"victim@stale.example"@fresh.example`)},
		{"two at signs", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@stale.example@fresh.example")},
		{"list", "/legacy/password/reset", "form", "email=" + url.QueryEscape("alice@fresh.example,b@evil.test")},
		{"semicolon list", "/legacy/password/reset", "form", "email=" + url.QueryEscape("alice@fresh.example;victim@stale.example")},
		{"space list", "/legacy/password/reset", "form", "email=alice@fresh.example%20victim@stale.example"},
		{"display name", "/legacy/password/reset", "form", "email=" + url.QueryEscape("Name <alice@fresh.example>")},
		{"comment", "/legacy/password/reset", "form", "email=" + url.QueryEscape("alice@fresh.example (comment)")},
		{"comment as name", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@stale.example(fresh.example)")},
		{"encoded word", "/legacy/password/reset", "form", "email=" + url.QueryEscape("=?utf-8?q?victim=40stale.example?=@fresh.example")},
		{"percent hack", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim%stale.example@fresh.example")},
		{"port", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@stale.example:25")},
		{"address literal", "/legacy/password/reset", "form", "email=" + url.QueryEscape("victim@[stale.example]")},
		{"two dots", "/legacy/password/reset", "form", "email=victim@stale.example.."},
		{"duplicate fields", "/legacy/password/reset", "form", "email=alice@fresh.example&email=victim@stale.example"},
		{"duplicate reversed", "/legacy/password/reset", "form", "email=victim@stale.example&email=alice@fresh.example"},
		{"array syntax", "/legacy/password/reset", "form", "email[]=alice@fresh.example&email[]=victim@stale.example"},
		{"nested", "/legacy/password/reset", "form", "user[email]=victim@stale.example"},
		{"other case", "/legacy/password/reset", "form", "Email=victim@stale.example&email=alice@fresh.example"},
		{"upper key", "/legacy/password/reset", "form", "EMAIL=victim@stale.example"},
		{"query and body", "/legacy/password/reset?email=victim@stale.example", "form", "email=alice@fresh.example"},
		{"query and body reversed", "/legacy/account/recover?email=alice@fresh.example", "form", "email=victim@stale.example"},
		{"json duplicate keys", "/legacy/api/v1/recovery", "json", `{"email":"alice@fresh.example","email":"victim@stale.example"}`},
		{"json case keys", "/legacy/api/v1/recovery", "json", `{"email":"alice@fresh.example","Email":"victim@stale.example"}`},
		{"json array", "/legacy/api/v1/recovery", "json", `{"email":["alice@fresh.example","victim@stale.example"]}`},
		{"json escaped", "/legacy/api/v1/recovery", "json", `{"email":"victim\u0040stale.example,alice@fresh.example"}`},
		{"wrong content type", "/legacy/password/reset", "text/plain", "email=alice@fresh.example"},
		{"json sent as form", "/legacy/api/v1/recovery", "form", "email=alice@fresh.example"},
	} {
		ct := map[string]string{"form": "application/x-www-form-urlencoded", "json": "application/json"}[tc.ctype]
		if ct == "" {
			ct = tc.ctype
		}
		a := b.send("POST", tc.target, ct, []byte(tc.body))
		if len(b.portal.hits()) != n || (a.status != 400 && a.status != 415) {
			t.Errorf("%s: %d %q, portal hits %d (want %d)", tc.what, a.status, a.body, len(b.portal.hits()), n)
		}
	}

	// DOS-02: over the 64 KiB limit, declared or chunked: 413, connection closed, nothing
	// forwarded; with Expect: 100-continue, no 100 Continue.
	big := "email=alice@fresh.example&pad=" + strings.Repeat("x", 70<<10)
	a := b.form("/legacy/password/reset", big)
	if a.status != 413 || !a.close || len(b.portal.hits()) != n {
		t.Errorf("declared length over the limit: %d close=%v hits=%d", a.status, a.close, len(b.portal.hits()))
	}
	req, _ := http.NewRequest("POST", b.base+"/legacy/password/reset", io.MultiReader(strings.NewReader(big), strings.NewReader(strings.Repeat("y", 1<<20))))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if resp, err := b.c.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode != 413 {
			t.Errorf("chunked over the limit: %d", resp.StatusCode)
		}
	} // a reset while still sending is fine too: the proxy closed the connection
	if len(b.portal.hits()) != n {
		t.Error("chunked body over the limit was forwarded")
	}
	conn, err := tls.Dial("tcp", strings.TrimPrefix(b.base, "https://"), &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "POST /legacy/password/reset HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n")
	line, _ := bufio.NewReader(conn).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("Expect: 100-continue over the limit: %q", line)
	}

	// Audit: blocked requests are in the stream with the reason, the org and no raw address.
	evs, _, err := store.NewAudit(b.st, 0).Tail(context.Background(), "0", 10000, 0)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, e := range evs {
		if e.Type != audit.RecoveryBlocked {
			continue
		}
		reasons[e.Reason]++
		if strings.Contains(e.Detail["identifier"], "victim@") {
			t.Errorf("raw identifier in audit: %+v", e)
		}
		if e.Reason == "stale_domain" && e.Org == "" {
			t.Errorf("stale_domain without org: %+v", e)
		}
	}
	for _, r := range []string{"stale_domain", "no_active_membership", "unknown_domain", "identifier_invalid", "identifier_ambiguous", "body_too_large"} {
		if reasons[r] == 0 {
			t.Errorf("no %s event in the audit stream (%v)", r, reasons)
		}
	}
}

func TestE2ERecoveryRateLimitAndRedisDown(t *testing.T) {
	b := newRecoveryBed(t)
	// 20 concurrent requests for one identifier against a limit of 3: exactly 3 reach the portal.
	var wg sync.WaitGroup
	statuses := make(chan int, 20)
	for range 20 {
		wg.Go(func() {
			req, _ := http.NewRequest("POST", b.base+"/legacy/limited", strings.NewReader("email=alice@fresh.example"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			resp, err := b.c.Do(req)
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			statuses <- resp.StatusCode
		})
	}
	wg.Wait()
	close(statuses)
	count := map[int]int{}
	for s := range statuses {
		count[s]++
	}
	if count[200] != 3 || count[429] != 17 || len(b.portal.hits()) != 3 {
		t.Errorf("rate limit under concurrency: statuses %v, portal hits %d", count, len(b.portal.hits()))
	}

	// REDIS-03: Redis stopped: every recovery request is refused 503, nothing forwarded.
	b.redis.Stop()
	n := len(b.portal.hits())
	for _, e := range []string{"victim@stale.example", "alice@fresh.example"} {
		start := time.Now()
		a := b.form("/legacy/password/reset", "email="+e)
		if a.status != 503 || !strings.Contains(a.body, "store_unavailable") || len(b.portal.hits()) != n {
			t.Errorf("%s with Redis stopped: %d %q, portal hits %d", e, a.status, a.body, len(b.portal.hits()))
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the 503 took %v", d)
		}
	}
	b.proc.waitLog(t, "recovery store unavailable; refusing (fail closed)", 5*time.Second)
	// Other public routes keep working.
	if a := b.send("GET", "/anything", "", nil); a.status != 200 {
		t.Errorf("public route with Redis stopped: %d", a.status)
	}
}

// TestE2ERecoverySignInRecordsPerson: a sign-in with a verified address fills the index the
// recovery guard finds people by (serve.go's OnSignIn).
func TestE2ERecoverySignInRecordsPerson(t *testing.T) {
	s := newSessionBed(t)
	st, err := store.New(config.Redis{Address: s.redis.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := st.PersonByEmail(ctx, "alice@fresh.example"); err == nil {
		t.Fatal("person recorded before any sign-in")
	}
	if p := s.browse("/app/x"); p.StatusCode != 200 {
		t.Fatalf("sign-in: %d %s", p.StatusCode, p.body)
	}
	p, err := st.PersonByEmail(ctx, "Alice@Fresh.Example")
	if err != nil || !strings.HasSuffix(p.User, "|sub-alice") || p.Seen.IsZero() {
		t.Fatalf("after sign-in: %+v, %v", p, err)
	}
}
