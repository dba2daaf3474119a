package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/store"
)

// Machine identities and their API keys (store/machines.go, admin/machines.go). Through the
// admin API every rule applies there; break-glass can retire a machine and revoke a key (a
// leaked key during an API outage), not create either: creation is a grant, and grants go
// through the API's policy.

// machineBackend is what the machine commands need of a backend.
type machineBackend interface {
	CreateMachine(ctx context.Context, org string, in machineSpec, reason string) (*store.Membership, error)
	Machines(ctx context.Context, org string) ([]store.Membership, error)
	RevokeMachine(ctx context.Context, org, id, reason string) (*store.Membership, error)
	CreateAPIKey(ctx context.Context, org, id string, expires time.Time, replaces string, overlap time.Duration, reason string) (string, *store.APIKey, error)
	RevokeAPIKey(ctx context.Context, org, id, key, reason string) (*store.APIKey, error)
	BindClient(ctx context.Context, org, id, issuer, subject, reason string) (*store.Membership, error)
	UnbindClient(ctx context.Context, org, id, issuer, subject, reason string) (*store.Membership, error)
	HandOver(ctx context.Context, org, id, sponsor, reason string) (*store.Membership, error)
}

// machineSpec is what `machine create` asks for.
type machineSpec struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Description string    `json:"description,omitempty"`
	Sponsor     string    `json:"sponsor,omitempty"`
	Roles       []string  `json:"roles,omitempty"`
	ExpiresAt   time.Time `json:"expires_at,omitzero"`
	ReviewBy    time.Time `json:"review_by,omitzero"`
}

func adminMachineCreate(a *adminRun) int {
	name := a.fs.String("name", "", "what the machine is, for people (required)")
	desc := a.fs.String("description", "", "what it does, and where its key lives")
	sponsor := a.fs.String("sponsor", "", "the person who answers for it, issuer|subject (default: the caller, who must hold a live membership)")
	expires := a.fs.String("expires", "", "when the machine identity ends: RFC 3339 or a duration (required by the service kind's default policy)")
	reviewBy := a.fs.String("review-by", "", "when it must have been re-approved (default: the service kind's review_every)")
	var roles stringList
	a.fs.Var(&roles, "role", "a role the sponsor holds standing (repeatable)")
	if !a.parse("ORG", "ID") {
		return 2
	}
	org, id := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	a.checkToken("ID", id)
	for _, r := range roles {
		a.checkToken("--role", r)
	}
	if *name == "" {
		a.bad("--name", "is required")
	}
	spec := machineSpec{ID: id, Name: *name, Description: *desc, Sponsor: *sponsor, Roles: roles,
		ExpiresAt: a.future("--expires", *expires, false), ReviewBy: a.future("--review-by", *reviewBy, false)}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	m, err := a.be.CreateMachine(a.ctx, org, spec, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(m, func(w io.Writer) { printMachines(w, []store.Membership{*m}) })
}

func adminMachineList(a *adminRun) int {
	if !a.parse("ORG") {
		return 2
	}
	org := a.pos[0]
	if a.checkOrgID("ORG", org); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	ms, err := a.be.Machines(a.ctx, org)
	if err != nil {
		return a.fail(err)
	}
	if ms == nil {
		ms = []store.Membership{}
	}
	return a.output(ms, func(w io.Writer) { printMachines(w, ms) })
}

func adminMachineRevoke(a *adminRun) int {
	if !a.parse("ORG", "ID") {
		return 2
	}
	org, id := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	m, err := a.be.RevokeMachine(a.ctx, org, id, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(m, func(w io.Writer) { fmt.Fprintf(w, "machine %s/%s: revoked, with every key\n", org, id) })
}

func adminMachineHandOver(a *adminRun) int {
	sponsor := a.fs.String("sponsor", "", "the new sponsor, a person's issuer|subject with a live membership holding the machine's roles (required)")
	if !a.parse("ORG", "ID") {
		return 2
	}
	org, id := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	if *sponsor == "" {
		a.bad("--sponsor", "is required")
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	m, err := a.be.HandOver(a.ctx, org, id, *sponsor, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(m, func(w io.Writer) {
		fmt.Fprintf(w, "machine %s/%s: sponsored by %s now; its keys were revoked (the new sponsor makes new ones)\n", org, id, *sponsor)
	})
}

func adminMachineBind(a *adminRun) int   { return adminMachineClient(a, true) }
func adminMachineUnbind(a *adminRun) int { return adminMachineClient(a, false) }

func adminMachineClient(a *adminRun, bind bool) int {
	issuer := a.fs.String("issuer", "", "the issuer of the client's tokens, one of client_jwt.issuers (required)")
	subject := a.fs.String("subject", "", "the client's subject at the issuer: its sub, client_id or azp, as the issuer's subject_claim says (required)")
	if !a.parse("ORG", "ID") {
		return 2
	}
	org, id := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	if *issuer == "" {
		a.bad("--issuer", "is required")
	}
	if *subject == "" {
		a.bad("--subject", "is required")
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	f, what := a.be.BindClient, "bound to"
	if !bind {
		f, what = a.be.UnbindClient, "unbound from"
	}
	m, err := f(a.ctx, org, id, *issuer, *subject, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(m, func(w io.Writer) { fmt.Fprintf(w, "client %s of %s %s %s/%s\n", *subject, *issuer, what, org, id) })
}

// createdAPIKey is what `key create --json` prints.
type createdAPIKey struct {
	Key    string       `json:"key"`
	Record store.APIKey `json:"record"`
}

func adminKeyCreate(a *adminRun) int { return adminKeyNew(a, false) }
func adminKeyRotate(a *adminRun) int { return adminKeyNew(a, true) }
func adminKeyNew(a *adminRun, rotate bool) int {
	expires := a.fs.String("expires", "", "when the key ends: RFC 3339 or a duration (default: lifecycle.api_keys.max_lifetime, or the machine's end)")
	overlap := "0s"
	if rotate {
		a.fs.StringVar(&overlap, "overlap", "0s", "how long the old key keeps working beside the new one (at most lifecycle.api_keys.max_overlap)")
	}
	names := []string{"ORG", "MACHINE"}
	if rotate {
		names = append(names, "KEY")
	}
	if !a.parse(names...) {
		return 2
	}
	org, id, replaces := a.pos[0], a.pos[1], ""
	if rotate {
		replaces = a.pos[2]
	}
	a.checkOrgID("ORG", org)
	end := a.future("--expires", *expires, false)
	ov, err := parseDuration(overlap)
	if err != nil || ov < 0 {
		a.bad("--overlap", "%q: want a duration such as 1h or 7d", overlap)
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	key, k, err := a.be.CreateAPIKey(a.ctx, org, id, end, replaces, ov, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(createdAPIKey{key, *k}, func(w io.Writer) {
		fmt.Fprintf(w, "API key %s of %s/%s (expires %s); it is shown only now, store it in a secret manager:\n%s\n",
			k.ID, org, id, k.ExpiresAt.Format(time.RFC3339), key)
		if rotate {
			fmt.Fprintf(w, "key %s keeps working for the overlap, then ends\n", replaces)
		}
		fmt.Fprintln(w, `send it as "Authorization: Bearer <key>"`)
	})
}

func adminKeyRevoke(a *adminRun) int {
	if !a.parse("ORG", "MACHINE", "KEY") {
		return 2
	}
	org, id, kid := a.pos[0], a.pos[1], a.pos[2]
	a.checkOrgID("ORG", org)
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	k, err := a.be.RevokeAPIKey(a.ctx, org, id, kid, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(k, func(w io.Writer) { fmt.Fprintf(w, "API key %s of %s/%s revoked\n", k.ID, org, id) })
}

func printMachines(w io.Writer, ms []store.Membership) {
	now := time.Now()
	for _, m := range ms {
		mc := m.Machine
		if mc == nil {
			continue
		}
		end := "no end"
		if !m.ExpiresAt.IsZero() {
			end = "ends " + m.ExpiresAt.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s/%s  %s  %q  sponsor=%s  roles=%s  %s\n", m.Org, mc.ID, m.Status, mc.Name, mc.Sponsor, strings.Join(m.Roles, ","), end)
		for _, c := range mc.Clients {
			fmt.Fprintf(w, "  client %s of %s  bound %s by %s\n", c.Subject, c.Issuer, c.Bound.Format(time.RFC3339), c.BoundBy)
		}
		for _, k := range mc.Keys {
			state := "live"
			switch {
			case !k.Revoked.IsZero():
				state = "revoked"
			case !k.Live(now):
				state = "expired"
			}
			used := "never used"
			if !k.LastUsed.IsZero() {
				used = "last used " + k.LastUsed.Format(time.RFC3339)
			}
			fmt.Fprintf(w, "  key %s  %-7s  expires=%s  %s\n", k.ID, state, k.ExpiresAt.Format(time.RFC3339), used)
		}
	}
}

// Through the admin API.

func machinePath(org, id string) string { return orgPath(org) + "/machines/" + url.PathEscape(id) }

func (b *apiBackend) CreateMachine(ctx context.Context, org string, in machineSpec, reason string) (*store.Membership, error) {
	var out store.Membership
	body := struct {
		machineSpec
		Reason string `json:"reason"`
	}{in, reason}
	return &out, b.call(ctx, "POST", orgPath(org)+"/machines", body, &out)
}

func (b *apiBackend) Machines(ctx context.Context, org string) ([]store.Membership, error) {
	var out items[store.Membership]
	return out.Items, b.call(ctx, "GET", orgPath(org)+"/machines", nil, &out)
}

func (b *apiBackend) RevokeMachine(ctx context.Context, org, id, reason string) (*store.Membership, error) {
	var out store.Membership
	return &out, b.call(ctx, "POST", machinePath(org, id)+"/revoke", map[string]any{"reason": reason}, &out)
}

func (b *apiBackend) CreateAPIKey(ctx context.Context, org, id string, expires time.Time, replaces string, overlap time.Duration, reason string) (string, *store.APIKey, error) {
	var out createdAPIKey
	in := map[string]any{"reason": reason}
	if !expires.IsZero() {
		in["expires_at"] = expires
	}
	path := machinePath(org, id) + "/keys"
	if replaces != "" {
		path += "/" + url.PathEscape(replaces) + "/rotate"
		in["overlap"] = overlap.String()
		if overlap == 0 {
			delete(in, "overlap")
		}
	}
	if err := b.call(ctx, "POST", path, in, &out); err != nil {
		return "", nil, err
	}
	return out.Key, &out.Record, nil
}

func (b *apiBackend) RevokeAPIKey(ctx context.Context, org, id, key, reason string) (*store.APIKey, error) {
	var out store.APIKey
	return &out, b.call(ctx, "POST", machinePath(org, id)+"/keys/"+url.PathEscape(key)+"/revoke", map[string]any{"reason": reason}, &out)
}

func (b *apiBackend) BindClient(ctx context.Context, org, id, issuer, subject, reason string) (*store.Membership, error) {
	var out store.Membership
	return &out, b.call(ctx, "POST", machinePath(org, id)+"/clients", map[string]any{"issuer": issuer, "subject": subject, "reason": reason}, &out)
}

func (b *apiBackend) UnbindClient(ctx context.Context, org, id, issuer, subject, reason string) (*store.Membership, error) {
	var out store.Membership
	return &out, b.call(ctx, "POST", machinePath(org, id)+"/clients/unbind", map[string]any{"issuer": issuer, "subject": subject, "reason": reason}, &out)
}

func (b *apiBackend) HandOver(ctx context.Context, org, id, sponsor, reason string) (*store.Membership, error) {
	var out store.Membership
	return &out, b.call(ctx, "POST", machinePath(org, id)+"/sponsor", map[string]any{"sponsor": sponsor, "reason": reason}, &out)
}

// Break-glass: retiring and revoking only.

var errMachineThroughAPI = errors.New("machine identities and API keys are created through the admin API, which applies the lifecycle policy and the sponsor's rules; break-glass can only revoke")

func (b *storeBackend) CreateMachine(context.Context, string, machineSpec, string) (*store.Membership, error) {
	return nil, errMachineThroughAPI
}

func (b *storeBackend) CreateAPIKey(context.Context, string, string, time.Time, string, time.Duration, string) (string, *store.APIKey, error) {
	return "", nil, errMachineThroughAPI
}

func (b *storeBackend) Machines(ctx context.Context, org string) ([]store.Membership, error) {
	return b.st.Machines(ctx, org)
}

func (b *storeBackend) RevokeMachine(ctx context.Context, org, id, reason string) (*store.Membership, error) {
	return b.orgs.RevokeMachine(ctx, org, id, b.actor, reason)
}

func (b *storeBackend) RevokeAPIKey(ctx context.Context, org, id, key, reason string) (*store.APIKey, error) {
	return b.orgs.RevokeAPIKey(ctx, org, id, key, b.actor, reason)
}

func (b *storeBackend) BindClient(context.Context, string, string, string, string, string) (*store.Membership, error) {
	return nil, errMachineThroughAPI
}

func (b *storeBackend) UnbindClient(ctx context.Context, org, id, issuer, subject, reason string) (*store.Membership, error) {
	return b.orgs.UnbindClient(ctx, org, id, issuer, subject, b.actor, reason)
}

func (b *storeBackend) HandOver(context.Context, string, string, string, string) (*store.Membership, error) {
	return nil, errMachineThroughAPI
}
