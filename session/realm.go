package session

import (
	"context"
	"errors"
	"html/template"
	"log/slog"
	"net/http"
	"strings"

	"golang.org/x/oauth2"

	"github.com/portcullis-proxy/portcullis/internal/page"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Home-realm discovery: with several providers, which one signs a person in. The trust rule
// (authz.Providers) says which providers speak for an organisation: those it lists, or the
// shared ones when it lists none. So a sign-in for a known organisation (an organisation
// host's) goes to its provider when it has exactly one; otherwise the sign-in page asks for
// the email address, finds the organisation that has verified its domain, and sends the
// browser to that organisation's provider with the address as login_hint, or offers a choice
// among that organisation's providers only. An address at no verified domain may use the
// shared providers, or is refused (provider_unknown): Portcullis never guesses between
// customers. The choice only picks where to authenticate; what a sign-in may reach is still
// decided by the trust rule on every request.

// Realms is what home-realm discovery reads of organisations; *store.Store implements it.
type Realms interface {
	// VerifiedHolder returns the organisation holding domain verified now, nil for none.
	VerifiedHolder(ctx context.Context, domain string) (*store.Org, error)
	Org(ctx context.Context, id string) (*store.Org, error)
}

// maxEmailLen bounds the address the sign-in page accepts (RFC 5321's path limit).
const maxEmailLen = 254

// signIn starts a sign-in on the sign-in host that returns to returnTo, at the provider that
// may sign the person in (see above). org, when not "", is the organisation the sign-in is
// for (an organisation host's).
func (m *Manager) signIn(w http.ResponseWriter, r *http.Request, returnTo, org string) error {
	if ps := m.providers(); len(ps) == 1 {
		return m.beginAt(w, r, ps[0], returnTo, "")
	}
	ctx := r.Context()
	if org != "" {
		o, err := m.orgOf(ctx, org)
		if err != nil {
			return err
		}
		if ps := m.speakFor(o); len(ps) == 1 {
			return m.beginAt(w, r, ps[0], returnTo, "")
		}
	}
	email, name := r.FormValue("email"), r.FormValue("provider")
	if r.Method != http.MethodPost || email == "" {
		return m.realmPage(w, r, returnTo, "", nil, "")
	}
	email = strings.TrimSpace(email)
	domain, ok := emailDomain(email)
	if !ok {
		return m.realmPage(w, r, returnTo, email, nil, "Enter your email address, such as name@company.example.")
	}
	ps, err := m.realmOf(ctx, domain)
	if err != nil {
		return err
	}
	if len(ps) == 0 {
		return refusal(reason.ProviderUnknown, "sign-in refused", "no organisation has verified the address's domain and no provider is shared",
			slog.String("domain", domain))
	}
	if name != "" {
		for _, p := range ps {
			if p.cfg.Name == name {
				return m.beginAt(w, r, p, returnTo, email)
			}
		}
		return warning(reason.ProviderUnknown, "sign-in refused", "the provider chosen may not sign in this address",
			slog.String("provider", truncate(name, 64)), slog.String("domain", domain))
	}
	if len(ps) == 1 {
		return m.beginAt(w, r, ps[0], returnTo, email)
	}
	return m.realmPage(w, r, returnTo, email, ps, "")
}

// beginAt starts a sign-in at p, with login_hint when email is given.
func (m *Manager) beginAt(w http.ResponseWriter, r *http.Request, p *idp, returnTo, email string) error {
	rp := m.current(p)
	if rp == nil {
		return quietly(reason.IdPUnavailable)
	}
	var extra []oauth2.AuthCodeOption
	if email != "" {
		extra = append(extra, oauth2.SetAuthURLParam("login_hint", email))
	}
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	return m.beginAuth(w, r, rp, loginRecord{ReturnTo: returnTo, Started: m.now()}, extra, status)
}

// realmOf returns the providers that may sign in an address at domain: those of the
// organisation that has verified it, else the shared ones.
func (m *Manager) realmOf(ctx context.Context, domain string) ([]*idp, error) {
	if m.realms == nil {
		return m.speakFor(nil), nil
	}
	// A lapsed domain names its former holder, whose provider it must not reach: no holder.
	o, err := m.realms.VerifiedHolder(ctx, domain)
	if err != nil {
		return nil, outage("organisation of an email domain", err)
	}
	return m.speakFor(o), nil
}

// orgOf reads organisation id; nil when there is none (or nothing to read it from).
func (m *Manager) orgOf(ctx context.Context, id string) (*store.Org, error) {
	if m.realms == nil {
		return nil, nil
	}
	o, err := m.realms.Org(ctx, id)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, outage("organisation of a host", err)
	}
	return o, nil
}

// speakFor returns the providers the trust rule lets sign people in for o, in configuration
// order; for nil, the shared ones.
func (m *Manager) speakFor(o *store.Org) []*idp {
	var out []*idp
	trust := m.trust.Load()
	for _, p := range m.providers() {
		if o == nil && p.cfg.Shared || o != nil && trust.Trusts(o, p.cfg.Name) {
			out = append(out, p)
		}
	}
	return out
}

// checkDomain enforces verified_domains_only for a sign-in through rp: the verified address
// must be at a domain verified by an organisation whose providers include rp's.
func (m *Manager) checkDomain(ctx context.Context, rp *relyingParty, id *identity) error {
	if !rp.p.cfg.VerifiedDomainsOnly {
		return nil
	}
	refuse := func(cause string) error {
		return warning(reason.ProviderDomainRefused, signInRefused, cause, slog.String("provider", rp.p.cfg.Name), slog.String("user", id.user))
	}
	domain, ok := emailDomain(id.email)
	if !ok || !id.emailVerified {
		return refuse("no verified address")
	}
	if m.realms == nil {
		return refuse("no organisation records to check the domain against")
	}
	o, err := m.realms.VerifiedHolder(ctx, domain)
	switch {
	case err != nil:
		return outage("organisation of an email domain", err)
	case o == nil:
		return refuse("no organisation holds the address's domain verified")
	case !m.trust.Load().Trusts(o, rp.p.cfg.Name):
		return refuse("the organisation that verified the address's domain does not list this provider")
	}
	return nil
}

// emailDomain returns the lower-case domain of an address that looks like one.
func emailDomain(email string) (string, bool) {
	if len(email) > maxEmailLen {
		return "", false
	}
	at := strings.LastIndexByte(email, '@')
	if at < 1 || at == len(email)-1 || strings.ContainsAny(email, " \t\r\n<>,;\"") {
		return "", false
	}
	// ASCII only (an IDN as its A-labels): Unicode case folding would turn the Kelvin sign
	// into "k", and a domain is compared byte for byte with the verified ones.
	d := []byte(strings.TrimSuffix(email[at+1:], "."))
	for i, c := range d {
		switch {
		case 'A' <= c && c <= 'Z':
			d[i] = c + 'a' - 'A'
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return "", false
		}
	}
	if !strings.Contains(string(d), ".") {
		return "", false
	}
	return string(d), true
}

var realmBody = template.Must(template.New("realm").Parse(`<h1>Sign in</h1>
{{if .Choices}}<p>Choose how to sign in as <strong>{{.Email}}</strong>.</p>
<form method="post" action="/.portcullis/login">
<input type="hidden" name="rd" value="{{.ReturnTo}}">
<input type="hidden" name="email" value="{{.Email}}">
<ul class="choices">{{range .Choices}}<li><button type="submit" name="provider" value="{{.Name}}">{{.DisplayName}}</button></li>{{end}}</ul>
</form>
<p><a href="/.portcullis/login?rd={{.ReturnTo}}">Use another address</a></p>
{{else}}<p>Enter your work email address: it tells us where your organisation signs you in.</p>
<form method="post" action="/.portcullis/login">
<input type="hidden" name="rd" value="{{.ReturnTo}}">
<p><label for="portcullis-email">Email address</label><br>
<input id="portcullis-email" type="email" name="email" autocomplete="email" required maxlength="254" value="{{.Email}}"{{if .Error}} aria-describedby="portcullis-email-error" aria-invalid="true"{{end}}></p>
{{if .Error}}<p id="portcullis-email-error" class="note" role="alert">{{.Error}}</p>{{end}}
<p><button type="submit">Continue</button></p>
</form>{{end}}`))

type choice struct{ Name, DisplayName string }

// realmPage is the sign-in page: the address form, or the choice among ps for email.
func (m *Manager) realmPage(w http.ResponseWriter, r *http.Request, returnTo, email string, ps []*idp, msg string) error {
	var cs []choice
	for _, p := range ps {
		cs = append(cs, choice{p.cfg.Name, p.cfg.DisplayName})
	}
	body, err := page.Execute(realmBody, struct {
		ReturnTo, Email, Error string
		Choices                []choice
	}{returnTo, email, msg, cs})
	if err != nil {
		return internal("sign-in page", err)
	}
	status := http.StatusOK
	if msg != "" {
		status = http.StatusBadRequest
	}
	// No form-action: the answer redirects to the provider, and browsers apply form-action
	// to every hop. The page runs no script.
	page.Render(w, r, page.Page{Status: status, Title: "Sign in", Body: body, FormAction: page.NoFormAction})
	return nil
}
