package console

import (
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// administer is the start of every administration page and change of the {org} of the
// path: the person must administer it (the API says; nobody is asked to step up for an
// organisation that is not theirs), then hold the console's step-up for it, returning to
// returnTo after one. An operator (console.operators) steps up once for the platform.
func (ex *exchange) administer(returnTo string) (string, error) {
	org, err := ex.orgParam()
	if err != nil {
		return "", err
	}
	if ex.listed {
		// An operator administers every organisation, after the platform's step-up.
		if err := ex.asOperator(returnTo); err != nil {
			return "", err
		}
	}
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/policy", nil, nil); err != nil {
		return "", err
	}
	return org, ex.stepUp(org, returnTo)
}

// flash is the ?done of a page redirected to after a change, when it is one of the words the
// page knows: pages show fixed text for it, never what a link put in the URL.
func flash(q url.Values, known ...string) string {
	if d := q.Get("done"); slices.Contains(known, d) {
		return d
	}
	return ""
}

// names splits a list typed in a form field ("billing, viewer" or "billing viewer").
func names(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' || r == '\r' })
}

// dateInput reads an <input type="date"> value as the end of that day, UTC; zero for "".
func dateInput(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	d, err := time.Parse(time.DateOnly, s)
	if err != nil {
		return time.Time{}, err
	}
	return d.Add(24*time.Hour - time.Second), nil
}

// invalidForm is the refusal of a form's own value, shown with the form.
func invalidForm(detail string) *problem.Problem {
	p := problem.For(reason.InvalidInput, reason.Facts{Detail: detail})
	return &p
}

// inviteForm is the invitation of an address to the organisation.
type inviteForm struct {
	Org, CSRF                                string
	Email, Kind, Roles, ReviewBy, Until, Why string
	Kinds                                    []string
	Error                                    *problem.Problem
}

// directKinds are the kinds an administrator grants directly (support and service
// memberships come from requests); the API decides.
var directKinds = []string{store.KindEmployee, store.KindPartner, store.KindReseller}

func (ex *exchange) inviteForm() error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	return ex.render("Invite to "+org, "invite", inviteForm{Org: org, CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Kind: store.KindEmployee,
		Kinds: directKinds})
}

// invite sends the invitation; a refusal of its content shows the form again with it.
func (ex *exchange) invite() error {
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/invite")
	if err != nil {
		return err
	}
	f := ex.r.PostForm
	d := inviteForm{Org: org, CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Email: strings.TrimSpace(f.Get("email")), Kind: f.Get("kind"),
		Roles: f.Get("roles"), ReviewBy: f.Get("review_by"), Until: f.Get("until"), Why: strings.TrimSpace(f.Get("reason")), Kinds: directKinds}
	in := struct {
		Email     string    `json:"email"`
		Kind      string    `json:"kind"`
		Roles     []string  `json:"roles,omitempty"`
		ExpiresAt time.Time `json:"expires_at,omitzero"`
		ReviewBy  time.Time `json:"review_by,omitzero"`
		Reason    string    `json:"reason"`
	}{Email: d.Email, Kind: d.Kind, Roles: names(d.Roles), Reason: d.Why}
	if in.ReviewBy, err = dateInput(d.ReviewBy); err != nil {
		d.Error = invalidForm("review date: want a date")
	}
	if in.ExpiresAt, err = dateInput(d.Until); err != nil {
		d.Error = invalidForm("end: want a date")
	}
	if d.Error == nil {
		err = ex.call(http.MethodPost, "/orgs/"+org+"/invitations", in, nil)
		var apiErr *apiError
		switch {
		case err == nil:
			return ex.seeOther(Prefix+"orgs/"+org+"/", url.Values{"done": {"invited"}})
		case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
			d.Error = &apiErr.p
		default:
			return err
		}
	}
	return ex.renderStatus(d.Error.Status, "Invite to "+org, "invite", d)
}

// changeForm changes one membership's roles, or suspends or resumes it.
type changeForm struct {
	Org, CSRF, Add, Why string
	// Status suspends ("suspended") or resumes ("active") the membership; "" leaves it.
	Status string
	// Purpose is a purpose to grant, with its reason (a ticket) and end; RemovePurposes
	// those to take away.
	Purpose, PurposeWhy, PurposeUntil string
	RemovePurposes                    []string
	Line                              accessLine
	Remove                            []string
	Error                             *problem.Problem
}

func (ex *exchange) changeForm() error {
	user := ex.r.URL.Query().Get("user")
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	l, err := ex.line(org, user)
	if err != nil {
		return err
	}
	return ex.render("Change a membership", "change", changeForm{Org: org, CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Line: *l})
}

// line is user's membership in org, from "who has what" (what the administrator may see).
func (ex *exchange) line(org, user string) (*accessLine, error) {
	var access items[accessLine]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/access", nil, &access); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(access.Items, func(l accessLine) bool { return l.User == user })
	if i < 0 {
		return nil, &apiError{p: problem.For(reason.NotFound, reason.Facts{})}
	}
	return &access.Items[i], nil
}

// change adds and removes standing roles, within the policy (the API checks it, and that
// nobody changes their own).
func (ex *exchange) change() error {
	f := ex.r.PostForm
	user := f.Get("user")
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/change?" + url.Values{"user": {user}}.Encode())
	if err != nil {
		return err
	}
	d := changeForm{Org: org, CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Add: f.Get("add"), Remove: f["remove"], Status: f.Get("status"),
		Why: strings.TrimSpace(f.Get("reason"))}
	d.Purpose, d.PurposeWhy, d.PurposeUntil, d.RemovePurposes = strings.TrimSpace(f.Get("purpose")), strings.TrimSpace(f.Get("purpose_reason")),
		f.Get("purpose_until"), f["remove_purpose"]
	type purposeInput struct {
		Purpose   string    `json:"purpose"`
		Reason    string    `json:"reason"`
		ExpiresAt time.Time `json:"expires_at,omitzero"`
	}
	in := struct {
		User           string         `json:"user"`
		AddRoles       []string       `json:"add_roles,omitempty"`
		RemoveRoles    []string       `json:"remove_roles,omitempty"`
		AddPurposes    []purposeInput `json:"add_purposes,omitempty"`
		RemovePurposes []string       `json:"remove_purposes,omitempty"`
		Status         string         `json:"status,omitempty"`
		Reason         string         `json:"reason"`
	}{User: user, AddRoles: names(d.Add), RemoveRoles: d.Remove, RemovePurposes: d.RemovePurposes, Status: d.Status, Reason: d.Why}
	if d.Purpose != "" {
		until, err := dateInput(d.PurposeUntil)
		if err != nil {
			return ex.changeRefused(org, user, d, invalidForm("purpose end: want a date"))
		}
		in.AddPurposes = []purposeInput{{Purpose: d.Purpose, Reason: d.PurposeWhy, ExpiresAt: until}}
	}
	err = ex.call(http.MethodPost, "/orgs/"+org+"/members/change", in, nil)
	var apiErr *apiError
	switch {
	case err == nil:
		return ex.seeOther(Prefix+"orgs/"+org+"/", url.Values{"done": {"changed"}})
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		return ex.changeRefused(org, user, d, &apiErr.p)
	default:
		return err
	}
}

// changeRefused shows the change form again, with what was typed and why it was refused.
func (ex *exchange) changeRefused(org, user string, d changeForm, p *problem.Problem) error {
	l, err := ex.line(org, user)
	if err != nil {
		return err
	}
	d.Line, d.Error = *l, p
	return ex.renderStatus(p.Status, "Change a membership", "change", d)
}

// reviewView is a campaign as the API lists it.
type reviewView struct {
	store.Review
}

// reviews lists the organisation's access reviews, with the form that starts one.
func (ex *exchange) reviews() error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	return ex.reviewsPage(org, reviewStart{Deadline: ex.c.now().Add(14 * 24 * time.Hour).UTC().Format(time.DateOnly)})
}

// reviewStart is the form that starts a campaign, as typed.
type reviewStart struct {
	Deadline, Reason string
	Kinds            []string
	Error            *problem.Problem
}

// reviewsPage lists org's campaigns, with the form that starts one (shown again with what
// was typed and why it was refused).
func (ex *exchange) reviewsPage(org string, form reviewStart) error {
	var rs items[reviewView]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/reviews", nil, &rs); err != nil {
		return err
	}
	return ex.renderStatus(statusOf(form.Error), "Access reviews of "+org, "reviews", struct {
		Org, CSRF string
		Reviews   []reviewView
		Kinds     []string
		Form      reviewStart
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), rs.Items, config.MembershipKinds, form})
}

// startReview starts a campaign over the kinds ticked, due at the end of the deadline's day.
func (ex *exchange) startReview() error {
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/reviews")
	if err != nil {
		return err
	}
	f := ex.r.PostForm
	form := reviewStart{Deadline: f.Get("deadline"), Reason: strings.TrimSpace(f.Get("reason")), Kinds: f["kind"]}
	deadline, err := dateInput(form.Deadline)
	if err != nil || deadline.IsZero() {
		form.Error = invalidForm("deadline: want a date")
		return ex.reviewsPage(org, form)
	}
	var started store.Review
	err = ex.call(http.MethodPost, "/orgs/"+org+"/reviews", struct {
		Kinds    []string  `json:"kinds,omitempty"`
		Deadline time.Time `json:"deadline"`
		Reason   string    `json:"reason"`
	}{form.Kinds, deadline, form.Reason}, &started)
	var apiErr *apiError
	switch {
	case err == nil:
		return ex.seeOther(Prefix+"orgs/"+org+"/reviews/"+url.PathEscape(started.ID), nil)
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		form.Error = &apiErr.p
		return ex.reviewsPage(org, form)
	default:
		return err
	}
}

// reviewLine is one item of a campaign's report.
type reviewLine struct {
	store.ReviewItem
	Reviewers []string  `json:"reviewers"`
	Now       string    `json:"now"`
	LastUsed  time.Time `json:"last_used"`
}

// reviewReport is a campaign with its items.
type reviewReport struct {
	store.Review
	Undecided int          `json:"undecided"`
	Rows      []reviewLine `json:"report"`
}

// review is one campaign: every item, decided or not; the undecided ones are kept or
// revoked in bulk, after a confirmation.
func (ex *exchange) review() error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	return ex.reviewPage(org, ex.r.PathValue("id"), nil, nil)
}

// reviewRefusal is an item a bulk decision did not decide, and why.
type reviewRefusal struct{ User, Why string }

// reviewPage shows campaign id of org, with what a bulk decision just did (done) and did not
// (refused): shown from the decision's own results, never from the URL.
func (ex *exchange) reviewPage(org, id string, done []string, refused []reviewRefusal) error {
	var rep reviewReport
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/reviews/"+url.PathEscape(id), nil, &rep); err != nil {
		return err
	}
	return ex.render("Access review "+rep.ID, "review", struct {
		Org, CSRF, Me string
		Report        reviewReport
		Done          []string
		Refused       []reviewRefusal
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), ex.sess.UserKey, rep, done, refused})
}

// decideReview keeps or revokes the items ticked: first a confirmation page listing them,
// then (confirm=yes) each decision through the API. Each item is its own change: one the API
// refuses (the person's own membership, a machine they sponsor) is named, the others stand.
func (ex *exchange) decideReview() error {
	id := ex.r.PathValue("id")
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/reviews/" + url.PathEscape(id))
	if err != nil {
		return err
	}
	f := ex.r.PostForm
	users, decision, why := f["user"], f.Get("decision"), strings.TrimSpace(f.Get("reason"))
	if decision != store.DecisionKeep && decision != store.DecisionRevoke {
		return &apiError{p: *invalidForm("decision: keep or revoke")}
	}
	page := Prefix + "orgs/" + org + "/reviews/" + url.PathEscape(id)
	if len(users) == 0 {
		return ex.seeOther(page, nil)
	}
	if f.Get("confirm") != "yes" || why == "" {
		var missing *problem.Problem
		if f.Get("confirm") == "yes" {
			missing = invalidForm("reason: say why, for the audit trail")
		}
		return ex.renderStatus(statusOf(missing), "Confirm the review decisions", "review-confirm", struct {
			Org, CSRF, ID, Decision, Reason string
			Users                           []string
			Error                           *problem.Problem
		}{org, ex.c.o.Sessions.CSRFToken(ex.r), id, decision, why, users, missing})
	}
	// The results are shown at once (no redirect): they are this post's, and a post sent
	// again decides nothing twice (a decided item is refused as such).
	var done []string
	var refused []reviewRefusal
	for i, u := range users {
		err := ex.call(http.MethodPost, "/orgs/"+org+"/reviews/"+url.PathEscape(id)+"/decide", struct {
			User     string `json:"user"`
			Decision string `json:"decision"`
			Reason   string `json:"reason"`
		}{u, decision, why}, nil)
		var apiErr *apiError
		switch {
		case err == nil:
			done = append(done, u)
		case errors.As(err, &apiErr):
			refused = append(refused, reviewRefusal{u, apiErr.p.Message})
		default:
			// The store stopped answering: what was decided stands, the rest is said undone.
			ex.c.log.Error("review decision failed", slog.String("review", id), slog.String("user", u), slog.Any("error", err))
			for _, rest := range users[i:] {
				refused = append(refused, reviewRefusal{rest, "not decided: Portcullis could not complete the change; try again"})
			}
			return ex.reviewPage(org, id, done, refused)
		}
	}
	return ex.reviewPage(org, id, done, refused)
}

// activityLine is one event of an organisation's activity, as the API states it.
type activityLine struct {
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Type      string            `json:"type"`
	Actor     string            `json:"actor"`
	Via       string            `json:"via"`
	User      string            `json:"user"`
	Kind      string            `json:"kind"`
	Reason    string            `json:"reason"`
	Ticket    string            `json:"ticket"`
	Route     string            `json:"route"`
	RequestID string            `json:"request_id"`
	Detail    map[string]string `json:"detail"`
}

// activityTypes are the groups of events the activity page filters by.
var activityTypes = []string{"request.", "membership.", "invitation.", "access.", "stepup.", "session.", "review.", "business.", "machine.", "api_key."}

// activityQuery is the API query of the activity page's filters (?type, ?kind, ?before).
func activityQuery(q url.Values) url.Values {
	out := url.Values{}
	if t := q.Get("type"); slices.Contains(activityTypes, t) {
		out.Set("type", t)
	}
	if k := q.Get("kind"); slices.Contains(config.MembershipKinds, k) {
		out.Set("kind", k)
	}
	if b := q.Get("before"); b != "" {
		out.Set("before", b)
	}
	return out
}

// activity is the organisation's audit trail for its administrators: every change, request,
// approval, refusal and support or partner access concerning it, newest first, filtered and
// exportable.
func (ex *exchange) activity() error {
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	q := activityQuery(ex.r.URL.Query())
	var page struct {
		Items   []activityLine `json:"items"`
		Next    string         `json:"next"`
		Scanned int            `json:"scanned"`
	}
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/activity?"+q.Encode(), nil, &page); err != nil {
		return err
	}
	older := ""
	if page.Next != "" {
		o := activityQuery(q)
		o.Set("before", page.Next)
		older = o.Encode()
	}
	filters := activityQuery(q)
	filters.Del("before")
	// Query strings encoded here (url.Values.Encode), put in the links as they are.
	return ex.render("Activity of "+org, "activity", struct {
		Org, Type, Kind string
		Older, Filters  template.URL
		Lines           []activityLine
		Types, Kinds    []string
		Paged           bool
	}{org, q.Get("type"), q.Get("kind"), template.URL(older), template.URL(filters.Encode()), page.Items, activityTypes, //nolint:gosec // url.Values.Encode
		config.MembershipKinds, q.Get("before") != ""})
}

// activityExport is the activity page's events as CSV or JSON, with its filters.
func (ex *exchange) activityExport(format string) error {
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	q := activityQuery(ex.r.URL.Query())
	q.Set("format", format)
	q.Set("count", "500")
	var body rawBody
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/activity?"+q.Encode(), nil, &body); err != nil {
		return err
	}
	ex.attachment(org+"-activity."+format, format, body)
	return nil
}

// machines are the organisation's machine identities (integrations), each with its sponsor
// and keys, for its administrators.
func (ex *exchange) machines() error {
	org, err := ex.administer(ex.r.URL.Path)
	if err != nil {
		return err
	}
	var ms items[store.Membership]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/machines", nil, &ms); err != nil {
		return err
	}
	q := ex.r.URL.Query()
	return ex.render("Machine identities of "+org, "machines", struct {
		Org, Done string
		Machines  []store.Membership
		Now       time.Time
	}{org, flash(q, "key_revoked", "retired"), ms.Items, ex.c.now()})
}

// machineTarget is what a machine's revocation page ends: one key (?key) or the machine.
func (ex *exchange) machineTarget(org string, key string) (*store.Membership, *store.APIKey, error) {
	var ms items[store.Membership]
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/machines", nil, &ms); err != nil {
		return nil, nil, err
	}
	id := ex.r.PathValue("id")
	i := slices.IndexFunc(ms.Items, func(m store.Membership) bool { return m.Machine != nil && m.Machine.ID == id })
	if i < 0 {
		return nil, nil, &apiError{p: problem.For(reason.NotFound, reason.Facts{})}
	}
	m := &ms.Items[i]
	if key == "" {
		return m, nil, nil
	}
	k := m.Machine.Key(key)
	if k == nil {
		return nil, nil, &apiError{p: problem.For(reason.NotFound, reason.Facts{})}
	}
	return m, k, nil
}

// machineRevokeForm confirms revoking a machine's key, or retiring the machine.
func (ex *exchange) machineRevokeForm() error {
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	m, k, err := ex.machineTarget(org, ex.r.URL.Query().Get("key"))
	if err != nil {
		return err
	}
	return ex.machineRevokePage(org, m, k, nil)
}

// machineRevokePage confirms revoking key k of machine m (the machine itself for a nil k),
// with why the revocation was refused when shown again.
func (ex *exchange) machineRevokePage(org string, m *store.Membership, k *store.APIKey, refusal *problem.Problem) error {
	return ex.renderStatus(statusOf(refusal), "Revoke", "machine-revoke", struct {
		Org, CSRF string
		Machine   *store.Membership
		Key       *store.APIKey
		Error     *problem.Problem
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), m, k, refusal})
}

// machineRevoke revokes the key, or retires the machine, from the confirmation page.
func (ex *exchange) machineRevoke() error {
	f := ex.r.PostForm
	key := f.Get("key")
	page := Prefix + "orgs/" + ex.r.PathValue("org") + "/machines/" + url.PathEscape(ex.r.PathValue("id")) + "/revoke"
	if key != "" {
		page += "?" + url.Values{"key": {key}}.Encode()
	}
	org, err := ex.administer(page)
	if err != nil {
		return err
	}
	if f.Get("confirm") != "yes" {
		return ex.seeOther(page, nil)
	}
	m, k, err := ex.machineTarget(org, key)
	if err != nil {
		return err
	}
	path := "/orgs/" + org + "/machines/" + url.PathEscape(m.Machine.ID)
	if k != nil {
		path += "/keys/" + url.PathEscape(k.ID)
	}
	err = ex.call(http.MethodPost, path+"/revoke", decisionInput{Reason: strings.TrimSpace(f.Get("reason"))}, nil)
	var apiErr *apiError
	switch {
	case err == nil:
		done := "retired"
		if k != nil {
			done = "key_revoked"
		}
		return ex.seeOther(Prefix+"orgs/"+org+"/machines", url.Values{"done": {done}})
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		return ex.machineRevokePage(org, m, k, &apiErr.p)
	default:
		return err
	}
}

// reviewChangeForm is the decision "change" on one item of a campaign: its new standing
// roles.
func (ex *exchange) reviewChangeForm() error {
	id, user := ex.r.PathValue("id"), ex.r.URL.Query().Get("user")
	org, err := ex.administer(ex.r.URL.RequestURI())
	if err != nil {
		return err
	}
	return ex.reviewChangePage(org, id, user, "", "", nil)
}

// reviewChangePage shows the change of user's item in campaign id, with what was typed and
// why it was refused when shown again.
func (ex *exchange) reviewChangePage(org, id, user, roles, why string, refusal *problem.Problem) error {
	var rep reviewReport
	if err := ex.call(http.MethodGet, "/orgs/"+org+"/reviews/"+url.PathEscape(id), nil, &rep); err != nil {
		return err
	}
	i := slices.IndexFunc(rep.Rows, func(l reviewLine) bool { return l.User == user })
	if i < 0 {
		return &apiError{p: problem.For(reason.NotFound, reason.Facts{})}
	}
	if refusal == nil {
		roles = strings.Join(rep.Rows[i].Roles, ", ")
	}
	return ex.renderStatus(statusOf(refusal), "Change in a review", "review-change", struct {
		Org, CSRF, ID, Roles, Reason string
		Item                         reviewLine
		Error                        *problem.Problem
	}{org, ex.c.o.Sessions.CSRFToken(ex.r), id, roles, why, rep.Rows[i], refusal})
}

// reviewChange decides one item "change": the membership keeps only the roles given (within
// the policy; the API checks it, and that nobody decides their own).
func (ex *exchange) reviewChange() error {
	id := ex.r.PathValue("id")
	f := ex.r.PostForm
	user, roles, why := f.Get("user"), f.Get("roles"), strings.TrimSpace(f.Get("reason"))
	org, err := ex.administer(Prefix + "orgs/" + ex.r.PathValue("org") + "/reviews/" + url.PathEscape(id) + "/change?" + url.Values{"user": {user}}.Encode())
	if err != nil {
		return err
	}
	err = ex.call(http.MethodPost, "/orgs/"+org+"/reviews/"+url.PathEscape(id)+"/decide", struct {
		User     string   `json:"user"`
		Decision string   `json:"decision"`
		Roles    []string `json:"roles"`
		Reason   string   `json:"reason"`
	}{user, store.DecisionChange, names(roles), why}, nil)
	var apiErr *apiError
	switch {
	case err == nil:
		return ex.reviewPage(org, id, []string{user}, nil)
	case errors.As(err, &apiErr) && inputRefusal(apiErr.p.Reason):
		return ex.reviewChangePage(org, id, user, roles, why, &apiErr.p)
	default:
		return err
	}
}
