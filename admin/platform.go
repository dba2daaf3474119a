package admin

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
	"github.com/portcullis-proxy/portcullis/store"
)

// The platform's own records, for operators: an organisation's status and contract, its
// email domains and their verification, whose address or portal username is whose (the
// recovery guard's indexes), the memberships due for review everywhere, and the audit stream.
// These are what `portcullis admin` does through the API.

// orgStatusInput sets an organisation's status.
type orgStatusInput struct {
	Status      string    `json:"status"` // active, suspended, ended
	ContractEnd time.Time `json:"contract_end,omitzero"`
	MergedInto  string    `json:"merged_into,omitempty"`
	Reason      string    `json:"reason"`
}

func (in *orgStatusInput) why() string { return in.Reason }

func (c *call) setOrgStatus() (any, error) {
	var in orgStatusInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	return c.changes().SetOrgStatus(c.ctx, org, store.OrgStatus{Status: in.Status, ContractEnd: in.ContractEnd, MergedInto: in.MergedInto}, c.p.Name, in.Reason)
}

// domainInput adds a domain (pending) or sets its status.
type domainInput struct {
	Domain string `json:"domain"`
	// Status is pending (the default: add it, or mark it pending again), verified or lapsed.
	Status string `json:"status,omitempty"`
	Reason string `json:"reason"`
}

func (in *domainInput) why() string { return in.Reason }

func (c *call) setDomain() (any, error) {
	var in domainInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	if in.Status == "" {
		in.Status = store.DomainPending
	}
	o, err := c.s.st.Org(c.ctx, org)
	if err != nil {
		return nil, err
	}
	listed := false
	for _, d := range o.Domains {
		listed = listed || strings.EqualFold(d.Name, strings.TrimSuffix(in.Domain, "."))
	}
	if !listed {
		if o, err = c.changes().AddDomain(c.ctx, org, in.Domain, c.p.Name, in.Reason); err != nil || in.Status == store.DomainPending {
			return o, err
		}
	}
	return c.changes().SetDomainStatus(c.ctx, org, in.Domain, in.Status, c.p.Name, in.Reason)
}

// providersInput lists the providers an organisation trusts.
type providersInput struct {
	// Providers are names of configured providers ("default" for oidc's own); empty: the
	// shared providers.
	Providers []string `json:"providers"`
	Reason    string   `json:"reason"`
}

func (in *providersInput) why() string { return in.Reason }

func (c *call) setProviders() (any, error) {
	var in providersInput
	org, err := c.orgChange(&in)
	if err != nil {
		return nil, err
	}
	// Only this process's providers can be checked; replicas share one file and one Redis.
	trust := c.s.trust.Load()
	if n := trust.Unknown(in.Providers); n != "" {
		return nil, invalid(fmt.Sprintf("provider %q is not a configured identity provider", n))
	}
	if n := trust.Foreign(org, in.Providers); n != "" {
		return nil, refuse(reason.NotPermitted, fmt.Sprintf("provider %q is bound to organisation %s", n, trust.BoundTo(n)))
	}
	return c.changes().SetOrgProviders(c.ctx, org, in.Providers, c.p.Name, in.Reason)
}

// personIndexInput records whose address or portal username it is.
type personIndexInput struct {
	User string `json:"user"`
	// Email or Username, one of them.
	Email    string `json:"email,omitempty"`
	Username string `json:"username,omitempty"`
	Reason   string `json:"reason"`
}

func (in *personIndexInput) why() string { return in.Reason }

// personIndexOutcome says what was recorded (never the value: the indexes keep it hashed).
type personIndexOutcome struct {
	User     string `json:"user"`
	Recorded string `json:"recorded"`
}

func (c *call) recordPerson() (any, error) {
	var in personIndexInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	var typ audit.Type
	var err error
	switch {
	case (in.Email == "") == (in.Username == ""):
		return nil, invalid("give email or username, one of them")
	case in.Email != "":
		typ, err = audit.PersonEmailRecorded, c.s.st.RecordPerson(c.ctx, in.Email, in.User, c.s.now(), 0)
	default:
		typ, err = audit.PersonUsernameSet, c.s.st.SetUsername(c.ctx, in.Username, in.User)
	}
	if err != nil {
		return nil, err
	}
	// The value is an identifier the guard keeps hashed; the event names the person only.
	if err := c.s.events.Append(c.ctx, audit.Event{Type: typ, Actor: c.p.Name, Via: c.via(), User: in.User, Reason: in.Reason}); err != nil {
		return nil, err
	}
	return personIndexOutcome{User: in.User, Recorded: string(typ)}, nil
}

// reviewsDue lists every membership, in every organisation, whose review is due within
// ?within (a duration; default 14d).
func (c *call) reviewsDue() (any, error) {
	within := 14 * 24 * time.Hour
	if v := c.r.URL.Query().Get("within"); v != "" {
		d, err := durationInput("within", v)
		if err != nil {
			return nil, err
		}
		within = d
	}
	ms, err := c.s.st.ReviewDue(c.ctx, c.s.now(), within)
	if err != nil {
		return nil, err
	}
	return list[store.Membership]{Items: append([]store.Membership{}, ms...)}, nil
}

// auditPage is a page of the audit stream and where the next one starts.
type auditPage struct {
	Items []audit.Event `json:"items"`
	// Next is the position to ask for next (?since=Next).
	Next string `json:"next"`
}

// auditTail reads the audit stream: the newest ?count events, or those after ?since (an event
// id, "0" for the oldest kept, "$" for only new ones), at most ?count events (default 100, at most 1000), waiting up to
// ?wait seconds (at most 10) for one when there is none yet: a follower polls with it.
func (c *call) auditTail() (any, error) {
	q := c.r.URL.Query()
	since := q.Get("since")
	if since != "" && !validStreamPosition(since) {
		return nil, invalid("since: want an event id (1732870000000-0), 0 or $")
	}
	count := 100
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, invalid("count: want 1 to 1000")
		}
		count = n
	}
	var wait time.Duration
	if v := q.Get("wait"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 10 {
			return nil, invalid("wait: want 0 to 10 seconds")
		}
		wait = time.Duration(n) * time.Second
	}
	evs, next, err := c.s.events.Tail(c.ctx, since, count, wait)
	if err != nil {
		return nil, err
	}
	return auditPage{Items: append([]audit.Event{}, evs...), Next: next}, nil
}

// validStreamPosition reports whether s is 0, $ or a stream id ms-seq.
func validStreamPosition(s string) bool {
	if s == "0" || s == "$" {
		return true
	}
	ms, seq, ok := strings.Cut(s, "-")
	_, err1 := strconv.ParseUint(ms, 10, 64)
	_, err2 := strconv.ParseUint(seq, 10, 64)
	return ok && err1 == nil && err2 == nil
}

// recoveryResetInput clears an identifier's recovery rate limit on a route.
type recoveryResetInput struct {
	// Route is the name of the route whose recovery_guard counted the requests.
	Route string `json:"route"`
	// Email or Username, one of them, as the person types it.
	Email    string `json:"email,omitempty"`
	Username string `json:"username,omitempty"`
	Reason   string `json:"reason"`
}

func (in *recoveryResetInput) why() string { return in.Reason }

// recoveryResetOutcome says what was cleared; the identifier as audit events name it.
type recoveryResetOutcome struct {
	Route      string `json:"route"`
	Identifier string `json:"identifier"`
	Cleared    int    `json:"cleared"`
}

func (c *call) resetRecoveryLimit() (any, error) {
	var in recoveryResetInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if in.Route == "" {
		return nil, invalid("route: the name of the route with the recovery guard")
	}
	var id recoveryid.Identifier
	switch {
	case (in.Email == "") == (in.Username == ""):
		return nil, invalid("give email or username, one of them")
	case in.Email != "":
		local, domain, why := recoveryid.CanonicalEmail(in.Email)
		if why != "" {
			return nil, invalid("email: " + why)
		}
		id = recoveryid.Identifier{Kind: recoveryid.KindEmail, Raw: in.Email, Local: local, Domain: domain}
	default:
		id = recoveryid.Identifier{Kind: recoveryid.KindUsername, Raw: in.Username}
	}
	n, err := c.s.st.ResetRecoveryCount(c.ctx, in.Route, id.LookupKey())
	if err != nil {
		return nil, err
	}
	shown := id.AuditHash()
	if err := c.s.events.Append(c.ctx, audit.Event{Type: audit.RecoveryLimitReset, Actor: c.p.Name, Via: c.via(), Route: in.Route, Reason: in.Reason,
		Detail: map[string]string{"identifier": shown, "cleared": strconv.Itoa(n)}}); err != nil {
		return nil, err
	}
	return recoveryResetOutcome{Route: in.Route, Identifier: shown, Cleared: n}, nil
}
