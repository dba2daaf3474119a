package store

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Machine identities (README, "Machine identities"): an integration of one organisation (a
// billing export, a ticket sync), bound to the person who sponsors it. A machine identity is a
// membership like any other, of kind service, whose user key is MachineUser(org, id) and whose
// Machine field says what it is, who sponsors it, which API keys it holds and which federated
// clients are bound to it. Being a membership, it is decided, reviewed, reported and
// invalidated like one; the rule more is that it holds no more than its sponsor, whose
// membership of the same organisation must grant too (authz.DecideMachine).
//
// API keys are "pc_<key id>_<secret>": the key id is public (it names the key in listings,
// audit events and the index), the secret 256 random bits shown once. The index entry
// pc:{k:<key id>}:apikey names the machine a key belongs to and holds the SHA-256 of the whole
// key (apikey.Hash), never the key: a Redis dump holds no usable credential, and the
// membership record, which audit events and listings show, holds no hash at all. The entry
// never changes once written (so any replica may cache it for as long as it likes); the
// machine's record says whether the key is live. The entry is written with the record, in one
// transaction, and left in place when a key ends; an entry for a key the record does not list,
// or lists as ended, grants nothing.

// machinePrefix starts the user key of every machine identity. An OpenID Provider's issuer is
// an https URL, so no person's key (issuer|subject) can start with it.
const machinePrefix = "machine:"

// MaxAPIKeys bounds the keys one machine identity holds at once, ended ones included: rotation
// replaces, it does not accumulate.
const MaxAPIKeys = 10

// MachineUser is the user key of machine identity id of org: "machine:<org>|<id>".
func MachineUser(org, id string) string { return machinePrefix + org + "|" + id }

// ParseMachineUser splits a machine identity's user key; ok is false for a person's key.
func ParseMachineUser(user string) (org, id string, ok bool) {
	rest, ok := strings.CutPrefix(user, machinePrefix)
	if !ok {
		return "", "", false
	}
	org, id, ok = strings.Cut(rest, "|")
	if !ok || !syntax.OrgID(org) || !syntax.Name(id) {
		return "", "", false
	}
	return org, id, true
}

// IsMachineUser reports whether user is the key of a machine identity (well-formed or not):
// such keys never belong to a person.
func IsMachineUser(user string) bool { return strings.HasPrefix(user, machinePrefix) }

// Machine is what makes a membership a machine identity.
type Machine struct {
	// ID names the machine within its organisation ([a-z0-9_-]{1,64}).
	ID          string `json:"id"`
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
	// Sponsor is the user key of the person who answers for the machine: they must hold a
	// live membership of the same organisation for the machine to be admitted at all.
	Sponsor string `json:"sponsor"`
	// Keys are the machine's API keys, ended ones included (for the record), oldest first.
	Keys []APIKey `json:"keys,omitempty"`
	// Clients are the federated clients bound to the machine: the issuer and subject of
	// client-credentials tokens a customer's own IdP issues (config client_jwt).
	Clients []FederatedClient `json:"clients,omitempty"`
}

// FederatedClient is a client of a trusted issuer, bound to a machine identity: a token of
// that issuer with that subject is the machine.
type FederatedClient struct {
	Issuer  string    `json:"issuer"`
	Subject string    `json:"subject"`
	Bound   time.Time `json:"bound"`
	BoundBy string    `json:"bound_by"`
}

// MaxClients bounds the federated clients of one machine identity.
const MaxClients = 5

// Client returns the binding of issuer's subject, or nil.
func (m *Machine) Client(issuer, subject string) *FederatedClient {
	for i := range m.Clients {
		if m.Clients[i].Issuer == issuer && m.Clients[i].Subject == subject {
			return &m.Clients[i]
		}
	}
	return nil
}

// APIKey is one API key of a machine identity.
type APIKey struct {
	// ID is the key's public id, the part after "pc_".
	ID        string    `json:"id"`
	Created   time.Time `json:"created"`
	CreatedBy string    `json:"created_by"`
	// ExpiresAt ends the key; every key has an end. A rotation moves the replaced key's end
	// to the end of the overlap window.
	ExpiresAt time.Time `json:"expires_at"`
	Revoked   time.Time `json:"revoked,omitzero"`
	RevokedBy string    `json:"revoked_by,omitempty"`
	// Replaces names the key this one rotated out, if any.
	Replaces string `json:"replaces,omitempty"`
	// LastUsed is when the key last admitted a request, as far as recorded (coalesced like a
	// membership's last use); filled by Machines, never stored in the record.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// Live reports whether k may admit a request at now.
func (k *APIKey) Live(now time.Time) bool { return k.Revoked.IsZero() && now.Before(k.ExpiresAt) }

// Key returns the key of public id id, or nil.
func (m *Machine) Key(id string) *APIKey {
	for i := range m.Keys {
		if m.Keys[i].ID == id {
			return &m.Keys[i]
		}
	}
	return nil
}

// checkMachine reports the problems of a machine membership's Machine part (checkMembership
// calls it for every membership whose user key is a machine's).
func checkMachine(m *Membership, bad func(string, ...any)) {
	org, id, ok := ParseMachineUser(m.User)
	switch {
	case !ok:
		bad("user %q: a machine key is machine:<org>|<id>", m.User)
		return
	case m.Machine == nil:
		bad("user %q: a machine identity needs its machine record", m.User)
		return
	case org != m.Org || id != m.Machine.ID:
		bad("user %q: names another machine than %s/%s", m.User, m.Org, m.Machine.ID)
	}
	if m.Kind != KindService {
		bad("kind %q: a machine identity's membership is of kind service", m.Kind)
	}
	mc := m.Machine
	if strings.TrimSpace(mc.Name) == "" || len(mc.Name) > 128 || !printable(mc.Name) {
		bad("machine name: required, printable, at most 128 bytes")
	}
	if len(mc.Description) > 1024 || !printable(mc.Description) {
		bad("machine description: printable, at most 1024 bytes")
	}
	if !validUser(mc.Sponsor) || IsMachineUser(mc.Sponsor) {
		bad("machine sponsor %q: want a person's user key (issuer|subject)", mc.Sponsor)
	}
	if len(mc.Clients) > MaxClients {
		bad("machine clients: at most %d", MaxClients)
	}
	for i, c := range mc.Clients {
		if c.Issuer == "" || len(c.Issuer) > 512 || c.Subject == "" || len(c.Subject) > 255 || !printable(c.Issuer) || !printable(c.Subject) {
			bad("machine clients[%d]: an issuer URL and a subject (printable, at most 512 and 255 bytes)", i)
		}
	}
	if len(mc.Keys) > MaxAPIKeys {
		bad("machine keys: at most %d (revoke or let old ones end)", MaxAPIKeys)
	}
	seen := map[string]bool{}
	for i, k := range mc.Keys {
		if !apikey.ValidID(k.ID) || seen[k.ID] {
			bad("machine keys[%d].id %q: malformed or repeated", i, k.ID)
		}
		seen[k.ID] = true
		if k.ExpiresAt.IsZero() {
			bad("machine keys[%d]: a key must end", i)
		}
	}
}

func printable(s string) bool {
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// cloneMachine copies mc deeply enough that editing the copy's keys leaves mc as it is.
func cloneMachine(mc *Machine) *Machine {
	if mc == nil {
		return nil
	}
	cp := *mc
	cp.Keys = slices.Clone(mc.Keys)
	cp.Clients = slices.Clone(mc.Clients)
	return &cp
}

// APIKeyOwner is an API key's index entry: the machine it belongs to and the key's hash.
type APIKeyOwner struct {
	Org     string `json:"org"`
	Machine string `json:"machine"`
	Hash    string `json:"hash"`
	// Sponsor is the machine's sponsor when the key was made. A handover revokes every key,
	// so while the key is live it is the machine's sponsor: the request reads both
	// memberships at once (Cache.LookupMachine). The record is still the truth.
	Sponsor string `json:"sponsor,omitempty"`
}

// User is the owning machine's user key.
func (a *APIKeyOwner) User() string { return MachineUser(a.Org, a.Machine) }

// APIKeyOwner returns the index entry of API key id, or ErrNotFound. The record it names is
// the truth: a key the record does not list, or lists as ended, grants nothing.
func (s *Store) APIKeyOwner(ctx context.Context, id string) (*APIKeyOwner, error) {
	v, err := s.rdb.Get(ctx, s.keys.apiKeyIndex(id)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ErrNotFound
	case err != nil:
		return nil, s.unavailable("api key index", err)
	}
	var a APIKeyOwner
	if err := json.Unmarshal([]byte(v), &a); err != nil || !syntax.OrgID(a.Org) || !syntax.Name(a.Machine) || len(a.Hash) != 2*sha256.Size {
		return nil, fmt.Errorf("api key index %s: malformed entry", id)
	}
	return &a, nil
}

// LookupMachine returns organisation org and the memberships of machine and sponsor in it, in
// one round trip (one MGET: they share the organisation's hash tag); a membership is nil when
// absent.
func (s *Store) LookupMachine(ctx context.Context, org, machine, sponsor string) (*Org, *Membership, *Membership, error) {
	if !validUser(machine) || !validUser(sponsor) {
		return nil, nil, nil, fmt.Errorf("lookup machine %q: user: %w", org, ErrInvalid)
	}
	if !syntax.OrgID(org) {
		return nil, nil, nil, nil
	}
	vals, err := s.rdb.MGet(ctx, s.keys.org(org), s.keys.membership(org, machine), s.keys.membership(org, sponsor)).Result()
	if err != nil {
		return nil, nil, nil, s.unavailable("lookup machine "+org, err)
	}
	var o *Org
	var m, sp *Membership
	if err := decodeValue(vals[0], &o); err != nil {
		return nil, nil, nil, fmt.Errorf("lookup machine %s: org: %w", org, err)
	}
	if err := decodeValue(vals[1], &m); err != nil {
		return nil, nil, nil, fmt.Errorf("lookup machine %s: machine: %w", org, err)
	}
	if err := decodeValue(vals[2], &sp); err != nil {
		return nil, nil, nil, fmt.Errorf("lookup machine %s: sponsor: %w", org, err)
	}
	return o, m, sp, nil
}

// Machines returns org's machine identities (their memberships), sorted by id, each API key's
// LastUsed filled from the use records.
func (s *Store) Machines(ctx context.Context, org string) ([]Membership, error) {
	ms, err := s.Memberships(ctx, org)
	if err != nil {
		return nil, err
	}
	used, err := s.LastUsed(ctx, org)
	if err != nil {
		return nil, err
	}
	var out []Membership
	for _, m := range ms {
		if m.Machine == nil {
			continue
		}
		m.Machine = cloneMachine(m.Machine)
		for i := range m.Machine.Keys {
			m.Machine.Keys[i].LastUsed = used[keyUseField(m.Machine.Keys[i].ID)]
		}
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b Membership) int { return strings.Compare(a.Machine.ID, b.Machine.ID) })
	return out, nil
}

// keyUseField is the field of an org's use hash (lastUsed) that records API key id's last use:
// no user key has this form.
func keyUseField(id string) string { return "apikey/" + id }

// KeyUsed notes that API key id of a machine of org admitted a request at now (coalesced with
// the memberships' notes).
func (u *UseRecorder) KeyUsed(org, id string, now time.Time) { u.Used(org, keyUseField(id), now) }

// CreateMachine creates machine identity m (Org, Kind service, Roles, Grants, ExpiresAt,
// ReviewBy, Machine with ID, Name, Description and Sponsor; no keys) and returns it. In the
// same transaction it checks that the organisation exists and is active, that no membership
// holds the machine's user key yet (ErrExists), and that the sponsor holds a live membership
// of the organisation (ErrInvalid otherwise): a machine never starts without someone who
// answers for it. Keys come from CreateAPIKey.
func (o *Orgs) CreateMachine(ctx context.Context, m Membership, actor, reason string) (*Membership, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("create machine: %w", err)
	}
	if m.Machine == nil {
		return nil, fmt.Errorf("create machine: %w: no machine record", ErrInvalid)
	}
	m.Machine = cloneMachine(m.Machine)
	m.Machine.Keys = nil
	m.User, m.Kind, m.Status = MachineUser(m.Org, m.Machine.ID), KindService, MembershipActive
	normaliseMembership(&m, actor)
	if err := checkMembership(&m); err != nil {
		return nil, fmt.Errorf("create machine: %w", err)
	}
	orgKey, memKey := o.s.keys.org(m.Org), o.s.keys.membership(m.Org, m.User)
	sponsorKey := o.s.keys.membership(m.Org, m.Machine.Sponsor)
	err := o.atomically(ctx, "create machine "+m.Org, func(tx *redis.Tx) error {
		org, _, err := o.s.getOrg(ctx, tx, m.Org)
		if err != nil {
			return err
		}
		now := o.now()
		if !orgActive(org, now) {
			return fmt.Errorf("%w: org %s is not active", ErrInvalid, m.Org)
		}
		if old, _, err := o.s.getMembership(ctx, tx, m.Org, m.User); err != nil {
			return err
		} else if old != nil {
			return fmt.Errorf("machine %s/%s: %w", m.Org, m.Machine.ID, ErrExists)
		}
		sp, _, err := o.s.getMembership(ctx, tx, m.Org, m.Machine.Sponsor)
		if err != nil {
			return err
		}
		if !sponsorLive(sp, now) {
			return fmt.Errorf("%w: sponsor %s holds no live membership of %s", ErrInvalid, m.Machine.Sponsor, m.Org)
		}
		m.Created, m.Updated = now, now
		detail := map[string]string{"machine": m.Machine.ID, "sponsor": m.Machine.Sponsor}
		return o.writeMembership(ctx, tx, &m, "", audit.MachineCreated, actor, reason, detail)
	}, orgKey, memKey, sponsorKey)
	if err != nil {
		return nil, err
	}
	return &m, nil
}

// CreateAPIKey gives machine id of org a new key ending at expires and returns the key, shown
// only now, and its record. With replaces set it rotates that key: the replaced key's end
// moves to now+overlap (never later than it was), so clients can switch within the window. The
// machine must be active and its sponsor's membership live. The index entry, the record
// and the audit event are written in one transaction.
func (o *Orgs) CreateAPIKey(ctx context.Context, org, id string, expires time.Time, replaces string, overlap time.Duration, actor, reason string) (string, *APIKey, error) {
	op := "create api key " + org + "/" + id
	if err := checkActor(actor); err != nil {
		return "", nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !syntax.Name(id) {
		return "", nil, fmt.Errorf("%s: %w: org or machine id", op, ErrInvalid)
	}
	now := o.now()
	if !expires.After(now) {
		return "", nil, fmt.Errorf("%s: %w: expires must be in the future", op, ErrInvalid)
	}
	if overlap < 0 {
		return "", nil, fmt.Errorf("%s: %w: overlap must not be negative", op, ErrInvalid)
	}
	kid, key := apikey.New()
	idx := o.s.keys.apiKeyIndex(kid)
	k := APIKey{ID: kid, Created: now, CreatedBy: actor, ExpiresAt: utc(expires), Replaces: replaces}
	user := MachineUser(org, id)
	typ := audit.APIKeyCreated
	if replaces != "" {
		typ = audit.APIKeyRotated
	}
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		// The entry is written with the record, and only once everything is checked: a
		// refused key leaves nothing behind.
		if n, err := tx.Exists(ctx, idx).Result(); err != nil {
			return err
		} else if n > 0 {
			// 80 random bits collided: refuse rather than point an existing key elsewhere.
			return fmt.Errorf("%w: key id collision", ErrConflict)
		}
		now := o.now()
		m, before, err := o.liveMachine(ctx, tx, org, id, now)
		if err != nil {
			return err
		}
		if !m.ExpiresAt.IsZero() && k.ExpiresAt.After(m.ExpiresAt) {
			return fmt.Errorf("%w: the key would outlive its machine identity (which ends %s)", ErrInvalid, m.ExpiresAt.Format(time.RFC3339))
		}
		entry, err := json.Marshal(APIKeyOwner{Org: org, Machine: id, Hash: apikey.Hash(key), Sponsor: m.Machine.Sponsor})
		if err != nil {
			return err
		}
		detail := map[string]string{"machine": id, "key": kid, "expires": k.ExpiresAt.Format(time.RFC3339)}
		if replaces != "" {
			old := m.Machine.Key(replaces)
			if old == nil {
				return fmt.Errorf("key %s of %s/%s: %w", replaces, org, id, ErrNotFound)
			}
			if !old.Live(now) {
				return fmt.Errorf("%w: key %s has ended (create a new key instead)", ErrInvalid, replaces)
			}
			if end := now.Add(overlap); end.Before(old.ExpiresAt) {
				old.ExpiresAt = utc(end)
			}
			detail["replaces"], detail["replaced_ends"] = replaces, old.ExpiresAt.Format(time.RFC3339)
		}
		m.Machine.Keys = append(m.Machine.Keys, k)
		if len(m.Machine.Keys) > MaxAPIKeys {
			// Drop the oldest ended keys to make room; live ones are never dropped.
			m.Machine.Keys = dropEnded(m.Machine.Keys, len(m.Machine.Keys)-MaxAPIKeys, now)
		}
		m.Updated = now
		if err := checkMembership(m); err != nil {
			return err
		}
		return o.writeMembershipWith(ctx, tx, m, before, typ, actor, reason, detail,
			func(w *batch) { w.do("SET", idx, entry) }, invalKey(kid))
	}, o.s.keys.membership(org, user), idx)
	if err != nil {
		return "", nil, err
	}
	return key, &k, nil
}

// liveMachine reads, under tx's WATCH (the sponsor's membership added to it), machine id of
// org, which must be live with a live sponsor: what a new credential needs.
func (o *Orgs) liveMachine(ctx context.Context, tx *redis.Tx, org, id string, now time.Time) (*Membership, string, error) {
	m, before, err := o.s.getMembership(ctx, tx, org, MachineUser(org, id))
	if err != nil {
		return nil, "", err
	}
	if m == nil || m.Machine == nil {
		return nil, "", fmt.Errorf("machine %s/%s: %w", org, id, ErrNotFound)
	}
	if !live(m, now) {
		return nil, "", fmt.Errorf("%w: machine %s/%s is %s", ErrInvalid, org, id, m.Status)
	}
	if err := tx.Watch(ctx, o.s.keys.membership(org, m.Machine.Sponsor)).Err(); err != nil {
		return nil, "", err
	}
	sp, _, err := o.s.getMembership(ctx, tx, org, m.Machine.Sponsor)
	if err != nil {
		return nil, "", err
	}
	if !sponsorLive(sp, now) {
		return nil, "", fmt.Errorf("%w: the sponsor %s holds no live membership of %s", ErrInvalid, m.Machine.Sponsor, org)
	}
	return m, before, nil
}

// sponsorLive reports whether sp is a membership that grants, as its record says: active, not
// expired, not overdue for review.
func sponsorLive(sp *Membership, now time.Time) bool {
	return sp != nil && live(sp, now) && (sp.ReviewBy.IsZero() || now.Before(sp.ReviewBy))
}

// dropEnded removes up to n of the oldest keys that have ended.
func dropEnded(ks []APIKey, n int, now time.Time) []APIKey {
	out := ks[:0:0]
	for _, k := range ks {
		if n > 0 && !k.Live(now) {
			n--
			continue
		}
		out = append(out, k)
	}
	return out
}

// RevokeAPIKey ends key kid of machine id of org now. Revoking an ended key records nothing.
func (o *Orgs) RevokeAPIKey(ctx context.Context, org, id, kid, actor, reason string) (*APIKey, error) {
	var out APIKey
	_, err := o.updateMembership(ctx, "revoke api key", org, MachineUser(org, id), actor, reason, audit.APIKeyRevoked, func(m *Membership) error {
		if m.Machine == nil {
			return fmt.Errorf("machine %s/%s: %w", org, id, ErrNotFound)
		}
		k := m.Machine.Key(kid)
		if k == nil {
			return fmt.Errorf("key %s of %s/%s: %w", kid, org, id, ErrNotFound)
		}
		if !k.Revoked.IsZero() {
			out = *k
			return errNoChange
		}
		k.Revoked, k.RevokedBy = o.now(), actor
		out = *k
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &out, nil
}

// RevokeMachine revokes machine identity id of org and every key it holds, in one change.
func (o *Orgs) RevokeMachine(ctx context.Context, org, id, actor, reason string) (*Membership, error) {
	return o.updateMembership(ctx, "revoke machine", org, MachineUser(org, id), actor, reason, audit.MembershipRevoked, func(m *Membership) error {
		if m.Machine == nil {
			return fmt.Errorf("machine %s/%s: %w", org, id, ErrNotFound)
		}
		if m.Status == MembershipRevoked {
			return errNoChange
		}
		m.Status = MembershipRevoked
		m.Machine = endKeys(m.Machine, o.now(), actor)
		return nil
	})
}

// settleKeys ends the keys of a machine identity m that is revoked (by whatever change): a
// retired machine lists no live key. Other memberships are left as they are.
func settleKeys(m *Membership, now time.Time, actor string) {
	if m.Machine != nil && m.Status == MembershipRevoked {
		m.Machine = endKeys(m.Machine, now, actor)
	}
}

// endKeys returns a copy of mc with every key that has not ended revoked at now by actor.
func endKeys(mc *Machine, now time.Time, actor string) *Machine {
	mc = cloneMachine(mc)
	for i := range mc.Keys {
		if k := &mc.Keys[i]; k.Revoked.IsZero() {
			k.Revoked, k.RevokedBy = now, actor
		}
	}
	return mc
}

// suspendSponsored adds to the plan the suspension of the live machines of org that user
// sponsors, each with its keys revoked.
func (p *plan) suspendSponsored(org, user string) error {
	machines, err := p.o.sponsored(p.ctx, p.c, p.watch, org, user)
	if err != nil || len(machines) == 0 {
		return err
	}
	o, _, err := p.org(org)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	for _, m := range machines {
		nm := cloneMembership(m.m)
		nm.Status = MembershipSuspended
		nm.Machine = endKeys(m.m.Machine, p.now, p.actor)
		if err := p.putMembership(&m, nm, o, audit.MachineSuspended, "machine identity "+m.m.Machine.ID+" suspended, its keys revoked: its sponsor's membership ended"); err != nil {
			return err
		}
	}
	return nil
}

// Federated clients. The index pc:{c:<hash>}:client, by a hash of issuer and subject (so a key
// stays short whatever the issuer's URL), names the machine a client is bound to. As for API
// keys, the machine's record is the truth: the entry is written with the record, in one
// transaction, and a token whose client the record does not list grants nothing. Unlike a key's, an entry changes (a
// client unbound from one machine may be bound to another), so writing one announces it.

// ClientOwner is a federated client's index entry: the machine it is bound to.
type ClientOwner struct {
	Org     string `json:"org"`
	Machine string `json:"machine"`
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// User is the owning machine's user key.
func (c *ClientOwner) User() string { return MachineUser(c.Org, c.Machine) }

// ClientOwner returns the index entry of issuer's subject, or ErrNotFound.
func (s *Store) ClientOwner(ctx context.Context, issuer, subject string) (*ClientOwner, error) {
	v, err := s.rdb.Get(ctx, s.keys.clientIndex(issuer, subject)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, ErrNotFound
	case err != nil:
		return nil, s.unavailable("client index", err)
	}
	var c ClientOwner
	if err := json.Unmarshal([]byte(v), &c); err != nil || !syntax.OrgID(c.Org) || !syntax.Name(c.Machine) || c.Issuer != issuer || c.Subject != subject {
		return nil, fmt.Errorf("client index: malformed entry")
	}
	return &c, nil
}

// BindClient binds issuer's subject to machine id of org: tokens of that client are the
// machine from then on. A client is bound to one machine at most (ErrConflict when another
// live binding holds it); the machine must be active and its sponsor live.
func (o *Orgs) BindClient(ctx context.Context, org, id, issuer, subject, actor, reason string) (*Membership, error) {
	op := "bind client " + org + "/" + id
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !syntax.Name(id) || issuer == "" || subject == "" || len(issuer) > 512 || len(subject) > 255 || !printable(issuer) || !printable(subject) {
		return nil, fmt.Errorf("%s: %w: org, machine id, issuer or subject", op, ErrInvalid)
	}
	idx := o.s.keys.clientIndex(issuer, subject)
	entry, err := json.Marshal(ClientOwner{Org: org, Machine: id, Issuer: issuer, Subject: subject})
	if err != nil {
		return nil, err
	}
	user := MachineUser(org, id)
	var out *Membership
	err = o.atomically(ctx, op, func(tx *redis.Tx) error {
		// The entry and the record in one transaction: both keys are read under WATCH, so a
		// concurrent binding of the same client elsewhere makes one of the two retry.
		if err := tx.Watch(ctx, idx).Err(); err != nil {
			return err
		}
		if v, err := tx.Get(ctx, idx).Result(); err == nil {
			var cur ClientOwner
			if json.Unmarshal([]byte(v), &cur) == nil && (cur.Org != org || cur.Machine != id) {
				if held, _, err := o.s.getMembership(ctx, tx, cur.Org, cur.User()); err == nil && held != nil && held.Machine != nil &&
					held.Status != MembershipRevoked && held.Machine.Client(issuer, subject) != nil {
					return fmt.Errorf("%w: the client is bound to machine %s/%s; unbind it there first", ErrConflict, cur.Org, cur.Machine)
				}
			}
		} else if !errors.Is(err, redis.Nil) {
			return err
		}
		now := o.now()
		m, before, err := o.liveMachine(ctx, tx, org, id, now)
		if err != nil {
			return err
		}
		out = m
		if m.Machine.Client(issuer, subject) != nil {
			return nil // bound already
		}
		m.Machine.Clients = append(m.Machine.Clients, FederatedClient{Issuer: issuer, Subject: subject, Bound: now, BoundBy: actor})
		m.Updated = now
		if err := checkMembership(m); err != nil {
			return err
		}
		detail := map[string]string{"machine": id, "issuer": issuer, "subject": subject}
		return o.writeMembershipWith(ctx, tx, m, before, audit.MachineClientBound, actor, reason, detail,
			func(w *batch) { w.do("SET", idx, entry) }, invalClient(issuer, subject))
	}, o.s.keys.membership(org, user))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// UnbindClient removes the binding of issuer's subject from machine id of org: its tokens
// stop being the machine at once (the record first, in one transaction with the index entry).
func (o *Orgs) UnbindClient(ctx context.Context, org, id, issuer, subject, actor, reason string) (*Membership, error) {
	op := "unbind client " + org + "/" + id
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !syntax.Name(id) {
		return nil, fmt.Errorf("%w: %s", ErrInvalid, op)
	}
	idx := o.s.keys.clientIndex(issuer, subject)
	user := MachineUser(org, id)
	var out *Membership
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		m, before, err := o.s.getMembership(ctx, tx, org, user)
		if err != nil {
			return err
		}
		if m == nil || m.Machine == nil || m.Machine.Client(issuer, subject) == nil {
			return fmt.Errorf("binding of %s to %s/%s: %w", subject, org, id, ErrNotFound)
		}
		m.Machine.Clients = slices.DeleteFunc(m.Machine.Clients, func(c FederatedClient) bool { return c.Issuer == issuer && c.Subject == subject })
		m.Updated = o.now()
		out = m
		detail := map[string]string{"machine": id, "issuer": issuer, "subject": subject}
		return o.writeMembershipWith(ctx, tx, m, before, audit.MachineClientUnbound, actor, reason, detail,
			func(w *batch) { w.do("DEL", idx) }, invalClient(issuer, subject))
	}, o.s.keys.membership(org, user), idx)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// HandOver makes newSponsor the sponsor of machine id of org: a person with a live membership
// of the organisation. Every key the machine holds is revoked in the same change (its secrets
// were shown to the old sponsor, who may be leaving); its federated clients stay bound (their
// secrets are the customer's IdP's). Handing a machine to its own sponsor changes nothing.
func (o *Orgs) HandOver(ctx context.Context, org, id, newSponsor, actor, reason string) (*Membership, error) {
	op := "hand over machine " + org + "/" + id
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if !syntax.OrgID(org) || !syntax.Name(id) || !validUser(newSponsor) || IsMachineUser(newSponsor) {
		return nil, fmt.Errorf("%s: %w: org, machine id or sponsor (a person's user key)", op, ErrInvalid)
	}
	user := MachineUser(org, id)
	var out *Membership
	err := o.atomically(ctx, op, func(tx *redis.Tx) error {
		m, before, err := o.s.getMembership(ctx, tx, org, user)
		if err != nil {
			return err
		}
		if m == nil || m.Machine == nil {
			return fmt.Errorf("machine %s/%s: %w", org, id, ErrNotFound)
		}
		now := o.now()
		if m.Status == MembershipRevoked {
			return fmt.Errorf("%w: machine %s/%s is revoked", ErrInvalid, org, id)
		}
		out = m
		if m.Machine.Sponsor == newSponsor {
			return nil
		}
		if err := tx.Watch(ctx, o.s.keys.membership(org, newSponsor)).Err(); err != nil {
			return err
		}
		sp, _, err := o.s.getMembership(ctx, tx, org, newSponsor)
		if err != nil {
			return err
		}
		if !sponsorLive(sp, now) {
			return fmt.Errorf("%w: %s holds no live membership of %s", ErrInvalid, newSponsor, org)
		}
		old := m.Machine.Sponsor
		m.Machine = endKeys(m.Machine, now, actor)
		m.Machine.Sponsor = newSponsor
		if m.Status == MembershipSuspended {
			// Suspended with its former sponsor's end: a new sponsor takes it up again.
			m.Status = MembershipActive
		}
		m.Updated = now
		if err := checkMembership(m); err != nil {
			return err
		}
		detail := map[string]string{"machine": id, "sponsor": newSponsor, "previous_sponsor": old}
		return o.writeMembership(ctx, tx, m, before, audit.MachineHandedOver, actor, reason, detail)
	}, o.s.keys.membership(org, user))
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DisableUnusedKeys revokes every live API key, in every organisation, that has not admitted a
// request for unusedAfter (counted from its creation when it never did), as actor, and returns
// how many it revoked. Last uses are coalesced (UseRecorder), so a key is judged by its use at
// most an interval old; with unusedAfter in days, that is noise. Each key is its own change, so
// a run cut short leaves every key either revoked or as it was; running it again (on another
// replica, say) revokes only what is left.
func (o *Orgs) DisableUnusedKeys(ctx context.Context, unusedAfter time.Duration, actor string) (int, error) {
	if unusedAfter <= 0 {
		return 0, nil
	}
	_, n, err := o.sweepMachines(ctx, false, unusedAfter, actor)
	return n, err
}

// SuspendOrphans suspends, in every organisation, each live machine identity whose sponsor's
// membership has ended for good (revoked, expired, or gone), revoking its keys, as actor, and
// returns how many. It is what a sponsor's end does when no change announced it (an expiry):
// the decision refuses such machines from the moment the sponsor's membership ends
// (sponsor_inactive); this makes the record say so, so that a renewed sponsor membership does
// not silently revive keys nobody answered for meanwhile. A sponsor merely suspended or
// overdue for review is left alone: that may be undone.
func (o *Orgs) SuspendOrphans(ctx context.Context, actor string) (int, error) {
	n, _, err := o.sweepMachines(ctx, true, 0, actor)
	return n, err
}

// SweepMachines is SuspendOrphans and DisableUnusedKeys (with unusedAfter; 0 revokes no key)
// in one pass over every organisation's machines, as the periodic sweep runs them; a machine
// it suspends has its keys revoked with it. It returns how many machines it suspended and how
// many keys it revoked.
func (o *Orgs) SweepMachines(ctx context.Context, unusedAfter time.Duration, actor string) (suspended, revoked int, err error) {
	return o.sweepMachines(ctx, true, unusedAfter, actor)
}

func (o *Orgs) sweepMachines(ctx context.Context, orphans bool, unusedAfter time.Duration, actor string) (suspended, revoked int, err error) {
	orgs, err := o.s.OrgIDs(ctx)
	if err != nil {
		return 0, 0, err
	}
	for _, org := range orgs {
		ms, err := o.s.Machines(ctx, org)
		if err != nil {
			return suspended, revoked, err
		}
		for _, m := range ms {
			if orphans {
				done, err := o.suspendOrphan(ctx, &m, actor)
				if err != nil {
					return suspended, revoked, err
				}
				if done {
					suspended++
					continue
				}
			}
			if unusedAfter > 0 {
				n, err := o.revokeUnused(ctx, &m, unusedAfter, actor)
				revoked += n
				if err != nil {
					return suspended, revoked, err
				}
			}
		}
	}
	return suspended, revoked, nil
}

// suspendOrphan suspends machine m, as listed, when it is active and its sponsor's membership
// has ended for good, and reports whether it did.
func (o *Orgs) suspendOrphan(ctx context.Context, m *Membership, actor string) (bool, error) {
	if m.Status != MembershipActive {
		return false, nil
	}
	_, sp, err := o.s.Lookup(ctx, m.Org, m.Machine.Sponsor)
	if err != nil {
		return false, err
	}
	if now := o.now(); sp != nil && sp.Status != MembershipRevoked && (sp.ExpiresAt.IsZero() || now.Before(sp.ExpiresAt)) {
		return false, nil
	}
	sponsor := m.Machine.Sponsor
	_, err = o.updateMembership(ctx, "suspend orphaned machine", m.Org, m.User, actor, "its sponsor's membership ended", audit.MachineSuspended, func(cur *Membership) error {
		if cur.Machine == nil || cur.Status != MembershipActive || cur.Machine.Sponsor != sponsor {
			return errNoChange // changed meanwhile: decided again at the next sweep
		}
		cur.Status = MembershipSuspended
		cur.Machine = endKeys(cur.Machine, o.now(), actor)
		return nil
	})
	return err == nil, err
}

// revokeUnused revokes the live keys of machine m, as listed, unused for unusedAfter, and
// returns how many.
func (o *Orgs) revokeUnused(ctx context.Context, m *Membership, unusedAfter time.Duration, actor string) (int, error) {
	reason := "not used for " + unusedAfter.String() + " (lifecycle.api_keys.disable_unused_after)"
	now, n := o.now(), 0
	for _, k := range m.Machine.Keys {
		used := k.LastUsed
		if used.Before(k.Created) {
			used = k.Created
		}
		if !k.Live(now) || now.Sub(used) < unusedAfter {
			continue
		}
		if _, err := o.RevokeAPIKey(ctx, m.Org, m.Machine.ID, k.ID, actor, reason); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}
