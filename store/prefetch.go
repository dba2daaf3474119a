package store

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/internal/invalcache"
	"github.com/portcullis-proxy/portcullis/internal/records"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Prefetch: one Redis round trip for a cold authorised request (docs/design.md, performance).
//
// A request on an organisation-scoped route needs its session record and then the organisation
// and membership records, and the second read needs the user named by the first. When neither
// is cached that would be two round trips. Instead, the proxy marks the request context before
// the session is loaded (Cache.WithPrefetch, naming the organisation when the route's source
// knows it before sign-in, or "the session's choice"); LoadSession then runs prefetchScript,
// which reads the session record and, in the same round trip, the organisation and membership
// of the user it names; and Cache.Lookup answers from that read when, and only when, it is asked
// for exactly the organisation and user that were read.
//
// The store reads two members of the otherwise opaque session record here, and only here:
// "user" (the person's key, store.UserKey) and "active_org" (the organisation chosen in the
// org picker), as package session writes them. A record the script cannot read costs the
// prefetch, never the session: LoadSession still returns the bytes, and Lookup reads Redis.
//
// Why this cannot hand one person another's membership: the prefetched records are used only
// by a Lookup for the same (org, user) pair they were read for, where user is what the script
// read from the record and Lookup's user is what package session decoded from the very bytes
// the script returned; the keys the script built are compared with the keys built here, so a
// difference between the Lua and Go escaping costs the prefetch, not correctness; a prefetch
// is used once; and it enters the Cache only if no invalidation arrived since before the read.

// prefetchScript reads a session record (KEYS[1]) and, when it names a user and an
// organisation is known (ARGV[2], or else the record's active_org), that organisation's record
// and the user's membership, building their keys under the prefix ARGV[1] (with its ":") as
// keys.go does. It reads keys it was not given: see keys.go.
//
// Reply (never a Lua boolean: under RESP3 those arrive as booleans, not nils):
//
//	{"absent"}                                          no session record
//	{"error: <why>", session}                           the record or its ids cannot be used
//	{"none", session, user}                             no organisation to read
//	{"ok", session, user, org, orgKey, memKey, "10", orgValue, memValue}
//
// where "10" says which of the two records exist ("1") or not ("0"; its value is then "").
var prefetchScript = redis.NewScript(luaEscape + `
local sess = redis.call('GET', KEYS[1])
if not sess then
  return {'absent'}
end
local ok, rec = pcall(cjson.decode, sess)
if not ok or type(rec) ~= 'table' then
  return {'error: session record is not a JSON object', sess}
end
local user = rec['user']
if type(user) ~= 'string' or #user == 0 or #user > 1024 or string.find(user, '[%z\1-\31\127]') then
  return {'error: session record has no valid user', sess}
end
local org = ARGV[2]
if org == '' then
  org = rec['active_org']
  if org == nil or org == cjson.null or org == '' then
    return {'none', sess, user}
  end
  if type(org) ~= 'string' then
    return {'error: session record has an active_org that is not a string', sess}
  end
end
if #org > 63 or not string.find(org, '^[a-z0-9%-]+$') then
  return {'error: organisation id is not valid', sess}
end
local tag = ARGV[1] .. '{o:' .. escape(org) .. '}'
local okey, mkey = tag .. ':org', tag .. ':mem:' .. escape(user)
local v = redis.call('MGET', okey, mkey)
return {'ok', sess, user, org, okey, mkey, (v[1] and '1' or '0') .. (v[2] and '1' or '0'), v[1] or '', v[2] or ''}
`)

// luaEscape is escape (keys.go) in Lua: RFC 3986 unreserved bytes stay, every other byte
// becomes %XX, upper case. The character class is spelt out rather than %w, which would follow
// the server's locale.
const luaEscape = `
local function escape(s)
  return (string.gsub(s, '[^A-Za-z0-9%-%._~]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
`

type prefetchKey struct{}

// prefetch is one request's promise to read its membership with its session. It lives in the
// request context under an unexported key; only this package reads or fills it.
type prefetch struct {
	c   *Cache
	org string // "" means the session record's active_org
	ran atomic.Bool
	res atomic.Pointer[prefetched]
}

// prefetched is what the script found. Records are shared and must not be modified.
type prefetched struct {
	err       error // the prefetch failed (the session read itself did not)
	org, user string
	o         *Org
	m         *Membership
	gen       invalcache.Gen // the cache's generation before the read
	at        time.Time      // the cache's clock before the read
}

// WithPrefetch returns ctx marked so that loading the request's session (Store.LoadSession,
// with this ctx or one derived from it) also reads the membership Lookup will be asked for, in
// the same round trip. org is the organisation the request acts for, or "" when it is the one
// chosen in the session (the record's active_org). An org id that cannot exist returns ctx as it
// is: Lookup answers those without Redis.
//
// Only a Lookup on c with ctx, for the same organisation and the user of the session read, uses
// the prefetched records, once; any other Lookup reads as usual. Without a session load (a
// session served from the session cache) nothing is prefetched and Lookup reads as usual.
func (c *Cache) WithPrefetch(ctx context.Context, org string) context.Context {
	if org != "" && !syntax.OrgID(org) {
		return ctx
	}
	return context.WithValue(ctx, prefetchKey{}, &prefetch{c: c, org: org})
}

func prefetchFrom(ctx context.Context) *prefetch {
	p, _ := ctx.Value(prefetchKey{}).(*prefetch)
	return p
}

// loadSessionPrefetch is LoadSession through prefetchScript, filling p.
func (s *Store) loadSessionPrefetch(ctx context.Context, h string, p *prefetch) ([]byte, error) {
	r := &prefetched{at: time.Now()}
	if p.c.c != nil {
		r.gen, r.at = p.c.c.Begin(), p.c.c.Now()
	}
	vals, err := prefetchScript.Run(ctx, s.rdb, []string{s.keys.sessionRecord(h)}, s.keys.prefix, p.org).Slice()
	var rerr redis.Error
	if err != nil && errors.As(err, &rerr) {
		// Redis answered, but not the script (scripting not allowed to this user, for
		// example): read the session alone; Lookup then reads as usual.
		p.res.Store(&prefetched{err: fmt.Errorf("prefetch script: %w", err)})
		return s.getSession(ctx, h)
	}
	if err != nil {
		return nil, s.unavailable("load session", err)
	}
	status, _ := vals[0].(string)
	if status == "absent" {
		return nil, errNoSession
	}
	if len(vals) < 2 {
		p.res.Store(&prefetched{err: fmt.Errorf("prefetch script: unexpected reply %q", status)})
		return s.getSession(ctx, h)
	}
	sess, ok := vals[1].(string)
	if !ok {
		p.res.Store(&prefetched{err: fmt.Errorf("prefetch script: unexpected session reply %T", vals[1])})
		return s.getSession(ctx, h)
	}
	switch status {
	case "ok":
		if err := s.fillPrefetch(r, p, vals); err != nil {
			r = &prefetched{err: err}
		}
		p.res.Store(r)
	case "none":
	default:
		p.res.Store(&prefetched{err: fmt.Errorf("prefetch script: %s", status)})
	}
	return []byte(sess), nil
}

// fillPrefetch checks and decodes an "ok" reply into r.
func (s *Store) fillPrefetch(r *prefetched, p *prefetch, vals []any) error {
	if len(vals) != 9 {
		return fmt.Errorf("prefetch script: %d values in the reply, want 9", len(vals))
	}
	var str [9]string
	for i, v := range vals {
		var ok bool
		if str[i], ok = v.(string); !ok {
			return fmt.Errorf("prefetch script: reply value %d is %T", i, v)
		}
	}
	user, org, okey, mkey, present := str[2], str[3], str[4], str[5], str[6]
	switch {
	case !validUser(user) || !syntax.OrgID(org) || (p.org != "" && org != p.org):
		return errors.New("prefetch script: read an unexpected organisation or user")
	case okey != s.keys.org(org) || mkey != s.keys.membership(org, user):
		// The Lua escape differs from escape: never trust records read under other keys.
		return fmt.Errorf("prefetch script: built keys %q and %q, want %q and %q",
			okey, mkey, s.keys.org(org), s.keys.membership(org, user))
	case len(present) != 2:
		return fmt.Errorf("prefetch script: presence %q", present)
	}
	if present[0] == '1' {
		r.o = new(Org)
		if err := records.Decode([]byte(str[7]), r.o); err != nil {
			return fmt.Errorf("prefetch org %s: decode: %w", org, err)
		}
	}
	if present[1] == '1' {
		r.m = new(Membership)
		if err := records.Decode([]byte(str[8]), r.m); err != nil {
			return fmt.Errorf("prefetch membership %s/%s: decode: %w", org, user, err)
		}
	}
	r.org, r.user = org, user
	return nil
}

// takePrefetched returns, once, what the session load of ctx read for exactly (org, user) on
// c. Any other pair, another Cache's prefetch, or none: false, and the caller reads Redis.
func (c *Cache) takePrefetched(ctx context.Context, org, user string) (*prefetched, bool) {
	p := prefetchFrom(ctx)
	if p == nil || p.c != c {
		return nil, false
	}
	r := p.res.Load()
	switch {
	case r == nil:
		return nil, false
	case r.err != nil:
		if c.prefetchWarned.CompareAndSwap(false, true) {
			c.log.Warn("cache: a membership could not be read with its session; such requests cost a second Redis round trip (logged once)",
				"error", r.err)
		}
		return nil, false
	case r.org != org || r.user != user:
		return nil, false
	}
	if !p.res.CompareAndSwap(r, nil) {
		return nil, false
	}
	return r, true
}
