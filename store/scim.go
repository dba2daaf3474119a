package store

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// SCIM provisioning records (package scim serves them): the users and groups an
// organisation's directory provisioned, each user bound to one person's membership. They live
// beside the organisation's memberships, under its hash tag, so one change (a user
// deactivated, a group's members) rewrites the records, the memberships they decide, the
// audit events and the invalidations in one transaction: a request that cannot be completed
// leaves nothing half-applied.

// SCIMUser is a user an organisation's SCIM client provisioned.
type SCIMUser struct {
	// ID is the server's id of the resource (random, never reused).
	ID  string `json:"id"`
	Org string `json:"org"`
	// User is the person (issuer|subject at the organisation's provider) whose membership
	// the record decides.
	User       string `json:"user"`
	UserName   string `json:"user_name"`
	ExternalID string `json:"external_id,omitempty"`
	Active     bool   `json:"active"`
	// Attributes are the client's other attributes (name, emails, displayName, extensions),
	// kept as sent and returned as they are; they decide nothing.
	Attributes json.RawMessage `json:"attributes,omitempty"`
	Created    time.Time       `json:"created"`
	Updated    time.Time       `json:"updated"`
}

// SCIMGroup is a group an organisation's SCIM client provisioned; its members are user ids.
type SCIMGroup struct {
	ID          string    `json:"id"`
	Org         string    `json:"org"`
	DisplayName string    `json:"display_name"`
	ExternalID  string    `json:"external_id,omitempty"`
	Members     []string  `json:"members,omitempty"`
	Created     time.Time `json:"created"`
	Updated     time.Time `json:"updated"`
}

// SCIMState is an organisation's SCIM records as one change reads and rewrites them.
type SCIMState struct {
	Users  map[string]*SCIMUser
	Groups map[string]*SCIMGroup
}

// NewSCIMID returns a fresh resource id.
func NewSCIMID() string {
	var b [15]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(b32.EncodeToString(b[:]))
}

// GroupsOf returns the groups whose members include user id, sorted by display name.
func (st *SCIMState) GroupsOf(id string) []*SCIMGroup {
	var out []*SCIMGroup
	for _, g := range st.Groups {
		if slices.Contains(g.Members, id) {
			out = append(out, g)
		}
	}
	slices.SortFunc(out, func(a, b *SCIMGroup) int { return strings.Compare(a.DisplayName, b.DisplayName) })
	return out
}

// SCIMFollow gives the membership a person's SCIM records decide: before and u are their user
// record before and after the change (before nil: new; u nil: deleted), groups the groups u
// is in, cur their membership (nil when none). It returns the membership to write, or nil to
// leave cur as it is; an error refuses the whole change.
type SCIMFollow func(before, u *SCIMUser, groups []*SCIMGroup, cur *Membership) (*Membership, error)

// SCIMUsers returns org's provisioned users, oldest first.
func (s *Store) SCIMUsers(ctx context.Context, org string) ([]SCIMUser, error) {
	st, err := s.scimState(ctx, s.rdb, org)
	if err != nil {
		return nil, err
	}
	out := make([]SCIMUser, 0, len(st.Users))
	for _, u := range st.Users {
		out = append(out, *u)
	}
	slices.SortFunc(out, func(a, b SCIMUser) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// SCIMGroups returns org's provisioned groups, oldest first.
func (s *Store) SCIMGroups(ctx context.Context, org string) ([]SCIMGroup, error) {
	st, err := s.scimState(ctx, s.rdb, org)
	if err != nil {
		return nil, err
	}
	out := make([]SCIMGroup, 0, len(st.Groups))
	for _, g := range st.Groups {
		out = append(out, *g)
	}
	slices.SortFunc(out, func(a, b SCIMGroup) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return out, nil
}

// SCIMUser returns org's user id, or ErrNotFound.
func (s *Store) SCIMUser(ctx context.Context, org, id string) (*SCIMUser, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("scim user: %w", ErrInvalid)
	}
	v, err := s.rdb.HGet(ctx, s.keys.scimUsers(org), id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("scim user %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, s.unavailable("scim user", err)
	}
	var u SCIMUser
	if err := json.Unmarshal([]byte(v), &u); err != nil {
		return nil, fmt.Errorf("decode scim user %s: %w", id, err)
	}
	return &u, nil
}

// SCIMGroup returns org's group id, or ErrNotFound.
func (s *Store) SCIMGroup(ctx context.Context, org, id string) (*SCIMGroup, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("scim group: %w", ErrInvalid)
	}
	v, err := s.rdb.HGet(ctx, s.keys.scimGroups(org), id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("scim group %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, s.unavailable("scim group", err)
	}
	var g SCIMGroup
	if err := json.Unmarshal([]byte(v), &g); err != nil {
		return nil, fmt.Errorf("decode scim group %s: %w", id, err)
	}
	return &g, nil
}

func (s *Store) scimState(ctx context.Context, c redis.Cmdable, org string) (*SCIMState, error) {
	if !syntax.OrgID(org) {
		return nil, fmt.Errorf("scim records of %q: %w", org, ErrInvalid)
	}
	st := &SCIMState{Users: map[string]*SCIMUser{}, Groups: map[string]*SCIMGroup{}}
	users, err := c.HGetAll(ctx, s.keys.scimUsers(org)).Result()
	if err != nil {
		return nil, s.unavailable("scim users", err)
	}
	groups, err := c.HGetAll(ctx, s.keys.scimGroups(org)).Result()
	if err != nil {
		return nil, s.unavailable("scim groups", err)
	}
	for id, v := range users {
		u := new(SCIMUser)
		if err := json.Unmarshal([]byte(v), u); err != nil {
			return nil, fmt.Errorf("decode scim user %s: %w", id, err)
		}
		st.Users[id] = u
	}
	for id, v := range groups {
		g := new(SCIMGroup)
		if err := json.Unmarshal([]byte(v), g); err != nil {
			return nil, fmt.Errorf("decode scim group %s: %w", id, err)
		}
		st.Groups[id] = g
	}
	return st, nil
}

// SCIMChange applies edit to org's SCIM records in one transaction. edit changes the state
// it is given (it may be called again when a concurrent change forces a retry, so it must
// only change its argument); its error is returned as is and nothing is written. Then every
// person whose user record was added, changed or deleted, or whose groups changed, has follow
// decide their membership; the records, those memberships (with their indexes and events),
// an event per changed record and the invalidations are written together. userName (without
// case), externalId and the person are each one user's only. Every event names actor.
func (o *Orgs) SCIMChange(ctx context.Context, org string, edit func(st *SCIMState) error, follow SCIMFollow, actor, reason string) error {
	if err := checkActor(actor); err != nil {
		return fmt.Errorf("scim change: %w", err)
	}
	if !syntax.OrgID(org) {
		return fmt.Errorf("scim change: org %q: %w", org, ErrInvalid)
	}
	usersKey, groupsKey, orgKey := o.s.keys.scimUsers(org), o.s.keys.scimGroups(org), o.s.keys.org(org)
	return o.atomically(ctx, "scim change "+org, func(tx *redis.Tx) error {
		if n, err := tx.Exists(ctx, orgKey).Result(); err != nil {
			return err
		} else if n == 0 {
			return fmt.Errorf("org %s: %w", org, ErrNotFound)
		}
		before, err := o.s.scimState(ctx, tx, org)
		if err != nil {
			return err
		}
		after := before.clone() // what edit may change
		if err := edit(after); err != nil {
			return &editError{err}
		}
		now := o.now()
		if err := checkSCIM(after); err != nil {
			return err
		}
		var b batch
		var events []audit.Event
		var inval []string
		// Persons to follow: every user whose record or groups changed, and the persons of
		// deleted users.
		type person struct {
			user          string
			before, after *SCIMUser
		}
		var persons []person
		// A user's groups as what decides roles: id and name (a rename changes roles too).
		groupsOf := func(st *SCIMState, id string) []string {
			var ids []string
			for _, g := range st.GroupsOf(id) {
				ids = append(ids, g.ID+" "+strings.ToLower(g.DisplayName))
			}
			return ids
		}
		for _, id := range sortedKeys(before.Users, after.Users) {
			bu, au := before.Users[id], after.Users[id]
			switch {
			case au == nil:
				b.do("HDEL", usersKey, id)
				events = append(events, audit.Event{Type: audit.SCIMUserDeleted, Actor: actor, Org: org, User: bu.User, Reason: reason,
					Detail: map[string]string{"scim_id": id, "user_name": bu.UserName}})
				persons = append(persons, person{bu.User, bu, nil})
			default:
				au.ID, au.Org = id, org
				if bu != nil && au.User != bu.User {
					return &editError{fmt.Errorf("user %s: %w: a provisioned user stays the same person", id, ErrInvalid)}
				}
				changed := bu == nil || !sameSCIMUser(bu, au)
				if changed {
					au.Updated = now
					if bu == nil {
						au.Created = now
					} else {
						au.Created = bu.Created
					}
					v, err := json.Marshal(au)
					if err != nil {
						return err
					}
					b.do("HSET", usersKey, id, v)
					typ := audit.SCIMUserChanged
					if bu == nil {
						typ = audit.SCIMUserCreated
					}
					events = append(events, audit.Event{Type: typ, Actor: actor, Org: org, User: au.User, Reason: reason,
						Detail: map[string]string{"scim_id": id, "user_name": au.UserName, "active": fmt.Sprint(au.Active)}})
				}
				if changed || !slices.Equal(groupsOf(before, id), groupsOf(after, id)) {
					persons = append(persons, person{au.User, bu, au})
				}
			}
		}
		for _, id := range sortedKeys(before.Groups, after.Groups) {
			bg, ag := before.Groups[id], after.Groups[id]
			switch {
			case ag == nil:
				b.do("HDEL", groupsKey, id)
				events = append(events, audit.Event{Type: audit.SCIMGroupDeleted, Actor: actor, Org: org, Reason: reason,
					Detail: map[string]string{"scim_id": id, "group": bg.DisplayName}})
			case bg == nil || !sameSCIMGroup(bg, ag):
				ag.ID, ag.Org, ag.Updated = id, org, now
				ag.Created = now
				if bg != nil {
					ag.Created = bg.Created
				}
				v, err := json.Marshal(ag)
				if err != nil {
					return err
				}
				b.do("HSET", groupsKey, id, v)
				typ := audit.SCIMGroupChanged
				if bg == nil {
					typ = audit.SCIMGroupCreated
				}
				events = append(events, audit.Event{Type: typ, Actor: actor, Org: org, Reason: reason,
					Detail: map[string]string{"scim_id": id, "group": ag.DisplayName, "members": fmt.Sprint(len(ag.Members))}})
			}
		}
		for _, p := range persons {
			if err := tx.Watch(ctx, o.s.keys.membership(org, p.user)).Err(); err != nil {
				return err
			}
			cur, curRaw, err := o.s.getMembership(ctx, tx, org, p.user)
			if err != nil {
				return err
			}
			var groups []*SCIMGroup
			if p.after != nil {
				groups = after.GroupsOf(p.after.ID)
			}
			var old *Membership
			if cur != nil {
				old = cloneMembership(cur)
			}
			m, err := follow(p.before, p.after, groups, cur)
			if err != nil {
				return &editError{err}
			}
			if m == nil {
				continue
			}
			m.Org, m.User = org, p.user
			if m.Email != "" {
				// Kept canonical, as Grant keeps it: lapses and offboarding compare it exactly.
				if e, err := canonicalEmail(m.Email); err == nil {
					m.Email = e
				} else {
					m.Email = ""
				}
			}
			normaliseMembership(m, actor)
			m.Created, m.Updated = now, now
			if old != nil {
				m.Created = old.Created
				carryCut(old, m, now)
			}
			if err := checkMembership(m); err != nil {
				return err
			}
			v, err := json.Marshal(m)
			if err != nil {
				return err
			}
			typ := audit.MembershipChanged
			switch {
			case old == nil:
				typ = audit.MembershipGranted
			case m.Status == MembershipRevoked && old.Status != MembershipRevoked:
				typ = audit.MembershipRevoked
			}
			o.putMembership(&b, m, v)
			events = append(events, audit.Event{Type: typ, Actor: actor, Org: org, User: m.User, Reason: reason, Before: raw(curRaw), After: v,
				Detail: map[string]string{"via": "scim"}})
			inval = append(inval, invalMembership(org, m.User))
		}
		if len(b.args) == 0 {
			return nil
		}
		return o.commit(ctx, tx, func(w *batch) { w.args = append(w.args, b.args...) }, events, inval...)
	}, usersKey, groupsKey, orgKey)
}

// clone is a copy of st whose records can be changed without changing st's.
func (st *SCIMState) clone() *SCIMState {
	c := &SCIMState{Users: make(map[string]*SCIMUser, len(st.Users)), Groups: make(map[string]*SCIMGroup, len(st.Groups))}
	for id, u := range st.Users {
		cu := *u
		c.Users[id] = &cu
	}
	for id, g := range st.Groups {
		cg := *g
		cg.Members = slices.Clone(g.Members)
		c.Groups[id] = &cg
	}
	return c
}

// checkSCIM refuses a state where a userName (without case), an externalId or a person is
// two users', or a group names a user that does not exist.
func checkSCIM(st *SCIMState) error {
	names, exts, persons, gnames := map[string]string{}, map[string]string{}, map[string]string{}, map[string]string{}
	for _, id := range sortedKeys(st.Users, nil) {
		u := st.Users[id]
		switch {
		case strings.TrimSpace(u.UserName) == "" || len(u.UserName) > 1024:
			return fmt.Errorf("scim user %s: userName: %w: required, at most 1024 bytes", id, ErrInvalid)
		case !validUser(u.User):
			return fmt.Errorf("scim user %s: %w: no person", id, ErrInvalid)
		}
		if prev, ok := names[strings.ToLower(u.UserName)]; ok {
			return fmt.Errorf("scim user %s: userName %q is %s's: %w", id, u.UserName, prev, ErrExists)
		}
		names[strings.ToLower(u.UserName)] = id
		if u.ExternalID != "" {
			if prev, ok := exts[u.ExternalID]; ok {
				return fmt.Errorf("scim user %s: externalId %q is %s's: %w", id, u.ExternalID, prev, ErrExists)
			}
			exts[u.ExternalID] = id
		}
		if prev, ok := persons[u.User]; ok {
			return fmt.Errorf("scim user %s: the person is %s already: %w", id, prev, ErrExists)
		}
		persons[u.User] = id
	}
	for _, id := range sortedKeys(st.Groups, nil) {
		g := st.Groups[id]
		if strings.TrimSpace(g.DisplayName) == "" || len(g.DisplayName) > 256 {
			return fmt.Errorf("scim group %s: displayName: %w: required, at most 256 bytes", id, ErrInvalid)
		}
		if prev, ok := gnames[strings.ToLower(g.DisplayName)]; ok {
			return fmt.Errorf("scim group %s: displayName %q is %s's: %w", id, g.DisplayName, prev, ErrExists)
		}
		gnames[strings.ToLower(g.DisplayName)] = id
		slices.Sort(g.Members)
		g.Members = slices.Compact(g.Members)
		for _, m := range g.Members {
			if st.Users[m] == nil {
				return fmt.Errorf("scim group %s: member %q: %w", id, m, ErrNotFound)
			}
		}
	}
	return nil
}

func sameSCIMUser(a, b *SCIMUser) bool {
	return a.User == b.User && a.UserName == b.UserName && a.ExternalID == b.ExternalID && a.Active == b.Active &&
		string(a.Attributes) == string(b.Attributes)
}

func sameSCIMGroup(a, b *SCIMGroup) bool {
	return a.DisplayName == b.DisplayName && a.ExternalID == b.ExternalID && slices.Equal(a.Members, b.Members)
}

// sortedKeys returns the keys of a and b, sorted, once each.
func sortedKeys[V any](a, b map[string]V) []string {
	var ks []string
	for k := range a {
		ks = append(ks, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			ks = append(ks, k)
		}
	}
	slices.Sort(ks)
	return ks
}
