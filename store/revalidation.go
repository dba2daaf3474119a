package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Revalidation records, for package session: what a sign-in's family of sessions needs to
// check back with its provider (the refresh token, sealed by the caller with a key only the
// family's cookies open, and when it is next due). The records are opaque bytes here.

// errNoRevalidation: the family has no revalidation record (it never had one, it expired, or
// the family ended).
var errNoRevalidation = fmt.Errorf("revalidation record %w", ErrNotFound)

// SaveRevalidation stores the revalidation record of family for ttl, replacing any.
func (s *Store) SaveRevalidation(ctx context.Context, family string, rec []byte, ttl time.Duration) error {
	if err := positive("save revalidation", ttl); err != nil {
		return err
	}
	if err := s.rdb.Set(ctx, s.keys.revalidation(family), rec, ttl).Err(); err != nil {
		return s.unavailable("save revalidation", err)
	}
	return nil
}

// LoadRevalidation returns the revalidation record of family, or ErrNotFound.
func (s *Store) LoadRevalidation(ctx context.Context, family string) ([]byte, error) {
	b, err := s.rdb.Get(ctx, s.keys.revalidation(family)).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, errNoRevalidation
	case err != nil:
		return nil, s.unavailable("load revalidation", err)
	}
	return b, nil
}

// LeaseRevalidation makes holder the one that revalidates family for d, unless another holds
// the lease (SET NX PX), and reports whether holder now does. Providers rotate refresh tokens
// at each use and some revoke the whole grant when a spent one comes back, so two replicas
// must never redeem the same token at once.
func (s *Store) LeaseRevalidation(ctx context.Context, family, holder string, d time.Duration) (bool, error) {
	if err := positive("lease revalidation", d); err != nil {
		return false, err
	}
	ok, err := s.rdb.SetNX(ctx, s.keys.revalidationLease(family), holder, d).Result()
	if err != nil {
		return false, s.unavailable("lease revalidation", err)
	}
	return ok, nil
}

// finishRevalidation replaces the record (keeping its TTL), and releases the lease when ARGV[3]
// is "1", only while the caller still holds it: a holder whose lease ran out meanwhile writes
// nothing, since another may have redeemed the token since. KEYS: record, lease. ARGV: holder,
// record, release. Returns 1 written, 0 lease lost, -1 record gone (the family ended).
var finishRevalidation = redis.NewScript(`
if redis.call('GET', KEYS[2]) ~= ARGV[1] then return 0 end
if ARGV[3] == '1' then redis.call('DEL', KEYS[2]) end
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
return 1
`)

// Errors of FinishRevalidation: the lease ran out (ErrConflict), or the family's record is gone
// (ErrNotFound).
var errLeaseLost = fmt.Errorf("revalidation lease ran out: %w", ErrConflict)

// FinishRevalidation writes the record a revalidation's holder made, and releases its lease
// when release is set (a failed attempt keeps it, to space the next), only while holder still
// holds it. A lease that ran out is ErrConflict (nothing written), a record that is gone
// ErrNotFound.
func (s *Store) FinishRevalidation(ctx context.Context, family, holder string, rec []byte, release bool) error {
	rel := "0"
	if release {
		rel = "1"
	}
	n, err := finishRevalidation.Run(ctx, s.rdb, []string{s.keys.revalidation(family), s.keys.revalidationLease(family)}, holder, rec, rel).Int()
	switch {
	case err != nil:
		return s.unavailable("finish revalidation", err)
	case n == 0:
		return errLeaseLost
	case n < 0:
		return errNoRevalidation
	}
	return nil
}

// EndRevalidation deletes the family's revalidation record and lease.
func (s *Store) EndRevalidation(ctx context.Context, family string) error {
	if err := s.rdb.Del(ctx, s.keys.revalidation(family), s.keys.revalidationLease(family)).Err(); err != nil {
		return s.unavailable("end revalidation", err)
	}
	return nil
}
