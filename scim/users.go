package scim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"

	escim "github.com/elimity-com/scim"
	scimerrors "github.com/elimity-com/scim/errors"
	"github.com/elimity-com/scim/optional"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// users is the /Users resource handler.
type users struct{ s *Server }

// Attributes the records keep apart from the client's others (or never keep: password).
var userOwn = []string{"id", "meta", "schemas", "username", "externalid", "active", "password", "groups"}

func (h users) Get(r *http.Request, id string) (escim.Resource, error) {
	c := callerOf(r)
	u, err := h.s.o.Store.SCIMUser(r.Context(), c.org, id)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return escim.Resource{}, scimerrors.ScimErrorResourceNotFound(id)
		}
		return escim.Resource{}, h.s.fail(err, "read user")
	}
	gs, err := h.s.o.Store.SCIMGroups(r.Context(), c.org)
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "read groups")
	}
	return userResource(u, gs), nil
}

func (h users) GetAll(r *http.Request, p escim.ListRequestParams) (escim.Page, error) {
	c := callerOf(r)
	us, err := h.s.o.Store.SCIMUsers(r.Context(), c.org)
	if err != nil {
		return escim.Page{}, h.s.fail(err, "list users")
	}
	gs, err := h.s.o.Store.SCIMGroups(r.Context(), c.org)
	if err != nil {
		return escim.Page{}, h.s.fail(err, "list groups")
	}
	var all []escim.Resource
	for i := range us {
		res := userResource(&us[i], gs)
		if p.FilterValidator != nil && p.FilterValidator.PassesFilter(withCommon(res)) != nil {
			continue
		}
		all = append(all, res)
	}
	return page(all, p), nil
}

func (h users) Create(r *http.Request, attrs escim.ResourceAttributes) (escim.Resource, error) {
	c := callerOf(r)
	o, issuer, err := h.s.orgAndIssuer(r, c.org)
	if err != nil {
		return escim.Resource{}, err
	}
	u, err := h.s.userFrom(attrs, issuer, true)
	if err != nil {
		return escim.Resource{}, err
	}
	u.ID = store.NewSCIMID()
	if err := h.s.change(r, o, func(st *store.SCIMState) error { st.Users[u.ID] = u; return nil }); err != nil {
		return escim.Resource{}, h.s.fail(err, "create user")
	}
	return h.Get(r, u.ID)
}

func (h users) Replace(r *http.Request, id string, attrs escim.ResourceAttributes) (escim.Resource, error) {
	return h.edit(r, id, "replace user", func(cur *store.SCIMUser) (map[string]any, error) {
		// Okta's full-object PUT leaves externalId out: the binding to the person stays.
		if h.s.o.Config.SubjectAttribute == config.SCIMSubjectExternalID && getAttr(attrs, "externalId") == nil && cur.ExternalID != "" {
			out := maps.Clone(attrs)
			out["externalId"] = cur.ExternalID
			return out, nil
		}
		return attrs, nil
	})
}

func (h users) Patch(r *http.Request, id string, ops []escim.PatchOperation) (escim.Resource, error) {
	return h.edit(r, id, "patch user", func(cur *store.SCIMUser) (map[string]any, error) {
		res := userAttributes(cur)
		for _, op := range ops {
			if err := applyOp(res, op); err != nil {
				return nil, err
			}
		}
		return res, nil
	})
}

// edit rewrites user id from the attributes next gives for its current record. The person
// stays the one the user was bound to, whatever providers the organisation lists now; an
// absent active keeps its value.
func (h users) edit(r *http.Request, id, what string, next func(cur *store.SCIMUser) (map[string]any, error)) (escim.Resource, error) {
	c := callerOf(r)
	o, err := h.s.o.Store.Org(r.Context(), c.org)
	if err != nil {
		return escim.Resource{}, h.s.fail(err, "read organisation")
	}
	if err := h.s.change(r, o, func(st *store.SCIMState) error {
		cur := st.Users[id]
		if cur == nil {
			return scimerrors.ScimErrorResourceNotFound(id)
		}
		attrs, err := next(cur)
		if err != nil {
			return err
		}
		u, err := h.s.userFrom(attrs, issuerOf(cur.User), cur.Active)
		if err != nil {
			return err
		}
		if u.User != cur.User {
			return mutability("the user's " + h.s.o.Config.SubjectAttribute + " names the person; it cannot change")
		}
		u.ID = id
		st.Users[id] = u
		return nil
	}); err != nil {
		return escim.Resource{}, h.s.fail(err, what)
	}
	return h.Get(r, id)
}

func (h users) Delete(r *http.Request, id string) error {
	c := callerOf(r)
	o, err := h.s.o.Store.Org(r.Context(), c.org)
	if err != nil {
		return h.s.fail(err, "read organisation")
	}
	err = h.s.change(r, o, func(st *store.SCIMState) error {
		if st.Users[id] == nil {
			return scimerrors.ScimErrorResourceNotFound(id)
		}
		delete(st.Users, id)
		for _, g := range st.Groups {
			g.Members = slices.DeleteFunc(g.Members, func(m string) bool { return m == id })
		}
		return nil
	})
	if err != nil {
		return h.s.fail(err, "delete user")
	}
	return nil
}

// orgAndIssuer reads the caller's organisation and the issuer its people sign in with: the
// one provider it lists, or the one shared provider when it lists none.
func (s *Server) orgAndIssuer(r *http.Request, org string) (*store.Org, string, error) {
	o, err := s.o.Store.Org(r.Context(), org)
	if err != nil {
		return nil, "", s.fail(err, "read organisation")
	}
	var issuers []string
	all, trust := s.providers()
	for _, p := range all {
		if trust.Trusts(o, p.Name) {
			issuers = append(issuers, p.Issuer)
		}
	}
	if len(issuers) != 1 {
		return nil, "", scimerrors.ScimErrorBadRequest(fmt.Sprintf("%s's people sign in through %d providers: an operator lists exactly one for it "+
			"(portcullis admin org providers) so that provisioned users are its persons", org, len(issuers)))
	}
	return o, issuers[0], nil
}

// issuerOf is the issuer part of a person's key.
func issuerOf(user string) string { iss, _, _ := strings.Cut(user, "|"); return iss }

// userFrom reads a user record from a resource's attributes (as the client sent them, or as
// PATCH left them), for the person at issuer; active is what an absent active means.
func (s *Server) userFrom(attrs map[string]any, issuer string, active bool) (*store.SCIMUser, error) {
	u := &store.SCIMUser{Active: active}
	rest := map[string]any{}
	for k, v := range attrs {
		switch strings.ToLower(k) {
		case "username":
			u.UserName, _ = v.(string)
		case "externalid":
			u.ExternalID, _ = v.(string)
		case "active":
			// A boolean by now: the library checks it against the schema, after
			// entraBooleans turned Entra ID's "False" into one.
			if b, ok := v.(bool); ok {
				u.Active = b
			}
		default:
			if !slices.Contains(userOwn, strings.ToLower(k)) && v != nil {
				rest[k] = v
			}
		}
	}
	if strings.TrimSpace(u.UserName) == "" {
		return nil, scimerrors.ScimErrorBadRequest("userName is required")
	}
	subject := u.ExternalID
	if s.o.Config.SubjectAttribute == config.SCIMSubjectUserName {
		subject = u.UserName
	}
	if subject == "" {
		return nil, scimerrors.ScimErrorBadRequest(s.o.Config.SubjectAttribute + " is required: it is the person's subject at the organisation's provider")
	}
	u.User = store.UserKey(issuer, subject)
	if len(rest) > 0 {
		b, err := json.Marshal(rest)
		if err != nil {
			return nil, scimerrors.ScimErrorBadRequest("attributes cannot be stored")
		}
		u.Attributes = b
	}
	return u, nil
}

// userAttributes is u as a resource's attributes, for PATCH to work on.
func userAttributes(u *store.SCIMUser) map[string]any {
	res := map[string]any{}
	if len(u.Attributes) > 0 {
		_ = json.Unmarshal(u.Attributes, &res)
	}
	res["userName"], res["active"] = u.UserName, u.Active
	if u.ExternalID != "" {
		res["externalId"] = u.ExternalID
	}
	return res
}

func userResource(u *store.SCIMUser, gs []store.SCIMGroup) escim.Resource {
	attrs := userAttributes(u)
	delete(attrs, "externalId")
	var groups []any
	for _, g := range gs {
		if slices.Contains(g.Members, u.ID) {
			groups = append(groups, map[string]any{"value": g.ID, "display": g.DisplayName, "type": "direct"})
		}
	}
	if groups != nil {
		attrs["groups"] = groups
	}
	res := escim.Resource{ID: u.ID, Attributes: attrs, Meta: escim.Meta{Created: &u.Created, LastModified: &u.Updated,
		Version: fmt.Sprintf(`W/"%d"`, u.Updated.UnixNano())}}
	if u.ExternalID != "" {
		res.ExternalID = optional.NewString(u.ExternalID)
	}
	return res
}

// withCommon is res's attributes with id and externalId, for filters on them.
func withCommon(res escim.Resource) map[string]any {
	m := make(map[string]any, len(res.Attributes)+2)
	for k, v := range res.Attributes {
		m[k] = v
	}
	m["id"] = res.ID
	if res.ExternalID.Present() {
		m["externalId"] = res.ExternalID.Value()
	}
	return m
}

// page is the part of all that p asks for.
func page(all []escim.Resource, p escim.ListRequestParams) escim.Page {
	out := escim.Page{TotalResults: len(all), Resources: []escim.Resource{}}
	start := max(p.StartIndex, 1) - 1
	if start >= len(all) || p.Count <= 0 {
		return out
	}
	out.Resources = all[start:min(start+p.Count, len(all))]
	return out
}

func mutability(msg string) error {
	e := scimerrors.ScimErrorMutability
	e.Detail = msg
	return e
}

// change applies edit to the caller's organisation's records, with memberships following
// (follow), and then ends the sessions of each person whose membership stopped being active.
func (s *Server) change(r *http.Request, o *store.Org, edit func(st *store.SCIMState) error) error {
	c := callerOf(r)
	own, err := s.ownIssuers(r.Context(), o)
	if err != nil {
		return s.fail(err, "read the providers' organisations")
	}
	var ended []string
	err = s.o.Orgs.Via("scim").SCIMChange(r.Context(), c.org, func(st *store.SCIMState) error {
		ended = ended[:0]
		return edit(st)
	}, func(before, u *store.SCIMUser, groups []*store.SCIMGroup, cur *store.Membership) (*store.Membership, error) {
		m, err := s.follow(o, before, u, groups, cur)
		// The person's sessions end when their live membership here ends, and only when
		// they are the organisation's own provider's person: a shared provider's people
		// may be others' too, whose sessions this directory has no say over (the
		// membership's end refuses them here at once either way).
		if err == nil && m != nil && m.Status != store.MembershipActive && cur != nil && cur.Status == store.MembershipActive && own[strings.TrimSuffix(issuerOf(cur.User), "/")] {
			ended = append(ended, cur.User)
		}
		return m, err
	}, c.actor, "SCIM provisioning")
	if err != nil {
		return err
	}
	for _, u := range ended {
		if s.o.Sessions == nil {
			break
		}
		if n, err := s.o.Sessions.RevokeUser(r.Context(), u); err != nil {
			// The membership is suspended or revoked already: every request is refused
			// whatever the session; the sessions themselves end at their timeout.
			s.log.Error("scim: sessions not ended", slog.String("user", u), slog.String("error", err.Error()))
		} else if n > 0 {
			s.log.Info("scim: sessions ended", slog.String("user", u), slog.Int("sessions", n), slog.String("org", c.org))
		}
	}
	return nil
}

// follow is the membership the records decide for the person of u (nil: deleted; before:
// the record before the change, nil when new), in the groups given, whose membership is cur:
// within the lifecycle policy, or refused. The directory manages memberships of scim.kind
// only, and only where one administrator could grant them alone; the status follows the
// record's active when active changes, so an administrator's suspension is not undone by an
// unrelated edit.
func (s *Server) follow(o *store.Org, before, u *store.SCIMUser, groups []*store.SCIMGroup, cur *store.Membership) (*store.Membership, error) {
	now := s.o.Now()
	policy := s.policy()
	kind := s.o.Config.Kind
	if u == nil {
		if cur == nil || cur.Status == store.MembershipRevoked || cur.Kind != kind {
			return nil, nil // not the directory's: it stays
		}
		m := *cur
		m.Status = store.MembershipRevoked
		return &m, nil
	}
	if kr, ok := policy.Kind(kind, o); ok && (kr.ApprovalsRequired > 1 || !slices.Contains(kr.Approvers, config.ApproverOrgAdmin)) {
		// What one administrator may not grant alone, their directory may not either.
		return nil, &policyError{fmt.Sprintf("%s memberships of %s need %d approval(s) from %s: the directory cannot provision them",
			kind, o.ID, kr.ApprovalsRequired, strings.Join(kr.Approvers, ", "))}
	}
	roles := slices.Clone(s.o.Config.Roles)
	for _, g := range groups {
		if r, ok := s.groupOf[strings.ToLower(g.DisplayName)]; ok {
			roles = append(roles, r)
		}
	}
	status := store.MembershipActive
	if !u.Active {
		status = store.MembershipSuspended
	}
	if cur == nil || cur.Status == store.MembershipRevoked {
		m := &store.Membership{Kind: kind, Roles: roles, Status: status, Email: emailOf(u)}
		if kr, ok := policy.Kind(m.Kind, o); ok && kr.ReviewEvery > 0 {
			m.ReviewBy = now.Add(kr.ReviewEvery)
		}
		if vs := policy.CheckMembership(m, o, "", now); len(vs) > 0 {
			return nil, &policyError{violations(vs)}
		}
		return m, nil
	}
	if cur.Kind != kind {
		// Someone else's membership of another kind (a partner, support): SCIM does not
		// turn it into the directory's.
		return nil, &policyError{fmt.Sprintf("the person already holds a %s membership of %s, which the directory does not manage", cur.Kind, o.ID)}
	}
	m := *cur
	m.Roles = slices.DeleteFunc(slices.Clone(cur.Roles), func(r string) bool { return s.managed[r] })
	m.Roles = append(m.Roles, roles...)
	slices.Sort(m.Roles)
	m.Roles = slices.Compact(m.Roles)
	if before == nil || before.Active != u.Active {
		m.Status = status
	}
	if e := emailOf(u); e != "" {
		m.Email = e
	}
	if vs := policy.CheckChange(cur, &m, o, "", now); len(vs) > 0 {
		return nil, &policyError{violations(vs)}
	}
	return &m, nil
}

// ownIssuers are the issuers (without a trailing slash) of o's own providers, whose people's
// sessions o's directory may end: not shared, and bound to o or listed by o alone. A provider
// that others trust too has people whose sessions are not this directory's to end.
func (s *Server) ownIssuers(ctx context.Context, o *store.Org) (map[string]bool, error) {
	all, trust := s.providers()
	own := map[string]bool{}
	var listings map[string][]string // read once, when an unbound provider needs it
	for _, p := range all {
		if p.Shared || !trust.Trusts(o, p.Name) {
			continue
		}
		switch trust.BoundTo(p.Name) {
		case o.ID:
			own[strings.TrimSuffix(p.Issuer, "/")] = true
		case "":
			if listings == nil {
				var err error
				if listings, err = s.o.Orgs.Listings(ctx); err != nil {
					return nil, err
				}
			}
			if by := listings[p.Name]; len(by) == 1 && by[0] == o.ID {
				own[strings.TrimSuffix(p.Issuer, "/")] = true
			}
		}
	}
	return own, nil
}

// emailOf is u's primary address (or its userName when that is one), "" otherwise.
func emailOf(u *store.SCIMUser) string {
	var a struct {
		Emails []struct {
			Value   string `json:"value"`
			Primary bool   `json:"primary"`
		} `json:"emails"`
	}
	_ = json.Unmarshal(u.Attributes, &a)
	for _, e := range a.Emails {
		if e.Primary && strings.Contains(e.Value, "@") {
			return e.Value
		}
	}
	if strings.Contains(u.UserName, "@") {
		return u.UserName
	}
	for _, e := range a.Emails {
		if strings.Contains(e.Value, "@") {
			return e.Value
		}
	}
	return ""
}
