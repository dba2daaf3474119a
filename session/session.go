package session

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/invalcache"
	"github.com/portcullis-proxy/portcullis/internal/records"
	"github.com/portcullis-proxy/portcullis/store"
)

// Cookie names. The __Host- prefix makes browsers refuse them unless Secure, Path=/ and without
// Domain, so a sibling subdomain cannot plant one (SESS-03).
const (
	CookieName      = "__Host-portcullis"
	LoginCookieName = "__Host-portcullis-login"
)

// record is a session as stored. It holds the ID token only as a logout hint; it is never shown.
type record struct {
	User          string            `json:"user"`
	Issuer        string            `json:"iss"`
	Subject       string            `json:"sub"`
	Email         string            `json:"email,omitempty"`
	EmailVerified bool              `json:"email_verified,omitempty"`
	Name          string            `json:"name,omitempty"`
	ACR           string            `json:"acr,omitempty"`
	AMR           []string          `json:"amr,omitempty"`
	AuthTime      time.Time         `json:"auth_time,omitzero"`
	SID           string            `json:"sid,omitempty"`
	Created       time.Time         `json:"created"`
	LastSeen      time.Time         `json:"last_seen"`
	Expires       time.Time         `json:"expires"`
	ActiveOrg     string            `json:"active_org,omitempty"`
	Elevations    []authz.Elevation `json:"elevations,omitempty"`
	IDToken       string            `json:"id_token,omitempty"`
	CSRFKey       []byte            `json:"csrf_key"`
	// Family names the sessions created from one sign-in in one browser: the sign-in host's
	// session and those handed off from it to organisation hosts (handoff.go). Signing out of
	// one ends them all. "" in records older than the handoff: the session's own handle.
	Family string `json:"family,omitempty"`
	// HandedOff is set on a session created by a handoff: the sign-in happened on another host.
	HandedOff bool `json:"handed_off,omitempty"`
	// Agent is the browser's User-Agent at sign-in (agentOf), shown to the person among
	// their sessions; "" in older records.
	Agent string `json:"agent,omitempty"`
	// Host is the host name the session was made for.
	Host string `json:"host,omitempty"`
	// OIDCSub is the ID token's sub when the person's key is made of another claim
	// (subject_claim): the session is indexed under it too, so a back-channel logout or a
	// security event naming the sub finds it. "" when Subject is the sub.
	OIDCSub string `json:"oidc_sub,omitempty"`
	// FamilyKey is the key the family's refresh token is sealed with (revalidate.go), itself
	// sealed under a key derived from this session's cookie; RevalidateAt when the session
	// next checks back with its provider. Both empty when its provider does not revalidate.
	FamilyKey    []byte    `json:"fk,omitempty"`
	RevalidateAt time.Time `json:"reval_at,omitzero"`
}

// familyOf is the family of the session rec stored under h.
func familyOf(rec *record, h string) string {
	if rec.Family != "" {
		return rec.Family
	}
	return h
}

// Session is the view of a signed-in session that Admit puts in the request context: identity
// and timing, never the session id or tokens. FromContext hands out a copy, so changing it
// changes nothing stored or seen by others.
type Session struct {
	// UserKey is the person's stable key, store.UserKey(Issuer, Subject).
	UserKey string
	// Issuer and Subject are the ID token's "iss" and "sub".
	Issuer, Subject string
	// Email is an attribute, never an identity; trust it only with EmailVerified.
	Email         string
	EmailVerified bool
	Name          string
	// ACR, AMR and AuthTime are the ID token's at sign-in; empty or zero when absent.
	ACR      string
	AMR      []string
	AuthTime time.Time
	// SID is the provider's session id; "" when absent.
	SID string
	// Created is the sign-in; Expires the absolute end (idle timeout may end it earlier).
	Created, Expires time.Time
	// ActiveOrg is the organisation the person chose to act for; "" when none.
	ActiveOrg string
	// Elevations are the step-ups the session holds (authz.Elevated checks them against a
	// route's step_up); switching the active organisation drops those of other organisations.
	Elevations []authz.Elevation
	// LogID names the session in logs and audit events: a prefix of its handle, which
	// cannot be used to act as the session.
	LogID string
}

func viewOf(r *record) Session {
	return Session{
		UserKey: r.User, Issuer: r.Issuer, Subject: r.Subject, Email: r.Email, EmailVerified: r.EmailVerified,
		Name: r.Name, ACR: r.ACR, AMR: r.AMR, AuthTime: r.AuthTime, SID: r.SID, Created: r.Created,
		Expires: r.Expires, ActiveOrg: r.ActiveOrg, Elevations: r.Elevations,
	}
}

type ctxKey struct{}

// admission is what Admit puts in a request's context: the session's view and the record it
// was loaded as.
type admission struct {
	view Session
	l    *loaded
}

// admissionOf is what Admit put in ctx.
func admissionOf(ctx context.Context) (*admission, bool) {
	a, ok := ctx.Value(ctxKey{}).(*admission)
	return a, ok
}

// Admitted returns the session Admit put in ctx, not a copy: the caller must not modify it or
// anything it refers to (its AMR and elevations are the session cache's). It is for the
// proxy's request path, which reads it on every request; FromContext returns a copy.
func Admitted(ctx context.Context) (*Session, bool) {
	a, ok := admissionOf(ctx)
	if !ok {
		return nil, false
	}
	return &a.view, true
}

// FromContext returns a copy of the session Admit put in ctx.
func FromContext(ctx context.Context) (*Session, bool) {
	a, ok := admissionOf(ctx)
	if !ok {
		return nil, false
	}
	c := a.view
	c.AMR, c.Elevations = slices.Clone(c.AMR), slices.Clone(c.Elevations)
	for i := range c.Elevations {
		c.Elevations[i].AMR = slices.Clone(c.Elevations[i].AMR)
	}
	return &c, true
}

// newSecret returns 256 random bits, base64url without padding (43 characters).
func newSecret() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// validSecret reports whether v looks like a value newSecret made: 43 characters of the
// base64url alphabet (which is what unpadded base64url of 32 bytes decodes from); anything else
// is not looked up at all. It runs on every request, so it checks rather than decodes.
func validSecret(v string) bool {
	if len(v) != 43 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// handle is what storage knows a secret by: SHA-256, so a Redis dump holds no usable cookie.
// It runs on every request: a secret of newSecret's size is hashed from a stack copy, and the
// result encoded in place, so the returned string is the one allocation.
func handle(secret string) string {
	var sum [sha256.Size]byte
	if len(secret) <= 64 {
		var buf [64]byte
		sum = sha256.Sum256(buf[:copy(buf[:], secret)])
	} else {
		sum = sha256.Sum256([]byte(secret))
	}
	var out [43]byte // base64.RawURLEncoding.EncodedLen(sha256.Size)
	base64.RawURLEncoding.Encode(out[:], sum[:])
	return string(out[:])
}

// logID is a short, non-reversible tag for a session in logs.
func logID(h string) string { return h[:8] }

// csrfToken binds a logout form to one session: an HMAC of the session's handle under a key
// kept in that session's record.
func csrfToken(key []byte, h string) string { return csrfPurpose(key, h, "logout") }

// csrfFor is the token of l's session for forms of purpose; tokens of different purposes differ.
func csrfFor(l *loaded, purpose string) string { return csrfPurpose(l.rec.CSRFKey, l.h, purpose) }

func csrfPurpose(key []byte, h, purpose string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(purpose + "\x00" + h))
	return base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

// errAmbiguousCookie: two different session cookies; never guess which one counts (SESS-03).
var errAmbiguousCookie = errors.New("several different session cookies")

// sessionCookie returns the one value of the exact cookie name, "" when absent. Only the exact
// name counts: __host-portcullis or portcullis are other cookies.
func sessionCookie(r *http.Request, name string) (string, error) {
	// What net/http's CookiesNamed finds, read in place: it allocates every cookie of the
	// header, on every request. name is a token, so comparing it is the token check.
	lines := r.Header["Cookie"]
	n := 0
	for _, line := range lines {
		n += strings.Count(line, ";") + 1
	}
	if n > maxCookies {
		return "", nil // net/http reads none then
	}
	v := ""
	for _, line := range lines {
		line = textproto.TrimString(line)
		for len(line) > 0 {
			var part string
			part, line, _ = strings.Cut(line, ";")
			k, val, _ := strings.Cut(textproto.TrimString(part), "=")
			if textproto.TrimString(k) != name {
				continue
			}
			val, ok := cookieValue(val)
			if !ok {
				continue
			}
			if v != "" && val != v {
				return "", errAmbiguousCookie
			}
			v = val
		}
	}
	return v, nil
}

// maxCookies is net/http's bound on the cookies of a request (its default; GODEBUG
// httpcookiemaxnum is not read here): past it, it reads none.
const maxCookies = 3000

// cookieValue is a cookie-value as net/http reads it (RFC 6265): quotes stripped, and only
// the bytes it accepts.
func cookieValue(raw string) (string, bool) {
	if len(raw) > 1 && raw[0] == '"' && raw[len(raw)-1] == '"' {
		raw = raw[1 : len(raw)-1]
	}
	for i := 0; i < len(raw); i++ {
		if b := raw[i]; b < 0x20 || b >= 0x7f || b == '"' || b == ';' || b == '\\' {
			return "", false
		}
	}
	return raw, true
}

// loaded is a session read from storage for one request. secret is the cookie it was loaded
// by (which opens its family key), "" when loaded by handle.
type loaded struct {
	h, secret string
	rec       *record
}

// errNoSession: no usable session (absent, malformed, unknown, expired).
var errNoSession = errors.New("no session")

// load finds and checks the session of r. Errors: errAmbiguousCookie, errNoSession, or a
// storage error (wrapping store.ErrUnavailable). touch writes last-seen when it is stale.
//
// A record in the session cache is used without asking storage while it is fresh, inside both
// timeouts and not due for a last-seen write; otherwise the record is read again, so a cached
// copy never ends a session another replica kept alive, and last-seen is written from the
// stored record, not from a copy.
func (m *Manager) load(ctx context.Context, r *http.Request, touch bool) (*loaded, error) {
	v, err := sessionCookie(r, CookieName)
	if err != nil {
		return nil, err
	}
	if !validSecret(v) {
		return nil, errNoSession
	}
	h := handle(v)
	start := m.now()
	var gen invalcache.Gen
	if c := m.cache; c != nil {
		if rec, ok := c.Get(h); ok && m.live(rec, start) && !(touch && m.touchDue(rec, start)) {
			return &loaded{h: h, secret: v, rec: rec}, nil
		}
		gen = c.Begin()
	}
	b, err := m.st.LoadSession(ctx, h)
	if errors.Is(err, store.ErrNotFound) {
		return nil, errNoSession
	}
	if err != nil {
		return nil, err
	}
	rec := new(record)
	if err := records.Decode(b, rec); err != nil {
		m.log.Error("unreadable session record; ending it", slog.String("session", logID(h)), slog.String("error", err.Error()))
		_ = m.st.DeleteSession(ctx, h, "", "", "")
		return nil, errNoSession
	}
	now := m.now()
	if !m.live(rec, now) {
		// Ended by time: delete now rather than wait for the TTL, best effort.
		if ended, err := m.st.EndSession(ctx, h, rec.User, rec.Issuer, rec.SID); err != nil {
			m.log.Warn("could not delete an expired session", slog.String("session", logID(h)), slog.String("error", err.Error()))
		} else if ended {
			// Only the request that deleted it audits the end: others ending it at the same
			// moment found it gone.
			why := "idle_timeout"
			if !now.Before(rec.Expires) {
				why = "absolute_timeout"
			}
			m.recordEvent(ctx, audit.Event{Type: audit.SessionEnded, User: rec.User, Reason: why,
				Detail: map[string]string{"session": logID(h), "sessions_ended": "1"}})
		}
		return nil, errNoSession
	}
	if touch && m.touchDue(rec, now) {
		rec.LastSeen = now
		b, err := json.Marshal(rec)
		if err != nil {
			return nil, fmt.Errorf("encode session: %w", err)
		}
		// Not announced: sliding the idle window changes nothing other replicas decide on.
		if err := m.touch(ctx, h, b, m.ttl(rec, now)); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return nil, errNoSession // revoked meanwhile
			}
			return nil, err
		}
	}
	if m.cache != nil {
		m.cache.Put(h, rec, start, gen)
	}
	return &loaded{h: h, secret: v, rec: rec}, nil
}

// live reports whether rec is within both its absolute and its idle timeout at now.
func (m *Manager) live(rec *record, now time.Time) bool {
	return now.Before(rec.Expires) && now.Before(rec.LastSeen.Add(m.sc.IdleTimeout.D()))
}

// touchDue reports whether rec's last-seen is stale enough to be written.
func (m *Manager) touchDue(rec *record, now time.Time) bool {
	return now.Sub(rec.LastSeen) >= m.sc.TouchInterval.D()
}

// ttl is how long storage keeps rec: until the earlier of its idle and absolute ends.
func (m *Manager) ttl(rec *record, now time.Time) time.Duration {
	end := min(rec.Expires.UnixNano(), rec.LastSeen.Add(m.sc.IdleTimeout.D()).UnixNano())
	return time.Duration(end - now.UnixNano())
}

// cookie builds one of our cookies with the attributes both setting and expiring must share,
// so a browser matches them (SESS-01).
func cookie(name, value string, maxAge int) *http.Cookie {
	return &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, Secure: true, HttpOnly: true, SameSite: http.SameSiteLaxMode}
}

// expire deletes a cookie in the browser.
func expire(w http.ResponseWriter, name string) { http.SetCookie(w, cookie(name, "", -1)) }

// createSession stores rec (encoded as b) under h with its indexes: the person's, the
// provider session's (sid), and, for a person keyed by another claim than sub, the sub's.
func (m *Manager) createSession(ctx context.Context, h string, rec *record, b []byte, ttl, indexTTL time.Duration) error {
	if rec.OIDCSub != "" && rec.OIDCSub != rec.Subject {
		// The extra index first: a session that exists outside it would survive a logout by sub.
		if err := m.st.IndexSession(ctx, store.UserKey(rec.Issuer, rec.OIDCSub), h, indexTTL); err != nil {
			return err
		}
	}
	return m.st.CreateSession(ctx, h, rec.User, rec.Issuer, rec.SID, b, ttl, indexTTL)
}
