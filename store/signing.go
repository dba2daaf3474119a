package store

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// AssertionKey returns the development assertion signing key for alg ("ES256" or "EdDSA")
// kept in Redis, creating it with generate the first time. Every replica gets the same key:
// the first writer wins (SET NX) and the others read its key. Production setups use
// identity.assertion_key_file instead.
func (s *Store) AssertionKey(ctx context.Context, alg string, generate func() ([]byte, error)) ([]byte, error) {
	k := s.keys.assertionKey(alg)
	b, err := s.rdb.Get(ctx, k).Bytes()
	if err == nil {
		return b, nil
	}
	if !errors.Is(err, redis.Nil) {
		return nil, s.unavailable("get assertion key", err)
	}
	pemBytes, err := generate()
	if err != nil {
		return nil, err
	}
	if err := s.rdb.SetNX(ctx, k, pemBytes, 0).Err(); err != nil {
		return nil, s.unavailable("set assertion key", err)
	}
	b, err = s.rdb.Get(ctx, k).Bytes()
	if err != nil {
		return nil, s.unavailable("get assertion key", err)
	}
	return b, nil
}
