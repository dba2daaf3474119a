package store

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Admin API tokens: bearer credentials of the administration API. A token is
// "pcadm_<id>_<secret>": the id is public (it names the token in listings and audit events),
// the secret 256 random bits shown once when the token is made. Redis keeps only the SHA-256
// of the whole token, so a dump of it holds no usable credential.

// TokenPrefix starts every admin API token, so secret scanners can match them.
const TokenPrefix = "pcadm_"

// Token is an admin API credential.
type Token struct {
	ID   string `json:"id"`
	Hash string `json:"hash,omitempty"`
	// Name says what the token is for.
	Name string `json:"name"`
	// Owner is the individual the token acts as, recorded as the actor of every change made
	// with it: an operator's name, or a person's user key (issuer|subject).
	Owner string `json:"owner"`
	// Operator tokens act with the platform operators' authority; the others act as Owner, a
	// person, with the authority their memberships give them (in Org only, when set).
	Operator bool   `json:"operator,omitempty"`
	Org      string `json:"org,omitempty"`
	// ReadOnly tokens may only read.
	ReadOnly bool `json:"read_only,omitempty"`
	// SCIM tokens authenticate an organisation's directory at its SCIM endpoint (package
	// scim), and nothing else: they are no admin API credential. Org is required.
	SCIM      bool      `json:"scim,omitempty"`
	Created   time.Time `json:"created"`
	Expires   time.Time `json:"expires"`
	CreatedBy string    `json:"created_by"`
	Revoked   time.Time `json:"revoked,omitzero"`
	// LastUsed is when the token last authenticated a call, as far as recorded (to the
	// minute: TokenUsed is coalesced); filled by Tokens, never stored in the record.
	LastUsed time.Time `json:"last_used,omitzero"`
}

// SCIMOwner is the owner of org's SCIM tokens: its directory, which no person is.
func SCIMOwner(org string) string { return "scim:" + org }

// Live reports whether t may be used at now.
func (t *Token) Live(now time.Time) bool { return t.Revoked.IsZero() && now.Before(t.Expires) }

// MaxTokenLifetime bounds a token's life: every credential has an end.
const MaxTokenLifetime = 366 * 24 * time.Hour

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// parseToken splits a token into its id and checks its shape; false for anything else.
func parseToken(s string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return "", false
	}
	id, secret, ok := strings.Cut(rest, "_")
	if !ok || len(id) != 16 || len(secret) != 52 {
		return "", false
	}
	for _, part := range []string{id, secret} {
		for i := 0; i < len(part); i++ {
			if c := part[i]; !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
				return "", false
			}
		}
	}
	return id, true
}

func tokenHash(s string) string {
	sum := sha256.Sum256([]byte("portcullis/admin-token\x00" + s))
	return hex.EncodeToString(sum[:])
}

// CreateToken makes a token like t (Name, Owner, Operator, Org, ReadOnly, Expires) and returns
// the token string, shown only now, and the record; actor made it, for reason.
func (o *Orgs) CreateToken(ctx context.Context, t Token, actor, reason string) (string, *Token, error) {
	if err := checkActor(actor); err != nil {
		return "", nil, fmt.Errorf("create token: %w", err)
	}
	now := o.now()
	var errs []error
	if strings.TrimSpace(t.Name) == "" || len(t.Name) > 128 {
		errs = append(errs, errors.New("name: required, at most 128 bytes"))
	}
	if !validUser(t.Owner) {
		errs = append(errs, errors.New("owner: required"))
	} else if IsMachineUser(t.Owner) {
		// A machine has API keys for the portal; the administration API is for people.
		errs = append(errs, errors.New("owner: a machine identity holds API keys, not admin API tokens"))
	}
	if t.Org != "" && !syntax.OrgID(t.Org) {
		errs = append(errs, fmt.Errorf("org %q: want [a-z0-9-]{1,63}", t.Org))
	}
	if t.Operator && t.Org != "" {
		errs = append(errs, errors.New("an operator token is not restricted to one org"))
	}
	if t.SCIM && (t.Org == "" || t.Operator || t.ReadOnly) {
		errs = append(errs, errors.New("a SCIM token is one organisation's, neither an operator's nor read-only"))
	}
	if !t.Expires.After(now) || t.Expires.Sub(now) > MaxTokenLifetime {
		errs = append(errs, fmt.Errorf("expires: must be in the future and at most %d days away", MaxTokenLifetime/(24*time.Hour)))
	}
	if len(errs) > 0 {
		return "", nil, fmt.Errorf("create token: %w: %w", ErrInvalid, errors.Join(errs...))
	}
	var idb [10]byte
	var secret [32]byte
	_, _ = rand.Read(idb[:])
	_, _ = rand.Read(secret[:])
	t.ID = strings.ToLower(b32.EncodeToString(idb[:]))
	s := TokenPrefix + t.ID + "_" + strings.ToLower(b32.EncodeToString(secret[:]))
	t.Hash, t.Created, t.CreatedBy, t.Revoked, t.Expires = tokenHash(s), now, actor, time.Time{}, utc(t.Expires)
	b, err := json.Marshal(t)
	if err != nil {
		return "", nil, err
	}
	pub := t
	pub.Hash = ""
	after, _ := json.Marshal(pub)
	err = o.atomically(ctx, "create token", func(tx *redis.Tx) error {
		return o.commit(ctx, tx, func(w *batch) {
			w.do("SET", o.s.keys.token(t.Hash), b)
			w.do("ZADD", o.s.keys.tokens(), float64(now.UnixMilli()), t.ID+" "+t.Hash)
		}, []audit.Event{{Type: audit.TokenCreated, Actor: actor, Org: t.Org, User: t.Owner, Reason: reason, After: after,
			Detail: map[string]string{"token": t.ID, "name": t.Name}}})
	})
	if err != nil {
		return "", nil, err
	}
	return s, &t, nil
}

// TokenBySecret returns the record of the token string s: ErrNotFound for a malformed,
// unknown or other token (whether it is live is for the caller to check with Live).
func (s *Store) TokenBySecret(ctx context.Context, secret string) (*Token, error) {
	id, ok := parseToken(secret)
	if !ok {
		return nil, fmt.Errorf("token: %w", ErrNotFound)
	}
	h := tokenHash(secret)
	v, err := s.rdb.Get(ctx, s.keys.token(h)).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	case err != nil:
		return nil, s.unavailable("load token", err)
	}
	var t Token
	if err := json.Unmarshal([]byte(v), &t); err != nil {
		return nil, fmt.Errorf("decode token %s: %w", id, err)
	}
	// The key is the hash already; comparing again in constant time costs nothing and keeps
	// a corrupted record from answering for another token.
	if subtle.ConstantTimeCompare([]byte(t.Hash), []byte(h)) != 1 || t.ID != id {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	return &t, nil
}

// TokenUsed records that token id authenticated a call at now. Callers coalesce (the admin
// API writes at most once a minute per token and process); the record is a report's hint, a
// token no one uses any more being one to revoke.
func (s *Store) TokenUsed(ctx context.Context, id string, now time.Time) error {
	if err := s.rdb.HSet(ctx, s.keys.tokensUsed(), id, strconv.FormatInt(now.Unix(), 10)).Err(); err != nil {
		return s.unavailable("token used", err)
	}
	return nil
}

// Tokens lists every token record (without hashes, with when each was last used), oldest
// first.
func (s *Store) Tokens(ctx context.Context) ([]Token, error) {
	refs, err := s.rdb.ZRange(ctx, s.keys.tokens(), 0, -1).Result()
	if err != nil {
		return nil, s.unavailable("tokens", err)
	}
	used, err := s.rdb.HGetAll(ctx, s.keys.tokensUsed()).Result()
	if err != nil {
		return nil, s.unavailable("tokens used", err)
	}
	var out []Token
	for _, ref := range refs {
		_, h, _ := strings.Cut(ref, " ")
		v, err := s.rdb.Get(ctx, s.keys.token(h)).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			return nil, s.unavailable("load token", err)
		}
		var t Token
		if err := json.Unmarshal([]byte(v), &t); err != nil {
			return nil, fmt.Errorf("decode token: %w", err)
		}
		t.Hash = ""
		if n, err := strconv.ParseInt(used[t.ID], 10, 64); err == nil {
			t.LastUsed = time.Unix(n, 0).UTC()
		}
		out = append(out, t)
	}
	return out, nil
}

// RevokeToken ends the token id at once; the record stays for the audit trail.
func (o *Orgs) RevokeToken(ctx context.Context, id, actor, reason string) (*Token, error) {
	if err := checkActor(actor); err != nil {
		return nil, fmt.Errorf("revoke token: %w", err)
	}
	refs, err := o.s.rdb.ZRange(ctx, o.s.keys.tokens(), 0, -1).Result()
	if err != nil {
		return nil, o.s.unavailable("tokens", err)
	}
	h := ""
	for _, ref := range refs {
		if rid, rh, _ := strings.Cut(ref, " "); rid == id {
			h = rh
		}
	}
	if h == "" {
		return nil, fmt.Errorf("token %s: %w", id, ErrNotFound)
	}
	key := o.s.keys.token(h)
	var out *Token
	err = o.atomically(ctx, "revoke token", func(tx *redis.Tx) error {
		v, err := tx.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return fmt.Errorf("token %s: %w", id, ErrNotFound)
		}
		if err != nil {
			return err
		}
		var t Token
		if err := json.Unmarshal([]byte(v), &t); err != nil {
			return fmt.Errorf("decode token %s: %w", id, err)
		}
		if !t.Revoked.IsZero() {
			out = &t
			return nil
		}
		t.Revoked = o.now()
		b, err := json.Marshal(t)
		if err != nil {
			return err
		}
		out = &t
		return o.commit(ctx, tx, func(w *batch) { w.do("SET", key, b) },
			[]audit.Event{{Type: audit.TokenRevoked, Actor: actor, Org: t.Org, User: t.Owner, Reason: reason, Detail: map[string]string{"token": t.ID}}})
	}, key)
	if err != nil {
		return nil, err
	}
	out.Hash = ""
	return out, nil
}
