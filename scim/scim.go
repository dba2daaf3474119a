// Package scim is each organisation's SCIM 2.0 service provider (RFC 7643, RFC 7644): the
// organisation's own directory (Entra ID, Okta, …) creates, deactivates and deletes its people
// and groups at /scim/v2/{org}/Users and /Groups, and each change is a change of that person's
// membership, made and audited like any other, with the directory as the actor.
//
// The protocol (schemas, validation, filters, paging, the PATCH grammar) is
// github.com/elimity-com/scim's, with github.com/scim2/filter-parser; this package binds its
// resources to Portcullis's records:
//
//   - a user is a person at the organisation's provider: issuer (the one provider the
//     organisation lists, or the one shared provider) and subject (scim.subject_attribute,
//     externalId by default); its membership has scim.kind and scim.roles, plus the role of
//     each group it is in (scim.group_roles), always within the lifecycle policy;
//   - active false suspends the membership and ends the person's sessions; DELETE revokes it;
//   - a SCIM token (store.Token.SCIM) is one organisation's: it reaches nothing else, and no
//     admin API call accepts it.
package scim

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	escim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"
	"github.com/elimity-com/scim/schema"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/coalesce"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/store"
)

// PathPrefix is where the service provider is served: PathPrefix + "{org}/Users".
const PathPrefix = "/scim/v2/"

// Records is what the service provider reads (*store.Store).
type Records interface {
	Org(ctx context.Context, id string) (*store.Org, error)
	TokenBySecret(ctx context.Context, secret string) (*store.Token, error)
	TokenUsed(ctx context.Context, id string, now time.Time) error
	SCIMUsers(ctx context.Context, org string) ([]store.SCIMUser, error)
	SCIMUser(ctx context.Context, org, id string) (*store.SCIMUser, error)
	SCIMGroups(ctx context.Context, org string) ([]store.SCIMGroup, error)
	SCIMGroup(ctx context.Context, org, id string) (*store.SCIMGroup, error)
}

// SessionRevoker ends every session of a person (*store.Store).
type SessionRevoker interface {
	RevokeUser(ctx context.Context, user string) (int, error)
}

// Options are the collaborators of a Server.
type Options struct {
	Store Records
	Orgs  *store.Orgs
	// Policy is the lifecycle policy; PolicyOf, when set, returns the one in force instead
	// (the admin API's, which a reload replaces).
	Policy   *authz.Policy
	PolicyOf func() *authz.Policy
	// Providers are the configured OpenID Providers (config.OIDC.All): a user's issuer is
	// its organisation's provider's.
	Providers []config.OIDCProvider
	// ProviderSet, when set, is the providers in force instead (providerset.Set: managed
	// providers change while the process runs).
	ProviderSet interface {
		All() []config.OIDCProvider
		Trust() *authz.Trust
	}
	Config   config.SCIM
	Sessions SessionRevoker
	Logger   *slog.Logger
	Now      func() time.Time
}

// policy is the lifecycle policy in force.
func (s *Server) policy() *authz.Policy {
	if s.o.PolicyOf != nil {
		if p := s.o.PolicyOf(); p != nil {
			return p
		}
	}
	return s.o.Policy
}

// Server serves PathPrefix. It is safe for concurrent use.
type Server struct {
	o       Options
	log     *slog.Logger
	trust   *authz.Providers
	users   escim.ResourceType
	groups  escim.ResourceType
	config  escim.ServiceProviderConfig
	used    *coalesce.Set[string] // tokens whose use was recorded within the minute
	managed map[string]bool       // the roles SCIM decides (scim.roles and group_roles' values)
	groupOf map[string]string
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Store == nil || o.Orgs == nil || o.Policy == nil {
		return nil, errors.New("scim: store, orgs and policy are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{o: o, log: o.Logger, trust: authz.CompileProviders(o.Providers), used: coalesce.New[string](time.Minute),
		managed: map[string]bool{}, groupOf: map[string]string{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, r := range o.Config.Roles {
		s.managed[r] = true
	}
	for g, r := range o.Config.GroupRoles {
		s.managed[r] = true
		s.groupOf[strings.ToLower(g)] = r
	}
	s.users = escim.ResourceType{ID: optional.NewString("User"), Name: "User", Endpoint: "/Users",
		Description:      optional.NewString("People of the organisation, each a membership"),
		Schema:           schema.CoreUserSchema(),
		SchemaExtensions: []escim.SchemaExtension{{Schema: schema.ExtensionEnterpriseUser()}},
		Handler:          users{s}}
	s.groups = escim.ResourceType{ID: optional.NewString("Group"), Name: "Group", Endpoint: "/Groups",
		Description: optional.NewString("Groups of the organisation's people; scim.group_roles gives their roles"),
		Schema:      schema.CoreGroupSchema(), Handler: groups{s}}
	s.config = escim.ServiceProviderConfig{
		SupportFiltering: true, SupportPatch: true, MaxResults: 200,
		AuthenticationSchemes: []escim.AuthenticationScheme{{Type: escim.AuthenticationTypeOauthBearerToken, Name: "Bearer token",
			Description: "A SCIM token made for this organisation (portcullis admin org scim-token)", Primary: true}},
	}
	return s, nil
}

type ctxKey struct{}

// caller is the authenticated directory of one request.
type caller struct {
	org   string
	actor string // "scim:<org>:<token id>"
	token string
}

func callerOf(r *http.Request) *caller { c, _ := r.Context().Value(ctxKey{}).(*caller); return c }

// ServeHTTP serves PathPrefix + "{org}/…" for that organisation's SCIM token only.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	rest, ok := strings.CutPrefix(r.URL.Path, PathPrefix)
	org, rest, _ := strings.Cut(rest, "/")
	if !ok || !syntax.OrgID(org) {
		writeError(w, scimerrors.ScimError{Status: http.StatusNotFound, Detail: "Not a SCIM endpoint: " + PathPrefix + "{org}/Users or /Groups."})
		return
	}
	c, err := s.authenticate(r, org)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis-scim"`)
		writeError(w, scimerrors.ScimError{Status: http.StatusUnauthorized, Detail: err.Error()})
		return
	}
	srv, err := escim.NewServer(&escim.ServerArgs{ServiceProviderConfig: &s.config, ResourceTypes: []escim.ResourceType{s.users, s.groups}},
		escim.WithBaseURL(baseURL(r, org)), escim.WithLogger(scimLogger{s.log}))
	if err != nil {
		writeError(w, scimerrors.ScimErrorInternal)
		return
	}
	r2 := r.WithContext(context.WithValue(r.Context(), ctxKey{}, c))
	r2.URL.Path = "/" + rest
	r2.URL.RawPath = ""
	r2.Body = http.MaxBytesReader(w, r.Body, 1<<20)
	if r.Method == http.MethodPatch {
		body, err := io.ReadAll(r2.Body)
		if err != nil {
			writeError(w, scimerrors.ScimErrorInvalidSyntax)
			return
		}
		r2.Body = io.NopCloser(bytes.NewReader(entraBooleans(body)))
		r2.ContentLength = -1
	}
	srv.ServeHTTP(w, r2)
}

// entraBooleans rewrites the strings "True" and "False" that Entra ID sends as active's value
// in PATCH operations into the booleans the schema says active is (Microsoft documents the
// quirk; aadOptscim062020 turns it off). Anything else, or a body that does not parse, is
// passed on as it is, for the library to judge.
func entraBooleans(body []byte) []byte {
	var req map[string]any
	if json.Unmarshal(body, &req) != nil {
		return body
	}
	ops, _ := getAttr(req, "Operations").([]any)
	changed := false
	fix := func(v any) any {
		if s, ok := v.(string); ok && (strings.EqualFold(s, "true") || strings.EqualFold(s, "false")) {
			changed = true
			return strings.EqualFold(s, "true")
		}
		return v
	}
	for _, o := range ops {
		op, _ := o.(map[string]any)
		if op == nil {
			continue
		}
		path, _ := getAttr(op, "path").(string)
		switch value := getAttr(op, "value").(type) {
		case string:
			if strings.EqualFold(path, "active") {
				setAttr(op, "value", fix(value), false)
			}
		case map[string]any:
			if path == "" {
				if v := getAttr(value, "active"); v != nil {
					setAttr(value, "active", fix(v), false)
				}
			}
		}
	}
	if !changed {
		return body
	}
	out, err := json.Marshal(req)
	if err != nil {
		return body
	}
	return out
}

// authenticate finds the live SCIM token of org the request carries. Every failure says
// the same to the client; the log says which.
func (s *Server) authenticate(r *http.Request, org string) (*caller, error) {
	h := r.Header.Values("Authorization")
	scheme, cred, ok := "", "", false
	if len(h) == 1 {
		scheme, cred, ok = strings.Cut(h[0], " ")
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || !strings.HasPrefix(cred, store.TokenPrefix) {
		return nil, errors.New("a SCIM token of this organisation is required (Authorization: Bearer)")
	}
	t, err := s.o.Store.TokenBySecret(r.Context(), cred)
	var why string
	switch {
	case errors.Is(err, store.ErrNotFound):
		why = "unknown token"
	case err != nil:
		s.log.Warn("scim: token lookup failed", slog.String("error", err.Error()))
		why = "tokens cannot be checked at the moment"
	case !t.SCIM:
		why = "token " + t.ID + " is not a SCIM token"
	case t.Org != org:
		// Another organisation's directory: nothing here is its to see or change.
		why = "token " + t.ID + " is " + t.Org + "'s"
	case !t.Live(s.o.Now()):
		why = "token " + t.ID + " expired or revoked"
	}
	if why != "" {
		s.log.Warn("scim: request refused", slog.String("org", org), slog.String("why", why), slog.String("client", r.RemoteAddr))
		return nil, errors.New("a SCIM token of this organisation is required (Authorization: Bearer)")
	}
	s.noteUse(r.Context(), t.ID)
	return &caller{org: org, actor: "scim:" + org + ":" + t.ID, token: t.ID}, nil
}

// noteUse records a token's use at most once a minute per process.
func (s *Server) noteUse(ctx context.Context, id string) {
	now := s.o.Now()
	s.used.Sweep(now)
	if !s.used.Admit(id, now) {
		return
	}
	if err := s.o.Store.TokenUsed(context.WithoutCancel(ctx), id, now); err != nil {
		s.log.Warn("scim: token use not recorded", slog.String("token", id), slog.String("error", err.Error()))
	}
}

func baseURL(r *http.Request, org string) string {
	return "https://" + r.Host + PathPrefix + org
}

// writeError answers e as SCIM's error body.
func writeError(w http.ResponseWriter, e scimerrors.ScimError) {
	b, _ := e.MarshalJSON()
	w.Header().Set("Content-Type", "application/scim+json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(b)
}

type scimLogger struct{ l *slog.Logger }

func (l scimLogger) Error(args ...any) { l.l.Warn("scim: " + fmt.Sprint(args...)) }

// fail turns err from the store or the policy into the client's answer: named errors say
// what was wrong, anything else is an outage whose cause is logged, not sent.
func (s *Server) fail(err error, what string) error {
	var se scimerrors.ScimError
	switch {
	case errors.As(err, &se):
		return se
	case errors.Is(err, store.ErrExists):
		e := scimerrors.ScimErrorUniqueness
		e.Detail = clean(err)
		return e
	case errors.Is(err, store.ErrNotFound):
		return scimerrors.ScimError{Status: http.StatusNotFound, Detail: clean(err)}
	case errors.Is(err, store.ErrInvalid), errors.As(err, new(*policyError)):
		return scimerrors.ScimErrorBadRequest(clean(err))
	case errors.Is(err, store.ErrConflict):
		return scimerrors.ScimError{Status: http.StatusConflict, Detail: "concurrent changes; retry"}
	}
	s.log.Error("scim: "+what+" failed", slog.String("error", err.Error()))
	return scimerrors.ScimError{Status: http.StatusServiceUnavailable, Detail: "The records cannot be read or changed at the moment; retry later."}
}

// clean is err's message without the store's operation prefixes.
func clean(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": scim "); i >= 0 {
		msg = msg[i+2:]
	}
	return msg
}

// policyError is a membership SCIM would write that the lifecycle policy refuses.
type policyError struct{ msg string }

func (e *policyError) Error() string { return e.msg }

// providers are the providers in force and the trust rule's table on them.
func (s *Server) providers() ([]config.OIDCProvider, *authz.Providers) {
	if ps := s.o.ProviderSet; ps != nil {
		return ps.All(), ps.Trust().Load()
	}
	return s.o.Providers, s.trust
}
