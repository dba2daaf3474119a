package store

// What the recovery guard (proxy/recovery.go) asks Redis: who holds an email domain, which
// person an address or a portal username belongs to, and how many recovery requests an
// identifier and a client made in the current window. Redis not answering is ErrUnavailable
// everywhere, and the guard then blocks (fail closed).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// recoveryHash names an identifier, username or client address in a key without writing it
// there: hex SHA-256 of a kind label and the value, cut to 128 bits. It is not a secret (a
// known address can be hashed and looked up); it keeps key listings from being a list of
// addresses.
func recoveryHash(kind, v string) string {
	sum := sha256.Sum256([]byte("portcullis/recovery/" + kind + "\x00" + v))
	return hex.EncodeToString(sum[:16])
}

// PersonRecord is what the person-by-email and person-by-username indexes hold.
type PersonRecord struct {
	User string    `json:"user"`
	Seen time.Time `json:"seen,omitzero"`
	// Shared: someone else signed in with the same address before User did (two accounts at
	// the provider, or an address that changed hands), so the address does not name one
	// person; the recovery guard still goes by User, the latest, but an operator granting
	// access by address is refused (ResolveEmail).
	Shared bool `json:"shared,omitempty"`
}

// RecordPerson records that person user signed in with the address email at time at, so the
// recovery guard can find the person behind an address. Only a verified address is worth
// recording; the caller checks. The address is canonicalised as invitations are (lower case,
// ASCII domain); an address that does not canonicalise is ErrInvalid (the caller may ignore
// it: the guard then finds no person for it and blocks recovery). The latest sign-in wins.
// The record expires after ttl (0: never), so an address nobody signs in with any more stops
// counting as someone's.
func (s *Store) RecordPerson(ctx context.Context, email, user string, at time.Time, ttl time.Duration) error {
	e, err := canonicalEmail(email)
	if err != nil {
		return fmt.Errorf("record person: %w", err)
	}
	if !validUser(user) {
		return fmt.Errorf("record person: user: %w", ErrInvalid)
	}
	key := s.keys.personByEmail(recoveryHash("email", e))
	rec := PersonRecord{User: user, Seen: utc(at)}
	if prev, err := s.person(ctx, "record person", key); err == nil {
		rec.Shared = prev.Shared || prev.User != user
	} else if !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrInvalid) {
		return err // a corrupt record is replaced
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("record person: %w", err)
	}
	if err := s.rdb.Set(ctx, key, b, ttl).Err(); err != nil {
		return s.unavailable("record person", err)
	}
	// The domain, and only the domain, is kept for the person too: a recovery by username
	// must know which mailboxes the portal may send the reset to (MailDomains).
	_, domain, _ := strings.Cut(e, "@")
	if err := s.rdb.SAdd(ctx, s.keys.mailDomains(user), domain).Err(); err != nil {
		return s.unavailable("record person", err)
	}
	return nil
}

// MailDomains returns the email domains person user has signed in with (RecordPerson),
// sorted; none when nothing was recorded.
func (s *Store) MailDomains(ctx context.Context, user string) ([]string, error) {
	ds, err := s.rdb.SMembers(ctx, s.keys.mailDomains(user)).Result()
	if err != nil {
		return nil, s.unavailable("mail domains", err)
	}
	slices.Sort(ds)
	return ds, nil
}

// ResetRecoveryCount forgets the recovery requests counted for identifier (the guard's lookup
// key: an address lower-cased, a username as written) on route, in every window, so a person
// locked out by the per-identifier limit can ask again at once. It returns how many counters
// it removed. The clients' counters are left alone: they hold back a client, not a person.
func (s *Store) ResetRecoveryCount(ctx context.Context, route, identifier string) (int, error) {
	if route == "" || identifier == "" {
		return 0, fmt.Errorf("reset recovery count: %w", ErrInvalid)
	}
	pattern := s.keys.recoveryIdentifierCount(recoveryHash("identifier", identifier), route, 0)
	pattern = strings.TrimSuffix(pattern, "0") + "*"
	var keys []string
	iter := s.rdb.Scan(ctx, 0, pattern, 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		return 0, s.unavailable("reset recovery count", err)
	}
	if len(keys) == 0 {
		return 0, nil
	}
	n, err := s.rdb.Del(ctx, keys...).Result()
	if err != nil {
		return 0, s.unavailable("reset recovery count", err)
	}
	return int(n), nil
}

// ResolveEmail returns the one person who signed in with the verified address email:
// ErrNotFound when nobody did, ErrConflict when more than one person did.
func (s *Store) ResolveEmail(ctx context.Context, email string) (string, error) {
	p, err := s.PersonByEmail(ctx, email)
	if err != nil {
		return "", err
	}
	if p.Shared {
		return "", fmt.Errorf("resolve %s: more than one person signed in with it: %w", email, ErrConflict)
	}
	return p.User, nil
}

// PersonByEmail returns the person who last signed in with email (see RecordPerson), or
// ErrNotFound. An address that does not canonicalise is ErrNotFound too: nobody can have
// signed in with it.
func (s *Store) PersonByEmail(ctx context.Context, email string) (*PersonRecord, error) {
	e, err := canonicalEmail(email)
	if err != nil {
		return nil, fmt.Errorf("person by email: %w", ErrNotFound)
	}
	return s.person(ctx, "person by email", s.keys.personByEmail(recoveryHash("email", e)))
}

// SetUsername records that portal username name belongs to person user (user "" removes
// it), for routes whose recovery identifier is a username. Nothing fills this index
// automatically: the portal's usernames are its own; an operator (a future `portcullis
// admin` command) writes them. Usernames compare exactly, case included.
func (s *Store) SetUsername(ctx context.Context, name, user string) error {
	if name == "" || len(name) > 256 {
		return fmt.Errorf("set username: %w", ErrInvalid)
	}
	key := s.keys.personByUsername(recoveryHash("username", name))
	if user == "" {
		if err := s.rdb.Del(ctx, key).Err(); err != nil {
			return s.unavailable("set username", err)
		}
		return nil
	}
	if !validUser(user) {
		return fmt.Errorf("set username: user: %w", ErrInvalid)
	}
	b, _ := json.Marshal(PersonRecord{User: user})
	if err := s.rdb.Set(ctx, key, b, 0).Err(); err != nil {
		return s.unavailable("set username", err)
	}
	return nil
}

// PersonByUsername returns the person portal username name belongs to, or ErrNotFound.
func (s *Store) PersonByUsername(ctx context.Context, name string) (*PersonRecord, error) {
	if name == "" || len(name) > 256 {
		return nil, fmt.Errorf("person by username: %w", ErrNotFound)
	}
	return s.person(ctx, "person by username", s.keys.personByUsername(recoveryHash("username", name)))
}

func (s *Store) person(ctx context.Context, op, key string) (*PersonRecord, error) {
	raw, err := s.rdb.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%s: %w", op, ErrNotFound)
	}
	if err != nil {
		return nil, s.unavailable(op, err)
	}
	var p PersonRecord
	if err := json.Unmarshal([]byte(raw), &p); err != nil || !validUser(p.User) {
		return nil, fmt.Errorf("%s: decode: %w", op, ErrInvalid)
	}
	return &p, nil
}

// DomainHolder returns the organisation that holds domain or the nearest parent domain that
// has a holder ("mail.stale.example" is held by whoever holds "stale.example"), and the
// domain that matched. Every candidate is read in one round trip. ErrNotFound when none has
// ever been verified by anyone. As with OrgByDomain, a lapsed domain still names its former
// holder; the Org's Domains say what state the matched domain is in.
func (s *Store) DomainHolder(ctx context.Context, domain string) (*Org, string, error) {
	d, err := canonicalDomain(domain)
	if err != nil {
		return nil, "", fmt.Errorf("domain holder: %w", err)
	}
	var cands []string
	for c := d; strings.Contains(c, "."); {
		cands = append(cands, c)
		_, c, _ = strings.Cut(c, ".")
	}
	keys := make([]string, len(cands))
	for i, c := range cands {
		keys[i] = s.keys.domainOrg(c)
	}
	// One MGET would cross hash slots ({d:…} per domain); a pipeline of GETs works on a
	// cluster too and is still one round trip.
	cmds := make([]*redis.StringCmd, len(keys))
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range keys {
			cmds[i] = p.Get(ctx, k)
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", s.unavailable("domain holder", err)
	}
	for i, c := range cmds {
		id, err := c.Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, "", s.unavailable("domain holder", err)
		}
		o, err := s.Org(ctx, id)
		if err != nil {
			// An index naming an org that is gone: the domain has a past, and no present.
			if errors.Is(err, ErrNotFound) {
				return &Org{ID: id}, cands[i], nil
			}
			return nil, "", fmt.Errorf("domain holder: %w", err)
		}
		return o, cands[i], nil
	}
	return nil, "", fmt.Errorf("domain holder %s: %w", d, ErrNotFound)
}

// RecoveryCount is the number of recovery requests in the current window, this one included.
type RecoveryCount struct {
	Identifier, Client int64
	// Reset is when the window ends.
	Reset time.Time
}

// CountRecovery counts one recovery request on route for identifier (canonical; "" counts
// nothing for it) from client (an address) in the fixed window of length window that holds
// now, and returns both counts. Both INCRs and their EXPIREs go in one MULTI/EXEC, so a
// counter never exists without its expiry.
func (s *Store) CountRecovery(ctx context.Context, route, identifier, client string, window time.Duration, now time.Time) (RecoveryCount, error) {
	if window < time.Second || route == "" || client == "" {
		return RecoveryCount{}, fmt.Errorf("count recovery: %w", ErrInvalid)
	}
	win := now.UnixNano() / int64(window)
	reset := time.Unix(0, (win+1)*int64(window))
	ttl := reset.Sub(now) + time.Second
	ck := s.keys.recoveryClientCount(recoveryHash("client", client), route, win)
	var ik string
	if identifier != "" {
		ik = s.keys.recoveryIdentifierCount(recoveryHash("identifier", identifier), route, win)
	}
	var cc, ic *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		cc = p.Incr(ctx, ck)
		p.Expire(ctx, ck, ttl)
		if ik != "" {
			ic = p.Incr(ctx, ik)
			p.Expire(ctx, ik, ttl)
		}
		return nil
	})
	if err != nil {
		return RecoveryCount{}, s.unavailable("count recovery", err)
	}
	n := RecoveryCount{Client: cc.Val(), Reset: reset}
	if ic != nil {
		n.Identifier = ic.Val()
	}
	return n, nil
}
