package proxy

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
	"github.com/portcullis-proxy/portcullis/store"
)

// recFake is an in-memory RecoveryStore and Members: domain holders, person indexes,
// memberships and counters, with a switch that makes every call fail like a stopped Redis.
type recFake struct {
	mu       sync.Mutex
	domains  map[string]string // domain → org id
	orgs     map[string]*store.Org
	mems     map[string]*store.Membership // org \x00 user
	orgsOf   map[string][]string
	persons  map[string]string             // lower-case email → user
	names    map[string]string             // portal username → user (a separate index, as in the store)
	mailDoms map[string][]string           // user → the email domains they signed in with
	invites  map[string][]store.Invitation // lower-case email → its invitations
	counts   map[string]int64
	down     bool
	lookups  int
	lastKeys []string
}

func newRecFake() *recFake {
	return &recFake{domains: map[string]string{}, orgs: map[string]*store.Org{}, mems: map[string]*store.Membership{},
		orgsOf: map[string][]string{}, persons: map[string]string{}, names: map[string]string{}, mailDoms: map[string][]string{}, invites: map[string][]store.Invitation{}, counts: map[string]int64{}}
}

var errDown = fmt.Errorf("redis: %w: connection refused", store.ErrUnavailable)

func (f *recFake) DomainHolder(_ context.Context, domain string) (*store.Org, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return nil, "", errDown
	}
	for c := domain; strings.Contains(c, "."); {
		if id, ok := f.domains[c]; ok {
			return f.orgs[id], c, nil
		}
		_, c, _ = strings.Cut(c, ".")
	}
	return nil, "", store.ErrNotFound
}

func (f *recFake) person(index map[string]string, key string) (*store.PersonRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	f.lastKeys = append(f.lastKeys, key)
	if f.down {
		return nil, errDown
	}
	if u, ok := index[key]; ok {
		return &store.PersonRecord{User: u}, nil
	}
	return nil, store.ErrNotFound
}

func (f *recFake) PersonByEmail(_ context.Context, email string) (*store.PersonRecord, error) {
	return f.person(f.persons, strings.ToLower(email))
}

func (f *recFake) PersonByUsername(_ context.Context, name string) (*store.PersonRecord, error) {
	return f.person(f.names, name)
}

func (f *recFake) Invitations(_ context.Context, email string) ([]store.Invitation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return nil, errDown
	}
	return f.invites[strings.ToLower(email)], nil
}

func (f *recFake) MailDomains(_ context.Context, user string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return nil, errDown
	}
	return f.mailDoms[user], nil
}

func (f *recFake) CountRecovery(_ context.Context, route, identifier, client string, window time.Duration, now time.Time) (store.RecoveryCount, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return store.RecoveryCount{}, errDown
	}
	n := store.RecoveryCount{Reset: now.Add(window)}
	f.counts["c:"+route+":"+client]++
	n.Client = f.counts["c:"+route+":"+client]
	if identifier != "" {
		f.counts["i:"+route+":"+identifier]++
		n.Identifier = f.counts["i:"+route+":"+identifier]
	}
	return n, nil
}

func (f *recFake) Lookup(_ context.Context, org, user string) (*store.Org, *store.Membership, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, nil, errDown
	}
	return f.orgs[org], f.mems[org+"\x00"+user], nil
}

// WithPrefetch: the fake reads nothing ahead.
func (f *recFake) WithPrefetch(ctx context.Context, _ string) context.Context { return ctx }

func (f *recFake) OrgsOf(_ context.Context, user string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errDown
	}
	return f.orgsOf[user], nil
}

func (f *recFake) org(id, status string, domains ...store.Domain) *store.Org {
	f.mu.Lock()
	defer f.mu.Unlock()
	o := &store.Org{ID: id, Name: id, Status: status, Domains: domains}
	f.orgs[id] = o
	for _, d := range domains {
		f.domains[d.Name] = id
	}
	return o
}

func (f *recFake) member(org, user, email, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mems[org+"\x00"+user] = &store.Membership{Org: org, User: user, Kind: store.KindEmployee, Status: status}
	f.orgsOf[user] = append(f.orgsOf[user], org)
	if email != "" {
		f.persons[email] = user
		_, d, _ := strings.Cut(email, "@")
		f.mailDoms[user] = append(f.mailDoms[user], d)
	}
}

func verified(d string) store.Domain { return store.Domain{Name: d, Status: store.DomainVerified} }

// recBed is a Server with two guarded routes in front of a recording upstream.
type recBed struct {
	t     *testing.T
	tp    *testProxy
	up    *echoUpstream
	fake  *recFake
	audit *audit.Recorder
}

func newRecBed(t *testing.T, guard string) *recBed {
	t.Helper()
	up := newEcho(t)
	if guard == "" {
		guard = "{identifier: [{from: form, name: email}]}"
	}
	cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off"}
tls: {mode: self_signed}
routes:
  - name: reset
    path: /legacy/password/reset
    path_match: exact
    methods: [GET, POST]
    upstream: %[1]s
    public: true
    recovery_guard:
      methods: [GET, POST]
      identifier: [{from: form, name: email}, {from: json, name: /email}, {from: multipart, name: email}, {from: query, name: email}]
      rate_limit: {per_identifier: 5, per_client: 1000, window: 1h}
  - name: custom
    path: /custom
    upstream: %[1]s
    public: true
    recovery_guard: %[2]s
  - name: other
    path: /
    upstream: %[1]s
    public: true
`, up.URL, guard))
	f := newRecFake()
	rec := &audit.Recorder{}
	tp := newTestProxy(t, cfg, Options{Recovery: f, Members: f, Audit: rec})
	f.org("acme", store.OrgActive, verified("fresh.example"))
	f.member("acme", "alice", "alice@fresh.example", store.MembershipActive)
	f.org("oldco", store.OrgActive, store.Domain{Name: "stale.example", Status: store.DomainLapsed}, verified("old-corp.example"))
	f.org("gone", store.OrgEnded, verified("ended.example"))
	f.org("merged", store.OrgActive, verified("merged.example"))
	f.orgs["merged"].MergedInto = "acme"
	f.org("paused", store.OrgSuspended, verified("suspended.example"))
	f.member("acme", "bob", "bob@fresh.example", store.MembershipRevoked)
	f.member("acme", "carol", "carol@fresh.example", store.MembershipSuspended)
	f.member("oldco", "victim", "victim@old-corp.example", store.MembershipActive)
	f.member("gone", "dave", "dave@ended.example", store.MembershipActive)
	return &recBed{t: t, tp: tp, up: up, fake: f, audit: rec}
}

type recResp struct {
	status int
	header http.Header
	body   string
	close  bool // the server announced it closes the connection
}

func (b *recBed) send(method, target, ctype string, body []byte) recResp {
	b.t.Helper()
	req, _ := http.NewRequest(method, b.tp.http.URL+target, bytes.NewReader(body))
	if body == nil {
		req.Body = http.NoBody
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	// Redirects are the answer, not followed.
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	return recResp{resp.StatusCode, resp.Header, string(rb), resp.Close}
}

func (b *recBed) form(v string) recResp {
	return b.send("POST", "/legacy/password/reset", "application/x-www-form-urlencoded", []byte(v))
}

const genericPage = config.DefaultRecoveryGenericBody

// forwarded checks the request reached the portal with exactly this body.
func (b *recBed) forwarded(what string, r recResp, n int, body string) {
	b.t.Helper()
	if r.status != 200 || b.up.count() != n {
		b.t.Errorf("%s: status %d, upstream hits %d (want %d): %s", what, r.status, b.up.count(), n, r.body)
		return
	}
	got := b.up.last(b.t)
	gb, _ := io.ReadAll(got.Body)
	if string(gb) != body || got.ContentLength != int64(len(body)) {
		b.t.Errorf("%s: upstream got %q (length %d), want %q", what, gb, got.ContentLength, body)
	}
}

// notForwarded checks the portal got nothing, and the answer.
func (b *recBed) notForwarded(what string, r recResp, n, status int, reason string) {
	b.t.Helper()
	if b.up.count() != n {
		b.t.Errorf("%s: forwarded (upstream hits %d, want %d)", what, b.up.count(), n)
	}
	if r.status != status {
		b.t.Errorf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	if reason != "" && !strings.Contains(r.body, `"`+reason+`"`) {
		b.t.Errorf("%s: body %q lacks reason %s", what, r.body, reason)
	}
}

func (b *recBed) lastAudit() audit.Event {
	evs := b.audit.Events()
	if len(evs) == 0 {
		b.t.Fatal("no audit event")
	}
	return evs[len(evs)-1]
}

func TestRecoveryAllowedIsForwardedByteForByte(t *testing.T) {
	b := newRecBed(t, "")
	b.forwarded("form", b.form("email=alice%40fresh.example&x=1"), 1, "email=alice%40fresh.example&x=1")
	b.forwarded("upper case", b.form("email=ALICE@FRESH.EXAMPLE"), 2, "email=ALICE@FRESH.EXAMPLE")
	js := `{"email": "alice@fresh.example", "n": [1,2]}`
	b.forwarded("json", b.send("POST", "/legacy/password/reset", "application/json", []byte(js)), 3, js)
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("email", "alice@fresh.example")
	_ = mw.Close()
	b.forwarded("multipart", b.send("POST", "/legacy/password/reset", mw.FormDataContentType(), mp.Bytes()), 4, mp.String())
	b.forwarded("query", b.send("GET", "/legacy/password/reset?email=alice@fresh.example", "", nil), 5, "")
	if len(b.audit.Events()) != 0 {
		t.Errorf("allowed requests audited: %+v", b.audit.Events())
	}
	m := metricsText(t, b.tp.srv)
	if !strings.Contains(m, `portcullis_recovery_total{reason="allowed",result="allowed",route="reset"} 5`) {
		t.Errorf("metrics:\n%s", grepLines(m, "recovery"))
	}
}

func TestRecoveryBlocksStaleAccounts(t *testing.T) {
	b := newRecBed(t, "")
	for _, tc := range []struct{ email, reason, org string }{
		{"victim@stale.example", string(reason.StaleDomain), "oldco"},
		{"Victim@STALE.EXAMPLE", string(reason.StaleDomain), "oldco"},
		{"victim@mail.stale.example", string(reason.StaleDomain), "oldco"},
		{"victim@stale.example.", string(reason.StaleDomain), "oldco"},
		{"victim@ſtale.example", string(reason.StaleDomain), "oldco"},
		{"victim@stale。example", string(reason.StaleDomain), "oldco"},
		{"dave@ended.example", string(reason.StaleDomain), "gone"},
		{"x@merged.example", string(reason.StaleDomain), "merged"},
		{"x@suspended.example", string(reason.StaleDomain), "paused"},
		{"victim@nowhere.example", string(reason.UnknownDomain), ""},
		{"bob@fresh.example", string(reason.NoActiveMembership), "acme"},   // revoked
		{"carol@fresh.example", string(reason.NoActiveMembership), "acme"}, // suspended
		{"nobody@fresh.example", string(reason.NoActiveMembership), "acme"},
		{"alice+reset@fresh.example", string(reason.NoActiveMembership), "acme"}, // +tag: not the address signed in with
	} {
		r := b.form("email=" + url.QueryEscape(tc.email))
		b.notForwarded(tc.email, r, 0, 200, "")
		if r.body != genericPage || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("%s: generic answer %q %q", tc.email, r.body, r.header.Get("Content-Type"))
		}
		ev := b.lastAudit()
		if ev.Type != audit.RecoveryBlocked || ev.Reason != tc.reason || ev.Org != tc.org || ev.Route != "reset" ||
			ev.Detail["client"] == "" || !strings.HasPrefix(ev.Detail["identifier"], "sha256:") || ev.Detail["domain"] == "" {
			t.Errorf("%s: audit %+v, want reason %s org %q", tc.email, ev, tc.reason, tc.org)
		}
		if strings.Contains(fmt.Sprint(ev), tc.email) || strings.Contains(b.tp.logs(), tc.email) {
			t.Errorf("%s: the raw identifier was recorded", tc.email)
		}
	}
	// The generic answer to a blocked address is the one given after forwarding nothing: a
	// client cannot tell a blocked address from an allowed one by the guard's own answer.
	m := metricsText(t, b.tp.srv)
	for _, want := range []string{
		`portcullis_recovery_total{reason="stale_domain",result="blocked",route="reset"} 9`,
		`portcullis_recovery_total{reason="unknown_domain",result="blocked",route="reset"} 1`,
		`portcullis_recovery_total{reason="no_active_membership",result="blocked",route="reset"} 4`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s:\n%s", want, grepLines(m, "recovery"))
		}
	}
}

func TestRecoveryMalformedIsRejected(t *testing.T) {
	b := newRecBed(t, "")
	for _, tc := range []struct {
		what, target, ctype, body string
		status                    int
		reason                    string
	}{
		{"quoted local part", "", "form", `email=%22a%40b%22%40fresh.example`, 400, "identifier_invalid"},
		{"list", "", "form", "email=alice@fresh.example,b@evil.example", 400, "identifier_invalid"},
		{"display name", "", "form", "email=Name+%3Calice@fresh.example%3E", 400, "identifier_invalid"},
		{"comment", "", "form", "email=alice@fresh.example+(comment)", 400, "identifier_invalid"},
		{"cyrillic a", "", "form", "email=" + url.QueryEscape("alice@frеsh.example"), 400, "identifier_invalid"},
		{"duplicate fields", "", "form", "email=alice@fresh.example&email=victim@stale.example", 400, "identifier_ambiguous"},
		{"array syntax", "", "form", "email[]=alice@fresh.example", 400, "identifier_ambiguous"},
		{"query and body", "?email=victim@stale.example", "form", "email=alice@fresh.example", 400, "identifier_ambiguous"},
		{"json duplicate keys", "", "json", `{"email":"alice@fresh.example","EMAIL":"victim@stale.example"}`, 400, "identifier_ambiguous"},
		{"semicolon", "", "form", "email=alice@fresh.example;x=1", 400, "malformed_body"},
		{"wrong content type", "", "text/plain", "email=alice@fresh.example", 415, "content_type_not_allowed"},
	} {
		ct := map[string]string{"form": "application/x-www-form-urlencoded", "json": "application/json"}[tc.ctype]
		if ct == "" {
			ct = tc.ctype
		}
		r := b.send("POST", "/legacy/password/reset"+tc.target, ct, []byte(tc.body))
		b.notForwarded(tc.what, r, 0, tc.status, tc.reason)
		if ev := b.lastAudit(); ev.Reason != tc.reason {
			t.Errorf("%s: audit reason %q", tc.what, ev.Reason)
		}
	}
	// Two Content-Type headers.
	req, _ := http.NewRequest("POST", b.tp.http.URL+"/legacy/password/reset", strings.NewReader("email=alice@fresh.example"))
	req.Header["Content-Type"] = []string{"application/x-www-form-urlencoded", "application/json"}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 || b.up.count() != 0 {
		t.Errorf("two content types: %d, %d hits", resp.StatusCode, b.up.count())
	}
}

func TestRecoveryBodyLimit(t *testing.T) {
	b := newRecBed(t, `{identifier: [{from: form, name: email}], body_limit: 100}`)
	big := "email=alice@fresh.example&pad=" + strings.Repeat("x", 200)
	r := b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte(big))
	b.notForwarded("declared length", r, 0, 413, "body_too_large")
	if !r.close {
		t.Errorf("413 without Connection: close: %v", r.header)
	}
	// Chunked: no declared length; refused once the limit is passed.
	req, _ := http.NewRequest("POST", b.tp.http.URL+"/custom", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 413 || b.up.count() != 0 {
		t.Errorf("chunked over the limit: %d, %d hits", resp.StatusCode, b.up.count())
	}
	// A chunked body within the limit goes on with a definite length.
	small := "email=alice@fresh.example"
	req, _ = http.NewRequest("POST", b.tp.http.URL+"/custom", io.MultiReader(strings.NewReader(small)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	b.forwarded("chunked within the limit", recResp{status: resp.StatusCode}, 1, small)

	// Expect: 100-continue with a length over the limit: the answer is a final 413, never
	// "100 Continue", and the connection is closed.
	c, err := net.Dial("tcp", b.tp.http.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /custom HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1073741824\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	line, _ := br.ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 413") {
		t.Errorf("Expect: 100-continue over the limit answered %q", line)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(strings.ToLower(string(rest)), "connection: close") {
		t.Errorf("connection not closed after 413: %q", rest)
	}
	if b.up.count() != 1 {
		t.Errorf("upstream hits %d", b.up.count())
	}
}

func TestRecoveryRateLimits(t *testing.T) {
	b := newRecBed(t, `{identifier: [{from: form, name: email}], rate_limit: {per_identifier: 2, per_client: 3}}`)
	send := func(e string) recResp {
		return b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("email="+e))
	}
	b.forwarded("1st", send("alice@fresh.example"), 1, "email=alice@fresh.example")
	b.forwarded("2nd, other case", send("Alice@fresh.example"), 2, "email=Alice@fresh.example")
	r := send("alice@fresh.example")
	b.notForwarded("3rd for one identifier", r, 2, 429, "rate_limited")
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	// The per-client limit (3) is now exhausted for any identifier.
	b.notForwarded("4th from one client", send("x@nowhere.example"), 2, 429, "rate_limited")
	if ev := b.lastAudit(); ev.Reason != string(reason.RateLimited) {
		t.Errorf("audit %+v", ev)
	}
	// Hammering is logged and counted, not audited past the first refusal of the window.
	before := len(b.audit.Events())
	for range 5 {
		b.notForwarded("more", send("alice@fresh.example"), 2, 429, "rate_limited")
	}
	if n := len(b.audit.Events()); n != before {
		t.Errorf("%d more audit events for repeated rate-limited requests", n-before)
	}
}

func TestRecoveryMalformedFloodIsNotAudited(t *testing.T) {
	b := newRecBed(t, `{identifier: [{from: form, name: email}], rate_limit: {per_client: 3}}`)
	for range 10 {
		b.notForwarded("garbage", b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("email=a@b@c")), 0, 400, "identifier_invalid")
	}
	if n := len(b.audit.Events()); n != 4 {
		t.Errorf("%d audit events for 10 malformed requests with per_client 3, want 4", n)
	}
	m := metricsText(t, b.tp.srv)
	if !strings.Contains(m, `portcullis_recovery_total{reason="identifier_invalid",result="rejected",route="custom"} 10`) {
		t.Errorf("metrics:\n%s", grepLines(m, "recovery"))
	}
}

func TestRecoveryStoreDownFailsClosed(t *testing.T) {
	b := newRecBed(t, "")
	b.fake.mu.Lock()
	b.fake.down = true
	b.fake.mu.Unlock()
	for _, e := range []string{"alice@fresh.example", "victim@stale.example"} {
		b.notForwarded(e, b.form("email="+e), 0, 503, string(reason.StoreUnavailable))
	}
	// No store at all: the same.
	b2 := newRecBed(t, "")
	b2.tp.srv.opts.Recovery = nil
	b2.notForwarded("no store", b2.form("email=alice@fresh.example"), 0, 503, string(reason.StoreUnavailable))
}

func TestRecoveryOptions(t *testing.T) {
	t.Run("forbidden and mask", func(t *testing.T) {
		b := newRecBed(t, `{identifier: [{from: json, name: /user/email}], blocked_response: forbidden, identifier_in_audit: mask}`)
		r := b.send("POST", "/custom", "application/json", []byte(`{"user":{"email":"victim@stale.example"}}`))
		b.notForwarded("forbidden", r, 0, 403, string(reason.StaleDomain))
		if ev := b.lastAudit(); ev.Detail["identifier"] != "v***@stale.example" {
			t.Errorf("masked identifier %q", ev.Detail["identifier"])
		}
	})
	t.Run("unknown domains allowed", func(t *testing.T) {
		b := newRecBed(t, `{identifier: [{from: form, name: email}], unknown_domains: allow}`)
		send := func(e string) recResp {
			return b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("email="+e))
		}
		b.forwarded("unknown domain, unknown person", send("someone@gmail.example"), 1, "email=someone@gmail.example")
		b.notForwarded("stale still blocked", send("victim@stale.example"), 1, 200, "")
		b.fake.member("acme", "erin", "erin@gmail.example", store.MembershipRevoked)
		b.notForwarded("known person without live membership", send("erin@gmail.example"), 1, 200, "")
		if ev := b.lastAudit(); ev.Reason != string(reason.NoActiveMembership) {
			t.Errorf("audit %+v", ev)
		}
	})
	t.Run("missing identifier blocked by default", func(t *testing.T) {
		// A reset by a field the guard does not know is refused, not forwarded uninspected:
		// a guard fails closed.
		b := newRecBed(t, `{identifier: [{from: form, name: email}]}`)
		for _, body := range []string{"x=1", "username=victim", "login=victim%40stale.example", "account_id=42", "phone=%2B15550100", ""} {
			b.notForwarded(body, b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte(body)), 0, 400, "identifier_missing")
		}
		b.notForwarded("json by another name", b.send("POST", "/custom", "", nil), 0, 400, "identifier_missing")
	})
	t.Run("missing identifier forwarded when asked", func(t *testing.T) {
		b := newRecBed(t, `{identifier: [{from: form, name: email}], missing_identifier: forward}`)
		b.forwarded("missing", b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("x=1")), 1, "x=1")
	})
	t.Run("confirmation step", func(t *testing.T) {
		// The second step of a reset (the link in the mail, and the form that sets the new
		// password) guarded where the portal carries the address (Laravel's ?email=, ASP.NET
		// Identity's Email field): a link issued before the domain lapsed or the person left
		// is dead by the time it is used. A confirmation that names no address is refused.
		b := newRecBed(t, `{methods: [GET, POST], identifier: [{from: query, name: email}, {from: form, name: email}], blocked_response: forbidden}`)
		form := "application/x-www-form-urlencoded"
		b.forwarded("live link", b.send("GET", "/custom?token=T1&email=alice%40fresh.example", "", nil), 1, "")
		b.forwarded("live confirmation", b.send("POST", "/custom?token=T1", form, []byte("email=alice%40fresh.example&password=p")), 2, "email=alice%40fresh.example&password=p")
		b.notForwarded("link for a lapsed domain", b.send("GET", "/custom?token=T2&email=victim%40stale.example", "", nil), 2, 403, string(reason.StaleDomain))
		b.notForwarded("confirmation for a revoked member", b.send("POST", "/custom", form, []byte("token=T3&email=bob%40fresh.example&password=p")), 2, 403, string(reason.NoActiveMembership))
		b.notForwarded("token without an address", b.send("POST", "/custom", form, []byte("token=T2&password=p")), 2, 400, string(reason.IdentifierMissing))
		b.notForwarded("the address moved to the query", b.send("POST", "/custom?email=alice%40fresh.example", form, []byte("email=victim%40stale.example&password=p")), 2, 400, string(reason.IdentifierAmbiguous))
	})
	t.Run("invited, never signed in", func(t *testing.T) {
		// A portal's existing user on the first day behind Portcullis: invited, not signed in
		// yet. The invitation of the organisation holding the domain counts, audited; one
		// from another organisation, or lapsed, does not.
		b := newRecBed(t, "")
		b.fake.mu.Lock()
		b.fake.invites["carla@fresh.example"] = []store.Invitation{{Org: "acme", Email: "carla@fresh.example", Until: time.Now().Add(time.Hour)}}
		b.fake.invites["dora@fresh.example"] = []store.Invitation{{Org: "oldco", Email: "dora@fresh.example", Until: time.Now().Add(time.Hour)}}
		b.fake.invites["eve@fresh.example"] = []store.Invitation{{Org: "acme", Email: "eve@fresh.example", Until: time.Now().Add(-time.Hour)}}
		b.fake.mu.Unlock()
		send := func(e string) recResp {
			return b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("email="+e))
		}
		b.forwarded("invited by acme", send("carla%40fresh.example"), 1, "email=carla%40fresh.example")
		if ev := b.lastAudit(); ev.Type != audit.RecoveryByInvitation || ev.Org != "acme" || ev.Detail["identifier"] == "" {
			t.Errorf("audit %+v", ev)
		}
		b.notForwarded("invited by another org", send("dora%40fresh.example"), 1, 200, "")
		b.notForwarded("invitation lapsed", send("eve%40fresh.example"), 1, 200, "")
		b.notForwarded("not invited", send("zed%40fresh.example"), 1, 200, "")
	})
	t.Run("generic redirect", func(t *testing.T) {
		// A portal that redirects every reset to a "check your mail" page: the block does too.
		b := newRecBed(t, `{identifier: [{from: form, name: email}], generic_status: 302, generic_headers: {Location: /accounts/password_reset/done/}, generic_body: ""}`)
		r := b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("email=victim%40stale.example"))
		if r.status != 302 || r.header.Get("Location") != "/accounts/password_reset/done/" || r.body != "" || b.up.count() != 0 {
			t.Errorf("blocked: %d %v %q (upstream %d)", r.status, r.header, r.body, b.up.count())
		}
	})
	t.Run("mirror", func(t *testing.T) {
		// A blocked request gets the portal's own answer for an address nobody has: it goes
		// on with a decoy that cannot receive mail in place of the address.
		b := newRecBed(t, `{identifier: [{from: form, name: email}, {from: json, name: /user/email}, {from: query, name: email}], methods: [GET, POST], blocked_response: mirror}`)
		form := "application/x-www-form-urlencoded"
		for i, c := range []struct{ name, method, target, ctype, body string }{
			{"form", "POST", "/custom", form, "csrf=t1&email=victim%40stale.example&next=%2Fdone"},
			{"json", "POST", "/custom", "application/json", `{"user":{"email":"victim@stale.example","name":"V"}}`},
			{"query", "GET", "/custom?email=victim@stale.example&x=1", "", ""},
			{"revoked member", "POST", "/custom", form, "email=bob%40fresh.example"},
		} {
			r := b.send(c.method, c.target, c.ctype, []byte(c.body))
			if r.status != 200 || b.up.count() != i+1 {
				t.Fatalf("%s: status %d, upstream hits %d: %s", c.name, r.status, b.up.count(), r.body)
			}
			got := b.up.last(t)
			gb, _ := io.ReadAll(got.Body)
			sent := got.URL.RawQuery + " " + string(gb)
			if strings.Contains(sent, "victim") || strings.Contains(sent, "bob") || !strings.Contains(sent, "portcullis.invalid") {
				t.Errorf("%s: the portal received %q", c.name, sent)
			}
			if ev := b.lastAudit(); ev.Type != audit.RecoveryBlocked || ev.Detail["detail"] != "mirrored" {
				t.Errorf("%s: audit %+v", c.name, ev)
			}
		}
		// The portal's answer is what the client gets, blocked or not: the same shape.
		blocked := b.send("POST", "/custom", form, []byte("email=victim%40stale.example"))
		allowed := b.send("POST", "/custom", form, []byte("email=alice%40fresh.example"))
		if blocked.status != allowed.status || !strings.HasPrefix(blocked.body, `{"body":"email=`) || !strings.HasPrefix(allowed.body, `{"body":"email=`) {
			t.Errorf("blocked %d %s, allowed %d %s", blocked.status, blocked.body, allowed.status, allowed.body)
		}
	})
	t.Run("email or username", func(t *testing.T) {
		// A portal that resets by either: each field is checked as what it is, through its
		// own index, and a request must still carry exactly one of them.
		b := newRecBed(t, `{identifier: [{from: form, name: email}, {from: form, name: username, kind: username}]}`)
		b.fake.mu.Lock()
		b.fake.names["Alice01"] = "alice"
		b.fake.names["Bob01"] = "bob"
		// An address that is also someone's username must not be looked up as a username.
		b.fake.names["victim@stale.example"] = "alice"
		b.fake.mu.Unlock()
		form := "application/x-www-form-urlencoded"
		b.forwarded("live address", b.send("POST", "/custom", form, []byte("email=alice%40fresh.example")), 1, "email=alice%40fresh.example")
		b.forwarded("live username", b.send("POST", "/custom", form, []byte("username=Alice01")), 2, "username=Alice01")
		b.notForwarded("revoked username", b.send("POST", "/custom", form, []byte("username=Bob01")), 2, 200, "")
		b.notForwarded("stale address", b.send("POST", "/custom", form, []byte("email=victim%40stale.example")), 2, 200, "")
		b.notForwarded("an address's username is not an address", b.send("POST", "/custom", form, []byte("username=alice%40fresh.example")), 2, 200, "")
		b.notForwarded("both", b.send("POST", "/custom", form, []byte("email=alice%40fresh.example&username=Bob01")), 2, 400, "identifier_ambiguous")
		b.notForwarded("username twice", b.send("POST", "/custom", form, []byte("username=Alice01&Username=Bob01")), 2, 400, "identifier_ambiguous")
		b.notForwarded("neither", b.send("POST", "/custom", form, []byte("login=Alice01")), 2, 400, "identifier_missing")

		// By username, the person's own addresses are checked as an address in the request
		// would be: the portal mails one of them. dave's only address is at an ended
		// organisation's domain; ghost has a live membership and no address anybody knows.
		b.fake.member("acme", "dave", "", store.MembershipActive)
		b.fake.member("acme", "ghost", "", store.MembershipActive)
		b.fake.mu.Lock()
		b.fake.names["Dave01"], b.fake.names["Ghost01"] = "dave", "ghost"
		b.fake.mailDoms["dave"] = []string{"ended.example"}
		b.fake.mu.Unlock()
		b.notForwarded("username whose address is at a dead domain", b.send("POST", "/custom", form, []byte("username=Dave01")), 2, 200, "")
		if ev := b.lastAudit(); ev.Reason != string(reason.StaleDomain) {
			t.Errorf("audit %+v", ev)
		}
		b.notForwarded("username without a known address", b.send("POST", "/custom", form, []byte("username=Ghost01")), 2, 200, "")
		if ev := b.lastAudit(); ev.Reason != string(reason.AddressUnknown) {
			t.Errorf("audit %+v", ev)
		}
	})
	t.Run("unguarded method", func(t *testing.T) {
		b := newRecBed(t, `{identifier: [{from: form, name: email}]}`)
		b.forwarded("GET not guarded", b.send("GET", "/custom?email=victim@stale.example", "", nil), 1, "")
	})
	t.Run("username", func(t *testing.T) {
		b := newRecBed(t, `{identifier: [{from: form, name: login}], kind: username}`)
		b.fake.mu.Lock()
		b.fake.names["Alice01"] = "alice"
		b.fake.names["Bob01"] = "bob"
		b.fake.mu.Unlock()
		send := func(u string) recResp {
			return b.send("POST", "/custom", "application/x-www-form-urlencoded", []byte("login="+u))
		}
		b.forwarded("live person", send("Alice01"), 1, "login=Alice01")
		b.notForwarded("revoked person", send("Bob01"), 1, 200, "")
		b.notForwarded("unknown username", send("mallory"), 1, 200, "")
	})
}

// TestRecoveryConfigCompiled: every guard config validation accepts is compiled by
// config.Load with recoveryid's rules, so the proxy applies exactly what was checked, and the
// body limits are recoveryid's.
func TestRecoveryConfigCompiled(t *testing.T) {
	if config.DefaultRecoveryBodyLimit != int(recoveryid.DefaultBodyLimit) || config.MaxRecoveryBodyLimit != int(recoveryid.MaxBodyLimit) {
		t.Error("body limits differ between config and recoveryid")
	}
	load := func(from, name string) {
		t.Helper()
		cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off"}
tls: {mode: self_signed}
routes:
  - name: reset
    upstream: http://127.0.0.1:9
    public: true
    recovery_guard: {methods: [POST], identifier: [{from: %s, name: %q}], body_limit: 10}
`, from, name))
		if g := cfg.Routes[0].RecoveryGuard; g.Spec == nil || g.Spec.Locations()[0].Name != name {
			t.Errorf("%s %q: not compiled", from, name)
		}
	}
	for _, name := range []string{"email", "user[email]", "user.email", "_", "E-Mail", "a b", "ü"} {
		load("form", name)
	}
	for _, p := range []string{"/email", "/user/email", "/a~0b", "/a~1b", "/1/2/3/4/5/6/7/8"} {
		load("json", p)
	}
}

func metricsText(t *testing.T, s *Server) string {
	t.Helper()
	rec := httptest.NewRecorder()
	s.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
