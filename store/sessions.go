package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session storage, for package session. The records are opaque bytes here: the store neither
// reads nor judges them. Session records and started sign-ins are named by a handle the caller
// derives from the secret it gave the browser (a hash), never by the secret itself.
//
// Every method is safe for concurrent use, takes the context first, and returns an error
// wrapping ErrUnavailable when Redis does not answer.

// Misses of the session methods; both are ErrNotFound. errNoSession: the record does not
// exist (never created, expired, revoked); errNoLoginState: the sign-in state does not exist
// (unknown, expired or already used).
var (
	errNoSession    = fmt.Errorf("session %w", ErrNotFound)
	errNoLoginState = fmt.Errorf("sign-in state %w", ErrNotFound)
)

// SaveLogin stores a started sign-in under handle h for ttl. An existing entry is never
// overwritten (handles come from 256-bit random values; a collision means a bug).
func (s *Store) SaveLogin(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	if err := positive("save sign-in state", ttl); err != nil {
		return err
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.loginState(h), rec, ttl).Result()
	if err != nil {
		return s.unavailable("save sign-in state", err)
	}
	if !ok {
		return errors.New("save sign-in state: handle already in use")
	}
	return nil
}

// PeekLogin returns the sign-in stored under h without spending it, so a callback can check
// that it belongs to the browser (and session) presenting it before TakeLogin spends it: a
// callback replayed from another browser must not cancel the person's own. A miss is
// ErrNotFound.
func (s *Store) PeekLogin(ctx context.Context, h string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.loginState(h)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, errNoLoginState
	case err != nil:
		return nil, s.unavailable("read sign-in state", err)
	}
	return b, nil
}

// TakeLogin returns and deletes the sign-in stored under h in one atomic step (GETDEL), so a
// state can be used once even by concurrent callbacks. A miss is ErrNotFound.
func (s *Store) TakeLogin(ctx context.Context, h string) ([]byte, error) {
	b, err := s.rdb.GetDel(ctx, s.keys.loginState(h)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, errNoLoginState
	case err != nil:
		return nil, s.unavailable("take sign-in state", err)
	}
	return b, nil
}

// CreateSession stores a new session record under h for ttl and indexes it by user and, when
// sid is not empty, by (iss, sid). The indexes live as long as the longest session they may
// name (indexTTL); stale members of an index (sessions that expired on their own) are harmless,
// because revocation deletes records, and deleting a missing record does nothing.
//
// The keys have different hash tags, so this is a pipeline, not a transaction: if it fails
// half-way the caller gets an error and does not hand out the cookie, and whatever was written
// expires by its TTL.
func (s *Store) CreateSession(ctx context.Context, h, user, iss, sid string, rec []byte, ttl, indexTTL time.Duration) error {
	if err := positive("create session", min(ttl, indexTTL)); err != nil {
		return err
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		uk := s.keys.userSessions(user)
		p.SAdd(ctx, uk, h)
		expireAtLeast(ctx, p, uk, indexTTL)
		if sid != "" {
			sk := s.keys.sidSessions(iss, sid)
			p.SAdd(ctx, sk, h)
			expireAtLeast(ctx, p, sk, indexTTL)
		}
		// The record last: it is what makes the session usable.
		p.Set(ctx, s.keys.sessionRecord(h), rec, ttl)
		return nil
	})
	if err != nil {
		return s.unavailable("create session", err)
	}
	return nil
}

// IndexSession adds h to the session index of user as well, for indexTTL: a session of a
// person whose key is made of another claim than the provider's sub (subject_claim) is also
// found by that sub, which back-channel logout tokens and security events name.
func (s *Store) IndexSession(ctx context.Context, user, h string, indexTTL time.Duration) error {
	if err := positive("index session", indexTTL); err != nil {
		return err
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		uk := s.keys.userSessions(user)
		p.SAdd(ctx, uk, h)
		expireAtLeast(ctx, p, uk, indexTTL)
		return nil
	})
	if err != nil {
		return s.unavailable("index session", err)
	}
	return nil
}

// LoadSession returns the record stored under h, or ErrNotFound.
//
// When ctx was marked by Cache.WithPrefetch (for a Cache over s) and this is the first
// LoadSession with it, the organisation and membership of the record's user are read in the
// same round trip, for that Cache's Lookup (see prefetch.go). The result, errors included, is
// the same as without the mark.
func (s *Store) LoadSession(ctx context.Context, h string) ([]byte, error) {
	if p := prefetchFrom(ctx); p != nil && p.c.s == s && p.ran.CompareAndSwap(false, true) {
		return s.loadSessionPrefetch(ctx, h, p)
	}
	return s.getSession(ctx, h)
}

// getSession is LoadSession without a prefetch: one GET.
func (s *Store) getSession(ctx context.Context, h string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.sessionRecord(h)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, errNoSession
	case err != nil:
		return nil, s.unavailable("load session", err)
	}
	return b, nil
}

// UpdateSession replaces the record under h and its TTL, only if it still exists (SET XX): a
// session revoked meanwhile is not brought back. A missing record is ErrNotFound. The change is
// announced on the session invalidation channel in the same round trip, so every replica's
// session cache drops its copy (WatchSessions).
func (s *Store) UpdateSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	return s.setSession(ctx, "update session", h, rec, ttl, true)
}

// TouchSession is UpdateSession without the announcement: for writes that only slide the idle
// window (last seen), which other replicas need not hear about. A replica whose cached copy looks
// idle-expired reads the record again before ending it.
func (s *Store) TouchSession(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	return s.setSession(ctx, "touch session", h, rec, ttl, false)
}

func (s *Store) setSession(ctx context.Context, op, h string, rec []byte, ttl time.Duration, announce bool) error {
	if err := positive(op, ttl); err != nil {
		return err
	}
	var set *redis.StatusCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		set = p.SetArgs(ctx, s.keys.sessionRecord(h), rec, redis.SetArgs{Mode: "XX", TTL: ttl})
		if announce {
			p.Publish(ctx, s.keys.sessionInvalidations(), h)
		}
		return nil
	})
	if err == nil || errors.Is(err, redis.Nil) {
		err = set.Err()
	}
	switch {
	case errors.Is(err, redis.Nil):
		return errNoSession
	case err != nil:
		return s.unavailable(op, err)
	}
	return nil
}

// DeleteSession deletes the record under h and removes it from its indexes, and announces it on
// the session invalidation channel in the same round trip. Deleting a session that does not
// exist is not an error.
func (s *Store) DeleteSession(ctx context.Context, h, user, iss, sid string) error {
	_, err := s.EndSession(ctx, h, user, iss, sid)
	return err
}

// EndSession is DeleteSession, and reports whether the record still existed: of several
// requests ending one session at once, one learns it was the one (and audits the end).
func (s *Store) EndSession(ctx context.Context, h, user, iss, sid string) (bool, error) {
	var del, wait *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, s.keys.sessionRecord(h))
		p.SRem(ctx, s.keys.userSessions(user), h)
		if sid != "" {
			p.SRem(ctx, s.keys.sidSessions(iss, sid), h)
		}
		p.Publish(ctx, s.keys.sessionInvalidations(), h)
		wait = s.waitReplicas(ctx, p)
		return nil
	})
	if err != nil {
		return false, s.unavailable("delete session", err)
	}
	return del.Val() == 1, s.replicated("delete session", wait)
}

// UserSessions returns the records of user's sessions, by handle: the index read, then the
// records in one pipelined round trip. Sessions that ended without leaving the index (their
// record expired) are left out.
func (s *Store) UserSessions(ctx context.Context, user string) (map[string][]byte, error) {
	hs, err := s.rdb.SMembers(ctx, s.keys.userSessions(user)).Result()
	if err != nil {
		return nil, s.unavailable("read session index", err)
	}
	cmds := make([]*redis.StringCmd, len(hs))
	if len(hs) > 0 {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, h := range hs {
				cmds[i] = p.Get(ctx, s.keys.sessionRecord(h))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, s.unavailable("load sessions", err)
		}
	}
	out := make(map[string][]byte, len(hs))
	for i, h := range hs {
		if b, err := cmds[i].Bytes(); err == nil {
			out[h] = b
		}
	}
	return out, nil
}

// RevokeUser deletes every session of user and the index, and returns how many records existed.
func (s *Store) RevokeUser(ctx context.Context, user string) (int, error) {
	n, err := s.revokeIndex(ctx, s.keys.userSessions(user))
	if err != nil {
		return 0, fmt.Errorf("revoke sessions of user: %w", err)
	}
	return n, nil
}

// RevokeSID deletes every session created from the OIDC session sid of issuer iss, and returns
// how many records existed. The sessions' entries in their user's index become stale, which is
// harmless (see CreateSession).
func (s *Store) RevokeSID(ctx context.Context, iss, sid string) (int, error) {
	n, err := s.revokeIndex(ctx, s.keys.sidSessions(iss, sid))
	if err != nil {
		return 0, fmt.Errorf("revoke sessions of sid: %w", err)
	}
	return n, nil
}

// revokeIndex deletes the records an index set names, then the set, announcing each deleted
// handle on the session invalidation channel. A session added to the set
// between the two steps is also caught when its own record is deleted by a later revocation;
// sign-in and revocation of one person racing is not a case worth a script.
func (s *Store) revokeIndex(ctx context.Context, index string) (int, error) {
	members, err := s.rdb.SMembers(ctx, index).Result()
	if err != nil {
		return 0, s.unavailable("read session index", err)
	}
	var dels []*redis.IntCmd
	var wait *redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, h := range members {
			dels = append(dels, p.Del(ctx, s.keys.sessionRecord(h)))
			p.Publish(ctx, s.keys.sessionInvalidations(), h)
		}
		p.Del(ctx, index)
		wait = s.waitReplicas(ctx, p)
		return nil
	})
	if err != nil {
		return 0, s.unavailable("delete sessions", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, s.replicated("delete sessions", wait)
}

// MarkLogoutToken records the id of a back-channel logout token of issuer iss for ttl and
// reports whether it was new (SET NX). false means the token was seen before: a replay.
func (s *Store) MarkLogoutToken(ctx context.Context, iss, jti string, ttl time.Duration) (bool, error) {
	if err := positive("mark logout token", ttl); err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.logoutJTI(iss, jti), 1, ttl).Result()
	if err != nil {
		return false, s.unavailable("mark logout token", err)
	}
	return ok, nil
}

// MarkSecurityEvent records that the Security Event Token jti of issuer iss was received, for
// ttl; false means it was already (a replay).
func (s *Store) MarkSecurityEvent(ctx context.Context, iss, jti string, ttl time.Duration) (bool, error) {
	if err := positive("mark security event", ttl); err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.setJTI(iss, jti), 1, ttl).Result()
	if err != nil {
		return false, s.unavailable("mark security event", err)
	}
	return ok, nil
}

// expireAtLeastScript sets KEYS[1]'s TTL to ARGV[1] ms unless it already lives longer. An
// index of sessions lives as long as its longest-lived member: a session made late in
// another's life (a step-up's new id, a handoff) must not shorten it, or the other would
// drop out of it and survive offboarding and logout.
const expireAtLeastScript = `local t = redis.call('PTTL', KEYS[1])
if t >= 0 and t >= tonumber(ARGV[1]) then return 0 end
return redis.call('PEXPIRE', KEYS[1], ARGV[1])`

// expireAtLeast queues expireAtLeastScript for key on p.
func expireAtLeast(ctx context.Context, p redis.Pipeliner, key string, ttl time.Duration) {
	p.Eval(ctx, expireAtLeastScript, []string{key}, ttl.Milliseconds())
}

// positive refuses a TTL that is not positive: go-redis reads 0 as "no expiry", which would make
// a session or a single-use state live for ever.
func positive(op string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("%s: ttl %v must be positive", op, ttl)
	}
	return nil
}
