package admin

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Records is what the API reads and changes: *store.Store, with store.Orgs for the changes.
type Records interface {
	Org(ctx context.Context, id string) (*store.Org, error)
	OrgIDs(ctx context.Context) ([]string, error)
	Lookup(ctx context.Context, org, user string) (*store.Org, *store.Membership, error)
	Memberships(ctx context.Context, org string) ([]store.Membership, error)
	OrgInvitations(ctx context.Context, org string) ([]store.Invitation, error)
	OrgsOf(ctx context.Context, user string) ([]string, error)
	Request(ctx context.Context, org, id string) (*store.Request, error)
	Requests(ctx context.Context, org string, limit int) ([]store.Request, error)
	RequestsFor(ctx context.Context, user string, limit int) ([]store.Request, error)
	Review(ctx context.Context, org, id string) (*store.Review, error)
	Reviews(ctx context.Context, org string) ([]store.Review, error)
	LastUsed(ctx context.Context, org string) (map[string]time.Time, error)
	Machines(ctx context.Context, org string) ([]store.Membership, error)
	TokenBySecret(ctx context.Context, secret string) (*store.Token, error)
	Tokens(ctx context.Context) ([]store.Token, error)
	TokenUsed(ctx context.Context, id string, now time.Time) error
	RecordPerson(ctx context.Context, email, user string, now time.Time, ttl time.Duration) error
	SetUsername(ctx context.Context, name, user string) error
	ReviewDue(ctx context.Context, now time.Time, within time.Duration) ([]store.Membership, error)
	ResetRecoveryCount(ctx context.Context, route, identifier string) (int, error)
	ResolveEmail(ctx context.Context, email string) (string, error)
	Delegators(ctx context.Context, org string) ([]string, error)
}

// AuditStream is the audit trail as the API reads and appends it (*store.Audit).
type AuditStream interface {
	Append(ctx context.Context, e audit.Event) error
	Tail(ctx context.Context, after string, count int, block time.Duration) ([]audit.Event, string, error)
	Before(ctx context.Context, before string, count int) ([]audit.Event, string, error)
}

// SessionRevoker ends every session of a person (*store.Store).
type SessionRevoker interface {
	RevokeUser(ctx context.Context, user string) (int, error)
}

// Options are the collaborators of a Server.
type Options struct {
	// Store reads the records; Orgs makes every change (with its audit event and
	// invalidation). Both are required.
	Store Records
	Orgs  *store.Orgs
	// Lifecycle is the policy every write and approval applies. Required.
	Lifecycle *authz.Policy
	// Audit is the audit stream operators read (GET /audit) and the person indexes' events
	// are appended to. Required.
	Audit AuditStream
	// Operators, when set, verifies operator JWTs (see NewOperatorVerifier).
	Operators *OperatorVerifier
	// Sessions, when set, ends a person's sessions when a business event offboards them.
	Sessions SessionRevoker
	// Logger receives refusals and outages; nil discards.
	Logger *slog.Logger
	// Now is the clock of approvals and checks; nil means time.Now.
	Now func() time.Time
	// ClientIssuers are the issuers of client_jwt.issuers and, for each, the organisations
	// whose machines its clients may be bound to.
	ClientIssuers map[string][]string
	// Providers are the configured OpenID Providers: who may sign people in for which
	// organisation (authz.Providers). nil: sign-in is not configured, and no organisation
	// can be given providers; decisions apply no trust rule.
	Providers *authz.Providers
	// Trust, when set, is the trust rule's table in force instead of Providers (providers
	// managed while the process runs); ProviderSet manages them (PUT /providers/{name}).
	Trust       *authz.Trust
	ProviderSet ProviderSet
}

// Server is the administration API: JSON over HTTPS under /api/v1/. Every call but the
// OpenAPI document is made by an authenticated actor; every change is recorded with that
// individual and the credential they used.
type Server struct {
	st     Records
	orgs   *store.Orgs
	policy atomic.Pointer[lifecycle]
	ops    *OperatorVerifier
	sess   SessionRevoker
	log    *slog.Logger
	now    func() time.Time
	mux    *http.ServeMux
	doc    []byte
	events AuditStream
	// clientIssuers: Options.ClientIssuers.
	clientIssuers map[string][]string
	trust         *authz.Trust
	pset          ProviderSet

	// tokenUse is when this process last recorded each token's use (coalescing TokenUsed).
	tokenUseMu sync.Mutex
	tokenUse   map[string]time.Time
}

// New builds the API.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Orgs == nil || o.Lifecycle == nil || o.Audit == nil {
		return nil, errors.New("admin: a store, the change API, the audit stream and the lifecycle policy are required")
	}
	s := &Server{st: o.Store, orgs: o.Orgs, ops: o.Operators, sess: o.Sessions, log: o.Logger, now: o.Now, mux: http.NewServeMux(), tokenUse: map[string]time.Time{},
		clientIssuers: maps.Clone(o.ClientIssuers), events: o.Audit, trust: o.Trust, pset: o.ProviderSet}
	if s.trust == nil {
		s.trust = authz.NewTrust(o.Providers)
	}
	s.policy.Store(newLifecycle(o.Lifecycle))
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	doc, err := openAPIDocument(s.endpoints())
	if err != nil {
		return nil, fmt.Errorf("admin: openapi document: %w", err)
	}
	s.doc = doc
	for _, e := range s.endpoints() {
		s.mux.Handle(e.method+" "+e.path, s.serve(e))
	}
	s.mux.HandleFunc("GET "+basePath+"/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(s.doc)
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		problem.Write(w, r, problem.New(reason.NoRoute))
	})
	return s, nil
}

// Policy is the lifecycle policy in force (SetLifecycle's latest).
func (s *Server) Policy() *authz.Policy { return s.policy.Load().Policy }

// SetLifecycle makes p the policy of every later call (a configuration reload).
func (s *Server) SetLifecycle(p *authz.Policy) { s.policy.Store(newLifecycle(p)) }

// lifecycle is a policy with what the API derives from it, compiled once per policy. A call
// takes the one in force when it starts and keeps it: a reload never mixes two policies in
// one decision.
type lifecycle struct {
	*authz.Policy
	// admin is what makes a member an administrator: the admin role, in a live membership
	// (the email-domain check is the portal's; a token carries no address).
	admin authz.Requirement
}

func newLifecycle(p *authz.Policy) *lifecycle {
	f := false
	return &lifecycle{Policy: p, admin: authz.CompileRequire(&config.Require{Roles: []string{p.AdminRole()}, VerifiedEmailDomain: &f})}
}

// basePath prefixes every endpoint.
const basePath = "/api/v1"

// ServeHTTP routes a request to its endpoint.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Content-Type-Options", "nosniff")
	s.mux.ServeHTTP(w, r)
}

// OpenAPI returns the API's OpenAPI 3 document, as served at /api/v1/openapi.json.
func (s *Server) OpenAPI() []byte { return s.doc }

// access says who may call an endpoint; the handler checks the rest (which organisation).
type access uint8

const (
	anyone   access = iota // any authenticated actor
	operator               // operators only
)

// endpoint is one route of the API: the route table that both the mux and the OpenAPI
// document are built from, so the two cannot drift.
type endpoint struct {
	method, path string
	summary      string
	access       access
	change       bool // writes: refused to read-only credentials, needs a reason
	in           any  // the body's type (a zero value), nil for none
	out          any  // the answer's type (a zero value)
	status       int  // the success status; 0 means 200
	// csv: ?format=csv answers the report as text/csv (out implements table).
	csv bool
	// query names the query parameters the endpoint reads, for the document.
	query []string
	// bodyLimit, when set, is a larger body limit than maxBody (a bulk import).
	bodyLimit int64
	handle    func(c *call) (any, error)
}

// call is one authenticated API call.
type call struct {
	s   *Server
	r   *http.Request
	ctx context.Context
	p   *principal
	// policy is the lifecycle policy of the whole call.
	policy *lifecycle
	// bodyLimit bounds the body decode reads (the endpoint's).
	bodyLimit int64
	// through are the delegations the caller administers organisations through (adminOf),
	// by organisation: the call's changes name them.
	through map[string]*store.Delegation
}

// serve authenticates, decodes and answers one endpoint; refusals are written in one place.
func (s *Server) serve(e endpoint) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, err := s.authenticate(r)
		if err == nil {
			switch {
			case e.access == operator && !p.Operator:
				err = refuse(reason.NotPermitted, "operators only")
			case e.change && p.readOnly:
				err = refuse(reason.NotPermitted, "read-only credential")
			}
		}
		format := r.URL.Query().Get("format")
		if err == nil && format != "" && format != "json" && !(e.csv && format == "csv") {
			err = invalid("format: want json" + map[bool]string{true: " or csv"}[e.csv])
		}
		var out any
		if err == nil {
			c := &call{s: s, r: r, ctx: r.Context(), p: p, policy: s.policy.Load(), bodyLimit: max(e.bodyLimit, maxBody)}
			out, err = e.handle(c)
		}
		if err != nil {
			s.fail(w, r, p, err)
			return
		}
		if t, ok := out.(table); ok && format == "csv" {
			writeCSV(w, t)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		status := e.status
		if status == 0 {
			status = http.StatusOK
		}
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(out)
	})
}

// refuse is the refusal code with a cause for the log.
func refuse(code reason.Code, cause string) error {
	return problem.Refuse(code, "admin API refused", cause)
}

// invalid is invalid_input naming what is wrong (shown: it describes the caller's own input).
func invalid(detail string) error {
	e := problem.Refuse(reason.InvalidInput, "admin API refused", detail)
	e.Problem = problem.For(reason.InvalidInput, reason.Facts{Detail: detail})
	return e
}

// violation is policy_violation naming every rule the change breaks.
func violation(vs []authz.Violation) error {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.Error()
	}
	return policyRefusal(strings.Join(parts, "; "))
}

// policyRefusal is policy_violation saying why (shown: it names the caller's own change).
func policyRefusal(detail string) error {
	e := problem.Refuse(reason.PolicyViolation, "admin API refused", detail)
	e.Problem = problem.For(reason.PolicyViolation, reason.Facts{Detail: detail})
	return e
}

// fail maps err to its answer: refusals as they are, store errors to their codes, anything
// else an internal error. The causes of outages and internal errors are logged, never shown;
// a validation error's detail (about the caller's own input) is shown.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, p *principal, err error) {
	var e *problem.Error
	if !errors.As(err, &e) {
		switch {
		case errors.Is(err, store.ErrNotFound):
			e = problem.Refuse(reason.NotFound, "admin API refused", err.Error())
		case errors.Is(err, store.ErrInvalid):
			e = problem.Refuse(reason.InvalidInput, "admin API refused", err.Error())
			e.Problem = problem.For(reason.InvalidInput, reason.Facts{Detail: invalidDetail(err)})
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConflict):
			e = problem.Refuse(reason.Conflict, "admin API refused", err.Error())
		case errors.Is(err, store.ErrNotReplicated):
			e = problem.Outage(reason.NotReplicated, "admin API: change not confirmed by a replica", "", err)
		case errors.Is(err, store.ErrUnavailable):
			e = problem.Outage(reason.StoreUnavailable, "admin API: store unavailable", "", err)
		default:
			e = problem.Outage(reason.InternalError, "admin API: internal error", "", err)
		}
	}
	if p != nil {
		e.Attrs = append(e.Attrs, slog.String("actor", p.Name), slog.String("via", p.via))
	}
	e.Attrs = append(e.Attrs, slog.String("method", r.Method), slog.String("path", r.URL.Path))
	problem.Fail(s.log, w, r, e)
}

// invalidDetail is the part of a store validation error that describes the input: what
// follows "invalid: " (the operation's prefix dropped), or, for an error that wraps
// ErrInvalid at its end ("org x is not active: ...: invalid"), the message without it.
func invalidDetail(err error) string {
	msg, tag := err.Error(), store.ErrInvalid.Error()
	if i := strings.LastIndex(msg, tag+": "); i >= 0 {
		return msg[i+len(tag)+2:]
	}
	if d, ok := strings.CutSuffix(msg, ": "+tag); ok && d != "" {
		return d
	}
	return "the values given"
}

// maxBody bounds a request body: the API takes small JSON documents.
const maxBody = 64 << 10

// decode reads the call's JSON body into v, refusing unknown fields and trailing data.
func (c *call) decode(v any) error {
	if ct := c.r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return invalid("the body must be application/json")
	}
	if c.r.ContentLength > c.bodyLimit {
		return refuse(reason.BodyTooLarge, "declared body over the limit")
	}
	dec := json.NewDecoder(io.LimitReader(c.r.Body, c.bodyLimit+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if dec.InputOffset() >= c.bodyLimit {
			return refuse(reason.BodyTooLarge, "body over the limit")
		}
		return invalid("the body is not the JSON this endpoint takes: " + jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("the body holds more than one JSON value")
	}
	return nil
}

// jsonProblem says what is wrong with a body without echoing it.
func jsonProblem(err error) string {
	var ute *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &ute):
		return "field " + ute.Field + " has the wrong type"
	case errors.As(err, &se):
		return "syntax error at byte " + fmt.Sprint(se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	case errors.Is(err, io.EOF):
		return "it is empty"
	}
	return "it cannot be read"
}

// reasoned is a change's body: it says why.
type reasoned interface{ why() string }

func (in *orgInput) why() string      { return in.Reason }
func (in *accessInput) why() string   { return in.Reason }
func (in *revokeInput) why() string   { return in.Reason }
func (in *requestInput) why() string  { return in.Reason }
func (in *decisionInput) why() string { return in.Reason }
func (in *tokenInput) why() string    { return in.Reason }
func (in *withdrawInput) why() string { return in.Reason }

// body decodes a change's body into in and checks its reason.
func (c *call) body(in reasoned) error {
	if err := c.decode(in); err != nil {
		return err
	}
	return needReason(in.why())
}

// orgChange is body for a change to the {org} of the path, which it returns, checked.
func (c *call) orgChange(in reasoned) (string, error) {
	org, err := c.orgParam()
	if err != nil {
		return "", err
	}
	return org, c.body(in)
}

// changes is the change API recording how the caller was authenticated, and the delegations
// they acted through.
func (c *call) changes() *store.Orgs { return c.s.orgs.Via(c.via()) }

// via is the credential, then each delegation used: "token abc; delegation del_x (msp for acme)".
func (c *call) via() string {
	v := c.p.via
	orgs := make([]string, 0, len(c.through))
	for org := range c.through {
		orgs = append(orgs, org)
	}
	slices.Sort(orgs)
	for _, org := range orgs {
		d := c.through[org]
		v += "; delegation " + d.ID + " (" + d.To + " for " + org + ")"
	}
	return v
}

// needReason checks a change's reason: every change says why.
func needReason(why string) error {
	if strings.TrimSpace(why) == "" {
		return invalid("reason is required: every change says why")
	}
	if len(why) > 1024 {
		return invalid("reason is longer than 1024 bytes")
	}
	return nil
}

// table is a report that can also be answered as CSV.
type table interface {
	table() (head []string, rows [][]string)
}

// writeCSV answers t as text/csv. A cell a spreadsheet would take for a formula (=, +, -, @,
// a tab or a carriage return first) is prefixed with a quote: reports carry values people
// chose (names, notes), and opening a report must not run them (CSV injection).
func writeCSV(w http.ResponseWriter, t table) {
	head, rows := t.table()
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	cw := csv.NewWriter(w)
	_ = cw.Write(head)
	for _, row := range rows {
		for i, cell := range row {
			if cell != "" && strings.ContainsRune("=+-@\t\r", rune(cell[0])) {
				row[i] = "'" + cell
			}
		}
		_ = cw.Write(row)
	}
	cw.Flush()
}
