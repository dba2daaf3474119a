package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Sign-in handoff storage, for package session (see session/handoff.go). Records are opaque
// bytes named by handles the caller derives from the secrets it gave the browser (hashes),
// never by the secrets themselves. Every method is safe for concurrent use, takes the context
// first, and returns an error wrapping ErrUnavailable when Redis does not answer.

// errNoHandoff is the miss of the handoff methods, an ErrNotFound: the request or code does
// not exist (unknown, expired or already used).
var errNoHandoff = fmt.Errorf("handoff %w", ErrNotFound)

// SaveHandoff stores a handoff request under handle h for ttl. An existing entry is never
// overwritten.
func (s *Store) SaveHandoff(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	return s.saveOnce(ctx, "save handoff request", s.keys.handoffRequest(h), rec, ttl)
}

// TakeHandoff returns and deletes the handoff request under h in one atomic step (GETDEL). A
// miss is ErrNotFound.
func (s *Store) TakeHandoff(ctx context.Context, h string) ([]byte, error) {
	return s.takeOnce(ctx, "take handoff request", s.keys.handoffRequest(h))
}

// SaveHandoffCode stores a handoff code under handle h for ttl. An existing entry is never
// overwritten.
func (s *Store) SaveHandoffCode(ctx context.Context, h string, rec []byte, ttl time.Duration) error {
	return s.saveOnce(ctx, "save handoff code", s.keys.handoffCode(h), rec, ttl)
}

// TakeHandoffCode returns and deletes the handoff code under h in one atomic step (GETDEL), so
// a code works once even when posted twice at the same moment. A miss is ErrNotFound.
func (s *Store) TakeHandoffCode(ctx context.Context, h string) ([]byte, error) {
	return s.takeOnce(ctx, "take handoff code", s.keys.handoffCode(h))
}

func (s *Store) saveOnce(ctx context.Context, op, key string, rec []byte, ttl time.Duration) error {
	if err := positive(op, ttl); err != nil {
		return err
	}
	ok, err := s.rdb.SetNX(ctx, key, rec, ttl).Result()
	if err != nil {
		return s.unavailable(op, err)
	}
	if !ok {
		return errors.New(op + ": handle already in use")
	}
	return nil
}

func (s *Store) takeOnce(ctx context.Context, op, key string) ([]byte, error) {
	b, err := s.rdb.GetDel(ctx, key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, errNoHandoff
	case err != nil:
		return nil, s.unavailable(op, err)
	}
	return b, nil
}

// JoinFamily adds the session handles hs to family and makes the family set live for ttl (the
// longest any member may live). Stale members (sessions ended on their own) are harmless:
// EndFamily deletes records, and deleting a missing record does nothing.
func (s *Store) JoinFamily(ctx context.Context, family string, ttl time.Duration, hs ...string) error {
	if err := positive("join session family", ttl); err != nil {
		return err
	}
	if len(hs) == 0 {
		return nil
	}
	fk := s.keys.sessionFamily(family)
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, fk, hs)
		expireAtLeast(ctx, p, fk, ttl)
		return nil
	})
	if err != nil {
		return s.unavailable("join session family", err)
	}
	return nil
}

// EndFamily deletes every session of family, removes them from the indexes of user and of
// (iss, sid) (every member is the same person's, from the same sign-in), announces each on the
// session invalidation channel, deletes the family set, and returns how many records existed.
func (s *Store) EndFamily(ctx context.Context, family, user, iss, sid string) (int, error) {
	fk := s.keys.sessionFamily(family)
	members, err := s.rdb.SMembers(ctx, fk).Result()
	if err != nil {
		return 0, s.unavailable("read session family", err)
	}
	var dels []*redis.IntCmd
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, h := range members {
			dels = append(dels, p.Del(ctx, s.keys.sessionRecord(h)))
			p.SRem(ctx, s.keys.userSessions(user), h)
			if sid != "" {
				p.SRem(ctx, s.keys.sidSessions(iss, sid), h)
			}
			p.Publish(ctx, s.keys.sessionInvalidations(), h)
		}
		p.Del(ctx, fk, s.keys.revalidation(family), s.keys.revalidationLease(family))
		return nil
	})
	if err != nil {
		return 0, s.unavailable("end session family", err)
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	return n, nil
}
