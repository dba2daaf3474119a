package console

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/session"
	"github.com/portcullis-proxy/portcullis/store"
)

// accessLine is one membership as the API's access reports state it: the JSON of admin's
// accessLine, decoded here (the console reads the API's answers, never its Go types).
type accessLine struct {
	Org        string            `json:"org"`
	User       string            `json:"user"`
	Kind       string            `json:"kind"`
	Effective  string            `json:"effective"`
	Roles      []string          `json:"roles"`
	RoleGrants []store.RoleGrant `json:"role_grants"`
	Purposes   []store.Grant     `json:"purposes"`
	Since      time.Time         `json:"since"`
	GrantedBy  string            `json:"granted_by"`
	ApprovedBy string            `json:"approved_by"`
	ExpiresAt  time.Time         `json:"expires_at"`
	ReviewBy   time.Time         `json:"review_by"`
	LastUsed   time.Time         `json:"last_used"`
	Sponsor    string            `json:"sponsor"`
}

// holds reports whether l holds role now, standing or granted for a time.
func (l *accessLine) holds(role string, now time.Time) bool {
	if slices.Contains(l.Roles, role) {
		return true
	}
	for _, g := range l.RoleGrants {
		if g.Role == role && now.Before(g.ExpiresAt) {
			return true
		}
	}
	return false
}

// splitPending separates the requests still waiting for an answer from the others, each in
// the API's order.
func splitPending(rs []requestView) (pending, decided []requestView) {
	for _, r := range rs {
		if r.Effective == store.RequestPending {
			pending = append(pending, r)
		} else {
			decided = append(decided, r)
		}
	}
	return pending, decided
}

// requestView is a request as the API shows it.
type requestView struct {
	store.Request
	Effective string `json:"effective_state"`
}

type items[T any] struct {
	Items []T `json:"items"`
}

// administered is an organisation the person administers (GET /me/administers): their own,
// or one that delegated its administration to theirs (Through).
type administered struct {
	Org     string `json:"org"`
	Through string `json:"through"`
}

// membership is a line of "My access", with whether the person is offered to administer it.
type membership struct {
	accessLine
	Administer bool
}

// home is "My access": the person's memberships, their elevations, this session and their
// requests.
func (ex *exchange) home() error {
	var access items[accessLine]
	if err := ex.call(http.MethodGet, "/access", nil, &access); err != nil {
		return err
	}
	var reqs items[requestView]
	if err := ex.call(http.MethodGet, "/me/requests", nil, &reqs); err != nil {
		return err
	}
	var admins items[administered]
	if err := ex.call(http.MethodGet, "/me/administers", nil, &admins); err != nil {
		return err
	}
	own := map[string]bool{}
	var delegated []administered
	for _, a := range admins.Items {
		if a.Through == "" {
			own[a.Org] = true
		} else {
			delegated = append(delegated, a)
		}
	}
	if ex.c.su == nil {
		own, delegated = nil, nil // no administration pages
	}
	now := ex.c.now()
	ms := make([]membership, 0, len(access.Items))
	for _, l := range access.Items {
		ms = append(ms, membership{accessLine: l, Administer: own[l.Org]})
	}
	pending, decided := splitPending(reqs.Items)
	sessions, err := ex.c.o.Sessions.SessionsOf(ex.r)
	if err != nil {
		return err
	}
	q := ex.r.URL.Query()
	return ex.render("My access", "home", struct {
		Session          *session.Session
		Memberships      []membership
		Elevations       []authz.Elevation
		Pending, Decided []requestView
		Sessions         []session.Info
		Delegated        []administered
		CSRF             string
		Ended, NotEnded  bool
		Operator         bool
		Now              time.Time
	}{ex.sess, ms, authz.Live(ex.sess.Elevations, now), pending, decided, sessions, delegated, ex.c.o.Sessions.CSRFToken(ex.r),
		q.Get("ended") != "", q.Get("not_ended") != "", ex.listed, now})
}

// endSession signs out one of the person's other sessions (a browser left signed in
// elsewhere); the current one signs out at /.portcullis/logout.
func (ex *exchange) endSession() error {
	err := ex.c.o.Sessions.EndSessionOf(ex.r, ex.r.PostForm.Get("id"))
	switch {
	case err == nil:
		return ex.seeOther(Prefix, url.Values{"ended": {"1"}})
	case errors.Is(err, session.ErrNoSuchSession):
		// Ended meanwhile, or an id that is not one of theirs: nothing to end.
		ex.audit(reason.NotFound, "", map[string]string{"path": ex.r.URL.Path})
		return ex.seeOther(Prefix, url.Values{"not_ended": {"1"}})
	default:
		return err
	}
}

// requestFormData is the request form, as shown and as re-shown with what was wrong.
type requestFormData struct {
	CSRF, Org, Return string
	// Choices are what the refusal found missing ("role:billing", "purpose:audit"); Choice
	// the one selected; Role a role typed when nothing was offered.
	Choices                        []choice
	Choice, Role                   string
	Duration, Reason, Ticket       string
	Error                          *problem.Problem
	ErrorIsAboutTheInput, Outsider bool
}

type choice struct{ Value, Kind, Name string }

// requestForm is "Request access", usually reached from a refusal page that named what is
// missing (?org, ?role, ?purpose, ?rd).
func (ex *exchange) requestForm() error {
	q := ex.r.URL.Query()
	org := q.Get("org")
	if !syntax.OrgID(org) {
		return problem.Refuse(reason.InvalidInput, "console: request form without an organisation", "")
	}
	if err := ex.member(org); err != nil {
		return err
	}
	d := requestFormData{CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Org: org, Return: session.SafeReturn(q.Get("rd")), Duration: "8h"}
	for _, r := range q["role"] {
		if syntax.Name(r) {
			d.Choices = append(d.Choices, choice{Value: "role:" + r, Kind: "role", Name: r})
		}
	}
	for _, p := range q["purpose"] {
		if syntax.Name(p) {
			d.Choices = append(d.Choices, choice{Value: "purpose:" + p, Kind: "purpose", Name: p})
		}
	}
	if len(d.Choices) > 0 {
		d.Choice = d.Choices[0].Value
	}
	return ex.render("Request access", "request-form", d)
}

// member refuses, as not_member, a person with no membership of org: an outsider who finds
// the request form learns neither whether the organisation exists nor what it would take,
// as the proxy's refusals tell them no more (the API would say either).
func (ex *exchange) member(org string) error {
	var access items[accessLine]
	if err := ex.call(http.MethodGet, "/access", nil, &access); err != nil {
		return err
	}
	if slices.ContainsFunc(access.Items, func(l accessLine) bool { return l.Org == org }) {
		return nil
	}
	ex.audit(reason.NotMember, org, map[string]string{"path": ex.r.URL.Path})
	return &apiError{p: problem.For(reason.NotMember, reason.Facts{Org: org})}
}

// requestInput is the API's request body.
type requestInput struct {
	Role     string `json:"role,omitempty"`
	Purpose  string `json:"purpose,omitempty"`
	Duration string `json:"duration"`
	Reason   string `json:"reason"`
	Ticket   string `json:"ticket,omitempty"`
}

// createRequest sends the form to the governance flow and shows the request; a request the
// API refuses for its content comes back as the form, with what was typed and why.
func (ex *exchange) createRequest() error {
	f := ex.r.PostForm
	org := f.Get("org")
	if !syntax.OrgID(org) {
		return problem.Refuse(reason.InvalidInput, "console: request without an organisation", "")
	}
	if err := ex.member(org); err != nil {
		return err
	}
	d := requestFormData{CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Org: org, Return: session.SafeReturn(f.Get("rd")),
		Choice: f.Get("what"), Role: strings.TrimSpace(f.Get("role")), Duration: strings.TrimSpace(f.Get("duration")),
		Reason: strings.TrimSpace(f.Get("reason")), Ticket: strings.TrimSpace(f.Get("ticket"))}
	for _, v := range f["choices"] {
		if kind, name, ok := strings.Cut(v, ":"); ok && (kind == "role" || kind == "purpose") && syntax.Name(name) {
			d.Choices = append(d.Choices, choice{Value: v, Kind: kind, Name: name})
		}
	}
	in := requestInput{Duration: d.Duration, Reason: d.Reason, Ticket: d.Ticket}
	switch kind, name, _ := strings.Cut(d.Choice, ":"); {
	case kind == "role":
		in.Role = name
	case kind == "purpose":
		in.Purpose = name
	default:
		in.Role = d.Role
	}
	var created requestView
	err := ex.call(http.MethodPost, "/orgs/"+org+"/requests", in, &created)
	var apiErr *apiError
	switch {
	case err == nil:
		q := url.Values{}
		if d.Return != "/" {
			q.Set("rd", d.Return)
		}
		return ex.seeOther(Prefix+"orgs/"+org+"/requests/"+url.PathEscape(created.ID), q)
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		d.Error = &apiErr.p
		return ex.renderStatus(apiErr.p.Status, "Request access", "request-form", d)
	default:
		return err
	}
}

// inputRefusal reports whether code says what is wrong with a form's own values, so the
// form is shown again with them.
func inputRefusal(code reason.Code) bool {
	return code == reason.InvalidInput || code == reason.PolicyViolation || code == reason.Conflict
}

// request is one request: its requester and the person it is for see its state (and may
// withdraw it while it waits); an administrator, after the step-up, may approve or deny it.
func (ex *exchange) request() error {
	org, err := ex.orgParam()
	if err != nil {
		return err
	}
	var r requestView
	path := "/orgs/" + org + "/requests/" + url.PathEscape(ex.r.PathValue("id"))
	ex.quiet = ex.listed // an operator's own request needs no step-up; another's does
	err = ex.call(http.MethodGet, path, nil, &r)
	ex.quiet = false
	var apiErr *apiError
	if ex.listed && errors.As(err, &apiErr) && (apiErr.p.Reason == reason.NotFound || apiErr.p.Reason == reason.NotPermitted) {
		// An operator sees any request, after the platform's step-up.
		if err := ex.asOperator(ex.r.URL.RequestURI()); err != nil {
			return err
		}
		err = ex.call(http.MethodGet, path, nil, &r)
	}
	if err != nil {
		return err
	}
	mine := r.Requester == ex.sess.UserKey || r.For == ex.sess.UserKey
	if !mine {
		// Seeing someone else's request is an administrator's act.
		if err := ex.stepUp(org, ex.r.URL.Path); err != nil {
			return err
		}
	}
	return ex.render("Access request", "request", struct {
		Request                requestView
		CSRF, Return           string
		Mine, Decidable, Admin bool
	}{r, ex.c.o.Sessions.CSRFToken(ex.r), session.SafeReturn(ex.r.URL.Query().Get("rd")), mine,
		!mine && r.Effective == store.RequestPending, !mine})
}

// decisionInput is the API's body of an approval, a denial or a withdrawal.
type decisionInput struct {
	Reason string `json:"reason"`
}

// decide approves, denies or withdraws a request. Approving and denying are an
// administrator's acts, behind the step-up; withdrawing is the requester's.
func (ex *exchange) decide() error {
	org, err := ex.orgParam()
	if err != nil {
		return err
	}
	id, action := ex.r.PathValue("id"), ex.r.PathValue("action")
	path := "/orgs/" + org + "/requests/" + url.PathEscape(id)
	page := Prefix + "orgs/" + org + "/requests/" + url.PathEscape(id)
	if ex.listed && action != "cancel" {
		// An operator approves as an operator; withdrawing one's own request is the person's.
		if err := ex.asOperator(page); err != nil {
			return err
		}
	}
	switch action {
	case "approve", "deny":
		// The request must be one the person may see (an approver, an administrator)
		// before a step-up is asked for, so that nobody steps up for an organisation that
		// is not theirs.
		if err := ex.call(http.MethodGet, path, nil, &requestView{}); err != nil {
			return err
		}
		if err := ex.stepUp(org, page); err != nil {
			return err
		}
	case "cancel":
	default:
		return problem.Refuse(reason.NoRoute, "console: unknown request action", "")
	}
	in := decisionInput{Reason: strings.TrimSpace(ex.r.PostForm.Get("reason"))}
	if in.Reason == "" && action == "cancel" {
		in.Reason = "withdrawn in the console"
	}
	var out requestView
	if err := ex.call(http.MethodPost, path+"/"+action, in, &out); err != nil {
		return err
	}
	if action == "cancel" {
		return ex.seeOther(page, nil)
	}
	return ex.seeOther(Prefix+"orgs/"+org+"/requests", url.Values{"done": {action}})
}

// memberFilter is what the members page shows.
type memberFilter struct {
	Kind, Role string
	// Due shows memberships whose review is due within two weeks or overdue; Unused those
	// never used, or not for 90 days.
	Due, Unused bool
}

const (
	dueWithin   = 14 * 24 * time.Hour
	unusedAfter = 90 * 24 * time.Hour
)

func (f memberFilter) keep(l *accessLine, now time.Time) bool {
	switch {
	case f.Kind != "" && l.Kind != f.Kind:
		return false
	case f.Role != "" && !l.holds(f.Role, now):
		return false
	case f.Due && (l.ReviewBy.IsZero() || l.ReviewBy.After(now.Add(dueWithin))):
		return false
	case f.Unused && !l.LastUsed.IsZero() && now.Sub(l.LastUsed) < unusedAfter:
		return false
	}
	return true
}

// members is an organisation's "who has what", filtered, for its administrators.
func (ex *exchange) members() error {
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	var access items[accessLine]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/access", nil, &access); err != nil {
		return err
	}
	q, now := ex.r.URL.Query(), ex.c.now()
	f := memberFilter{Kind: q.Get("kind"), Role: q.Get("role"), Due: q.Get("due") != "", Unused: q.Get("unused") != ""}
	var shown []accessLine
	kinds := map[string]bool{}
	for _, l := range access.Items {
		kinds[l.Kind] = true
		if f.keep(&l, now) {
			shown = append(shown, l)
		}
	}
	var kindList []string
	for k := range kinds {
		kindList = append(kindList, k)
	}
	slices.Sort(kindList)
	return ex.render("Members of "+org, "members", struct {
		Org    string
		Lines  []accessLine
		Total  int
		Filter memberFilter
		Kinds  []string
		Me     string
		Done   string
		Now    time.Time
	}{org, shown, len(access.Items), f, kindList, ex.sess.UserKey, flash(q, "revoked", "invited", "changed"), now})
}

// export is the organisation's "who has what" as CSV or JSON, for auditors.
func (ex *exchange) export(format string) error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	var body rawBody
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/access?format="+format, nil, &body); err != nil {
		return err
	}
	ex.attachment(org+"-access."+format, format, body)
	return nil
}

// attachment sends an export to be saved, not shown.
func (ex *exchange) attachment(name, format string, body []byte) {
	h := ex.w.Header()
	h.Set("Content-Type", map[string]string{"csv": "text/csv; charset=utf-8", "json": "application/json"}[format])
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	_, _ = ex.w.Write(body)
}

// requests are the organisation's requests, those waiting first, for its administrators.
func (ex *exchange) requests() error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	var reqs items[requestView]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/requests", nil, &reqs); err != nil {
		return err
	}
	pending, decided := splitPending(reqs.Items)
	return ex.render("Requests to "+org, "requests", struct {
		Org, CSRF, Me, Done string
		Pending, Decided    []requestView
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), ex.sess.UserKey, flash(ex.r.URL.Query(), "approve", "deny"), pending, decided})
}

// revokeForm is the confirmation before a membership is revoked.
func (ex *exchange) revokeForm() error {
	return ex.revokeConfirm(ex.r.URL.Query().Get("user"), "", nil)
}

// revokeConfirm shows the membership of user in the {org} of the path with the form that
// revokes it, after the step-up; with the reason typed and what was wrong, when shown again.
func (ex *exchange) revokeConfirm(user, why string, refusal *problem.Problem) error {
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/revoke?" + url.Values{"user": {user}}.Encode())
	if err != nil {
		return err
	}
	l, err := ex.line(org, user)
	if err != nil {
		return err
	}
	return ex.renderStatus(statusOf(refusal), "Revoke a membership", "revoke", struct {
		Org, CSRF, Reason string
		Line              accessLine
		Error             *problem.Problem
		Own               bool
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), why, *l, refusal, user == ex.sess.UserKey})
}

// revoke revokes a membership: only from the confirmation page (confirm), with a reason.
func (ex *exchange) revoke() error {
	org, err := ex.orgParam()
	if err != nil {
		return err
	}
	f := ex.r.PostForm
	user, why := f.Get("user"), strings.TrimSpace(f.Get("reason"))
	if f.Get("confirm") != "yes" {
		return ex.seeOther(Prefix+"orgs/"+org+"/revoke", url.Values{"user": {user}})
	}
	if _, err := ex.administer(Prefix + "orgs/" + org + "/revoke?" + url.Values{"user": {user}}.Encode()); err != nil {
		return err
	}
	err = ex.call(http.MethodPost, "/orgs/"+org+"/members/revoke", struct {
		User   string `json:"user"`
		Reason string `json:"reason"`
	}{user, why}, nil)
	var apiErr *apiError
	switch {
	case err == nil:
		return ex.seeOther(Prefix+"orgs/"+org+"/", url.Values{"done": {"revoked"}})
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		return ex.revokeConfirm(user, why, &apiErr.p)
	default:
		return err
	}
}
