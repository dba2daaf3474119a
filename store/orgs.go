package store

// Organisations, memberships and invitations: the records package authz decides on.
//
// Storage contract (all of this file, org_changes.go and member_invite.go):
//   - every method takes ctx first and honours its deadline;
//   - Store and Orgs are safe for concurrent use;
//   - absent records are nil (Lookup) or ErrNotFound (everything else); malformed input is
//     ErrInvalid with every problem listed; Redis not answering is ErrUnavailable, on which
//     callers fail closed. Errors name the operation and the ids, never a secret.
//
// Reads are methods of Store. Changes are methods of Orgs, which holds the audit stream, so no
// change can be made without its audit event (docs/design.md: every change goes through one code
// path).

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/internal/records"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Lookup returns organisation org and user's membership of it, in one round trip (both keys
// share org's hash tag, so one MGET). Either is nil when absent; that is not an error, since
// "not a member" is an answer authz needs. An org id that cannot exist (it comes from a Host
// header or a path, so anyone can send one) is absent too, without asking Redis; an empty or
// malformed user key is ErrInvalid.
//
// This is the per-request read; Cache puts a local cache in front of it.
func (s *Store) Lookup(ctx context.Context, org, user string) (*Org, *Membership, error) {
	if !validUser(user) {
		return nil, nil, fmt.Errorf("lookup %q: user: %w", org, ErrInvalid)
	}
	if !syntax.OrgID(org) {
		return nil, nil, nil
	}
	vals, err := s.rdb.MGet(ctx, s.keys.org(org), s.keys.membership(org, user)).Result()
	if err != nil {
		return nil, nil, s.unavailable("lookup "+org, err)
	}
	var o *Org
	var m *Membership
	if err := decodeValue(vals[0], &o); err != nil {
		return nil, nil, fmt.Errorf("lookup org %s: %w", org, err)
	}
	if err := decodeValue(vals[1], &m); err != nil {
		return nil, nil, fmt.Errorf("lookup membership %s/%s: %w", org, user, err)
	}
	return o, m, nil
}

// Org returns organisation id, or ErrNotFound.
func (s *Store) Org(ctx context.Context, id string) (*Org, error) {
	if !syntax.OrgID(id) {
		return nil, fmt.Errorf("load org %q: %w", id, ErrInvalid)
	}
	o, _, err := s.getOrg(ctx, s.rdb, id)
	if err != nil {
		return nil, fmt.Errorf("load org %s: %w", id, err)
	}
	return o, nil
}

// OrgsOf returns, sorted, the ids of the organisations in which user has a membership that is
// not revoked (active or suspended): the candidates of the org picker, which still checks each.
func (s *Store) OrgsOf(ctx context.Context, user string) ([]string, error) {
	if !validUser(user) {
		return nil, fmt.Errorf("orgs of %q: %w", user, ErrInvalid)
	}
	ids, err := s.rdb.SMembers(ctx, s.keys.userOrgs(user)).Result()
	if err != nil {
		return nil, s.unavailable("orgs of user", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// OrgByDomain returns the organisation that holds email domain domain (the last one to verify
// it), or ErrNotFound. The domain's current status is in the returned record's Domains: a
// lapsed domain still names its former holder, so the recovery guard can tell "lapsed" from
// "unknown".
func (s *Store) OrgByDomain(ctx context.Context, domain string) (*Org, error) {
	d, err := canonicalDomain(domain)
	if err != nil {
		return nil, fmt.Errorf("org by domain: %w", err)
	}
	id, err := s.rdb.Get(ctx, s.keys.domainOrg(d)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("org by domain %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, s.unavailable("org by domain", err)
	}
	return s.Org(ctx, id)
}

// VerifiedHolder returns the organisation that holds domain verified now, or nil when none
// does (a domain nobody holds, a lapsed or pending one, or one that is no domain at all).
func (s *Store) VerifiedHolder(ctx context.Context, domain string) (*Org, error) {
	o, err := s.OrgByDomain(ctx, domain)
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, ErrInvalid):
		return nil, nil
	case err != nil:
		return nil, err
	}
	d, _ := canonicalDomain(domain)
	if !o.VerifiedDomain(d) {
		// A lapsed domain still names its former holder, which must not count for it.
		return nil, nil
	}
	return o, nil
}

// Memberships returns every membership record of org (any status), sorted by user.
func (s *Store) Memberships(ctx context.Context, org string) ([]Membership, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("memberships of %q: %w", org, ErrInvalid)
	}
	users, err := s.rdb.SMembers(ctx, s.keys.orgMembers(org)).Result()
	if err != nil {
		return nil, s.unavailable("memberships of "+org, err)
	}
	if len(users) == 0 {
		return nil, nil
	}
	keys := make([]string, len(users))
	for i, u := range users {
		keys[i] = s.keys.membership(org, u)
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, s.unavailable("memberships of "+org, err)
	}
	out := make([]Membership, 0, len(vals))
	for i, v := range vals {
		var m *Membership
		if err := decodeValue(v, &m); err != nil {
			return nil, fmt.Errorf("membership %s/%s: %w", org, users[i], err)
		}
		if m != nil {
			out = append(out, *m)
		}
	}
	slices.SortFunc(out, func(a, b Membership) int { return strings.Compare(a.User, b.User) })
	return out, nil
}

// ReviewDue returns the memberships, of every organisation, that are not revoked and whose
// ReviewBy is set and falls before now+within (overdue ones included), earliest first.
func (s *Store) ReviewDue(ctx context.Context, now time.Time, within time.Duration) ([]Membership, error) {
	orgs, err := s.rdb.SMembers(ctx, s.keys.orgIDs()).Result()
	if err != nil {
		return nil, s.unavailable("review due", err)
	}
	slices.Sort(orgs)
	limit := now.Add(within)
	var out []Membership
	for _, org := range orgs {
		ms, err := s.Memberships(ctx, org)
		if err != nil {
			return nil, fmt.Errorf("review due: %w", err)
		}
		for _, m := range ms {
			if m.Status != MembershipRevoked && !m.ReviewBy.IsZero() && !m.ReviewBy.After(limit) {
				out = append(out, m)
			}
		}
	}
	slices.SortStableFunc(out, func(a, b Membership) int { return a.ReviewBy.Compare(b.ReviewBy) })
	return out, nil
}

// getOrg reads org id through c (the client or a transaction), returning its stored bytes too.
func (s *Store) getOrg(ctx context.Context, c redis.Cmdable, id string) (*Org, string, error) {
	raw, err := c.Get(ctx, s.keys.org(id)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", s.unavailable("get org", err)
	}
	var o Org
	if err := records.Decode([]byte(raw), &o); err != nil {
		return nil, "", fmt.Errorf("decode org: %w", err)
	}
	return &o, raw, nil
}

// getMembership reads a membership through c; nil, "" when absent.
func (s *Store) getMembership(ctx context.Context, c redis.Cmdable, org, user string) (*Membership, string, error) {
	raw, err := c.Get(ctx, s.keys.membership(org, user)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", nil
	}
	if err != nil {
		return nil, "", s.unavailable("get membership", err)
	}
	var m Membership
	if err := records.Decode([]byte(raw), &m); err != nil {
		return nil, "", fmt.Errorf("decode membership: %w", err)
	}
	return &m, raw, nil
}

// decodeValue decodes an MGET value into *dst, leaving it nil for an absent key.
func decodeValue[T any](v any, dst **T) error {
	if v == nil {
		return nil
	}
	str, ok := v.(string)
	if !ok {
		return fmt.Errorf("unexpected reply %T", v)
	}
	var t T
	if err := records.Decode([]byte(str), &t); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	*dst = &t
	return nil
}

// Validation. Ids that come from outside (hosts, headers, admin input) are checked before they
// become keys; hand-written so the per-request path allocates nothing.

// validUser accepts a user key (see UserKey): non-empty UTF-8 without control characters, at
// most 1024 bytes. Escaping makes any such value safe in a key.
func validUser(s string) bool {
	if len(s) == 0 || len(s) > 1024 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}

// canonicalDomain lower-cases d and drops one trailing dot, then checks it is an ASCII host name
// of at least two labels (IDNs as A-labels, "xn--…"): keys compare bytes, so "Acme.example."
// and "acme.example" must be one key.
func canonicalDomain(d string) (string, error) {
	// ASCII folding only: Unicode's would turn the Kelvin sign (U+212A) into "k", making
	// "\u212acme.example" the key of kcme.example; a non-ASCII byte is then refused below.
	c := strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, strings.TrimSuffix(d, "."))
	if len(c) == 0 || len(c) > 253 || !strings.Contains(c, ".") {
		return "", fmt.Errorf("domain %q: %w", d, ErrInvalid)
	}
	for label := range strings.SplitSeq(c, ".") {
		if len(label) == 0 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("domain %q: %w", d, ErrInvalid)
		}
		for i := 0; i < len(label); i++ {
			ch := label[i]
			if !('a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' || ch == '-') {
				return "", fmt.Errorf("domain %q: %w (IDNs as A-labels)", d, ErrInvalid)
			}
		}
	}
	return c, nil
}

// canonicalEmail returns the lower-case form of an email address, which invitations are keyed
// by, after checking it has one "@", a plausible local part and a valid domain. Lower-casing
// the local part matches how every mainstream provider treats addresses; an invitation is only
// a hint until the IdP vouches for the address (BindInvitations wants it verified).
func canonicalEmail(e string) (string, error) {
	local, domain, ok := strings.Cut(e, "@")
	if !ok || local == "" || len(local) > 64 || strings.Contains(domain, "@") || len(e) > 254 {
		return "", fmt.Errorf("email %q: %w", e, ErrInvalid)
	}
	for i := 0; i < len(local); i++ {
		if c := local[i]; c <= 0x20 || c >= 0x7f || strings.IndexByte(`"(),:;<>[\]`, c) >= 0 {
			return "", fmt.Errorf("email %q: %w", e, ErrInvalid)
		}
	}
	d, err := canonicalDomain(domain)
	if err != nil || strings.HasSuffix(domain, ".") {
		return "", fmt.Errorf("email %q: %w", e, ErrInvalid)
	}
	return strings.ToLower(local) + "@" + d, nil
}

func validKind(k string) bool {
	switch k {
	case KindEmployee, KindPartner, KindReseller, KindSupport, KindService:
		return true
	}
	return false
}

func validMembershipStatus(s string) bool {
	return s == MembershipActive || s == MembershipSuspended || s == MembershipRevoked
}

// utc normalises a time to UTC without its monotonic reading; zero stays zero.
func utc(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.Round(0).UTC()
}

// normaliseMembership puts m in its stored form: UTC times, sorted unique roles. The actor
// fills in GrantedBy where it is empty.
func normaliseMembership(m *Membership, actor string) {
	m.ExpiresAt, m.ReviewBy, m.Created, m.Updated = utc(m.ExpiresAt), utc(m.ReviewBy), utc(m.Created), utc(m.Updated)
	m.ElevationsAfter = utc(m.ElevationsAfter)
	m.Roles = slices.Compact(slices.Sorted(slices.Values(m.Roles)))
	if len(m.Roles) == 0 {
		m.Roles = nil
	}
	if m.GrantedBy == "" {
		m.GrantedBy = actor
	}
	m.Grants = slices.Clone(m.Grants)
	for i := range m.Grants {
		g := &m.Grants[i]
		g.ExpiresAt = utc(g.ExpiresAt)
		if g.GrantedBy == "" {
			g.GrantedBy = actor
		}
	}
	m.RoleGrants = slices.Clone(m.RoleGrants)
	for i := range m.RoleGrants {
		g := &m.RoleGrants[i]
		g.ExpiresAt, g.GrantedAt = utc(g.ExpiresAt), utc(g.GrantedAt)
	}
}

// carryCut keeps old's role-change cut-off for step-up elevations (ElevationsAfter) in m, its
// replacement, and moves it to now when an active m differs from old in kind or standing
// roles, or was not active before: an elevation earned under other roles, or before a
// suspension or revocation, does not carry over.
// Every path that writes a membership over an existing one calls it, after normaliseMembership.
func carryCut(old, m *Membership, now time.Time) {
	if old == nil {
		return
	}
	if old.ElevationsAfter.After(m.ElevationsAfter) {
		m.ElevationsAfter = old.ElevationsAfter
	}
	reactivated := old.Status != MembershipActive && m.Status == MembershipActive
	if m.Status == MembershipActive && (reactivated || old.Kind != m.Kind || !slices.Equal(old.Roles, m.Roles)) {
		m.ElevationsAfter = utc(now)
	}
}

// checkMembership reports every problem of m at once.
func checkMembership(m *Membership) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if !syntax.OrgID(m.Org) {
		bad("org %q: want [a-z0-9-]{1,63}", m.Org)
	}
	if !validUser(m.User) {
		bad("user %q: want a user key (issuer|subject)", m.User)
	}
	if IsMachineUser(m.User) || m.Machine != nil {
		checkMachine(m, bad)
	}
	if !validKind(m.Kind) {
		bad("kind %q: want employee, partner, reseller, support or service", m.Kind)
	}
	if !validMembershipStatus(m.Status) {
		bad("status %q: want active, suspended or revoked", m.Status)
	}
	for _, r := range m.Roles {
		if !syntax.Name(r) {
			bad("role %q: want [a-z0-9_-]{1,64}", r)
		}
	}
	seen := map[string]bool{}
	for i, g := range m.Grants {
		if !syntax.Name(g.Purpose) {
			bad("grants[%d].purpose %q: want [a-z0-9_-]{1,64}", i, g.Purpose)
		}
		if seen[g.Purpose] {
			bad("grants[%d].purpose %q: given twice", i, g.Purpose)
		}
		seen[g.Purpose] = true
	}
	for i, g := range m.RoleGrants {
		if !syntax.Name(g.Role) {
			bad("role_grants[%d].role %q: want [a-z0-9_-]{1,64}", i, g.Role)
		}
		if g.ExpiresAt.IsZero() {
			bad("role_grants[%d]: a role grant must end", i)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("membership %s/%s: %w: %w", m.Org, m.User, ErrInvalid, errors.Join(errs...))
}

// OrgIDs returns the ids of every organisation, sorted.
func (s *Store) OrgIDs(ctx context.Context) ([]string, error) {
	ids, err := s.rdb.SMembers(ctx, s.keys.orgIDs()).Result()
	if err != nil {
		return nil, s.unavailable("org ids", err)
	}
	slices.Sort(ids)
	return ids, nil
}

// AllOrgs returns every organisation, by id. One deleted between reading the ids and its
// record is left out.
func (s *Store) AllOrgs(ctx context.Context) ([]Org, error) {
	ids, err := s.OrgIDs(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]Org, 0, len(ids))
	for _, id := range ids {
		o, err := s.Org(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *o)
	}
	return out, nil
}
