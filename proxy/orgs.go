package proxy

import (
	"context"
	"html/template"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/session"
)

// pickerRoute stands for the org picker in the gate, logs and metrics.
var pickerRoute = config.Route{Name: "_orgs"}

var pickerBody = template.Must(template.New("orgs").Parse(`<h1>Choose an organisation</h1>
{{if .Orgs}}<p>You can act for these organisations. Your choice applies to this session.</p>
<ul class="choices">{{range .Orgs}}<li><form method="post" action="/.portcullis/orgs">
<input type="hidden" name="csrf" value="{{$.CSRF}}"><input type="hidden" name="rd" value="{{$.Return}}">
<button name="org" value="{{.ID}}"{{if eq .ID $.Current}} class="current" aria-current="true"{{end}}>{{.Name}}</button></form></li>{{end}}</ul>
{{else}}<p>You have no active membership in any organisation. Ask your organisation's administrator for access.</p>{{end}}`))

type pickerOrg struct {
	ID   string `json:"id"`
	Name string `json:"name"`
}

// serveOrgs is the org picker: GET lists the person's live memberships, POST (with the
// session's CSRF token) records the choice.
func (ex *exchange) serveOrgs() error {
	s, w := ex.s, ex.w
	chooser := s.opts.Orgs
	if s.opts.Gate == nil || chooser == nil || s.opts.Members == nil {
		return reject(reason.NoRoute)
	}
	r, ok := s.opts.Gate.Admit(w, ex.r, &pickerRoute)
	if !ok {
		return errAnswered
	}
	ex.r = r
	sess, _ := session.FromContext(r.Context())
	orgs, err := s.liveOrgs(r.Context(), sess)
	if err != nil {
		d := storeDown(sess.UserKey, err)
		d.route = pickerRoute.Name
		return d
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		rd := session.SafeReturn(r.URL.Query().Get("rd"))
		if problem.WantsHTML(r) {
			body, err := page.Execute(pickerBody, struct {
				Orgs                  []pickerOrg
				CSRF, Return, Current string
			}{orgs, chooser.CSRFToken(r), rd, sess.ActiveOrg})
			if err != nil {
				return internalError("org picker page", err)
			}
			page.Render(w, r, page.Page{Title: "Choose an organisation", Body: body, Support: len(orgs) == 0})
			return nil
		}
		writeJSON(w, r, http.StatusOK, struct {
			Orgs   []pickerOrg `json:"orgs"`
			Active string      `json:"active,omitempty"`
			CSRF   string      `json:"csrf"`
		}{orgs, sess.ActiveOrg, chooser.CSRFToken(r)})
		return nil
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, 4<<10)
		if err := r.ParseForm(); err != nil || !chooser.CheckCSRF(r, r.PostForm.Get("csrf")) || !sameOrigin(r) {
			return problem.Refuse(reason.CSRFFailed, "", "")
		}
		org := r.PostForm.Get("org")
		if !slices.ContainsFunc(orgs, func(o pickerOrg) bool { return o.ID == org }) {
			var f reason.Facts
			if syntax.OrgID(org) {
				f.Org = org // anything else is not repeated back
			}
			return &problem.Error{Problem: problem.For(reason.NotMember, f)}
		}
		if err := chooser.SetActiveOrg(r.Context(), r, org); err != nil {
			d := storeDown(sess.UserKey, err)
			d.route = pickerRoute.Name
			return d
		}
		s.log.LogAttrs(r.Context(), slog.LevelInfo, "active organisation chosen", slog.String("user", sess.UserKey), slog.String("org", org))
		http.Redirect(w, r, session.SafeReturn(r.PostForm.Get("rd")), http.StatusSeeOther)
		return nil
	default:
		w.Header().Set("Allow", "GET, HEAD, POST")
		return reject(reason.MethodNotAllowed)
	}
}

// pickerRequire admits any live membership: the routes themselves apply their own rules
// (including the email domain, which partners and support staff may not share).
var pickerRequire = authz.CompileRequire(&config.Require{VerifiedEmailDomain: new(bool)})

// liveOrgs lists the organisations the person may act for now: a live membership in an
// active organisation.
func (s *Server) liveOrgs(ctx context.Context, sess *session.Session) ([]pickerOrg, error) {
	ids, err := s.opts.Members.OrgsOf(ctx, sess.UserKey)
	if err != nil {
		return nil, err
	}
	var out []pickerOrg
	st := s.state.Load()
	for _, id := range ids {
		o, m, err := s.opts.Members.Lookup(ctx, id, sess.UserKey)
		if err != nil {
			return nil, err
		}
		d := authz.Decide(authz.Input{User: sess.UserKey, Email: sess.Email, EmailVerified: sess.EmailVerified,
			OrgID: id, Org: o, Membership: m, Require: pickerRequire, Policy: st.lifecycle, Providers: st.trust.Load()}, s.now())
		if d.Allow {
			name := o.Name
			if name == "" {
				name = id
			}
			out = append(out, pickerOrg{ID: id, Name: name})
		}
	}
	return out, nil
}

// sameOrigin refuses a state-changing request that a browser marks as cross-site.
func sameOrigin(r *http.Request) bool {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return false
	}
	if o := r.Header.Get("Origin"); o != "" && o != "null" {
		u, err := url.Parse(o)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	return true
}
