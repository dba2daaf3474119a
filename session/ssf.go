package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// The Shared Signals receiver (OpenID SSF 1.0; push delivery, RFC 8935; Security Event
// Tokens, RFC 8417): a configured transmitter POSTs a signed SET about one of its people, and
// the person's sessions follow at once, on every replica (sessions live in storage):
//
//   - CAEP session-revoked (and RISC account-disabled, account-purged): every session of the
//     person ends;
//   - CAEP credential-change and assurance-level-change: every step-up elevation of the
//     person's sessions is dropped, so privileged areas ask for a fresh one;
//   - CAEP token-claims-change: the sessions end, so the next sign-in reads the claims anew;
//   - SSF verification: accepted, nothing changes.
//
// A SET is accepted only signed by a key of its transmitter's JWKS, with its iss exactly the
// transmitter's, its aud the configured audience, an iat neither in the future nor older than
// setMaxAge, and a jti never seen before (replays are refused for setMaxAge). Its subject must
// be a person of the transmitter's provider: an iss_sub of that provider's issuer, or an email
// address that person signed in with. Each applied event is audited (ssf.event_applied), each
// refused one too, within the sign-in refusals' budget (ssf.event_refused).

// SSFPath is where transmitters push events.
const SSFPath = "/.portcullis/ssf/events"

// setMaxAge bounds how old a SET may be, and so how long its jti is remembered.
const setMaxAge = 24 * time.Hour

// Event types acted on.
const (
	caepSessionRevoked  = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"
	caepCredential      = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	caepAssurance       = "https://schemas.openid.net/secevent/caep/event-type/assurance-level-change"
	caepClaims          = "https://schemas.openid.net/secevent/caep/event-type/token-claims-change"
	riscDisabled        = "https://schemas.openid.net/secevent/risc/event-type/account-disabled"
	riscPurged          = "https://schemas.openid.net/secevent/risc/event-type/account-purged"
	ssfVerification     = "https://schemas.openid.net/secevent/ssf/event-type/verification"
	setContentType      = "application/secevent+jwt"
	maxSETBytes         = 64 << 10
	ssfSubjectIssSub    = "iss_sub"
	ssfSubjectEmail     = "email"
	ssfSubjectComplex   = "complex"
	ssfErrInvalidReq    = "invalid_request"
	ssfErrInvalidKey    = "invalid_key"
	ssfErrInvalidIssuer = "invalid_issuer"
	ssfErrInvalidAud    = "invalid_audience"
)

// transmitter is one configured transmitter and its keys.
type transmitter struct {
	cfg  config.SSFTransmitter
	keys *oidc.RemoteKeySet
	// issuer is its provider's issuer: the persons its subjects name.
	issuer string
}

// SecurityEvents is what the receiver needs of storage beyond sessions (*store.Store).
type SecurityEvents interface {
	MarkSecurityEvent(ctx context.Context, iss, jti string, ttl time.Duration) (bool, error)
	ResolveEmail(ctx context.Context, email string) (string, error)
}

// newTransmitters compiles the configured transmitters.
func newTransmitters(ts []config.SSFTransmitter, oc config.OIDC) ([]*transmitter, error) {
	var out []*transmitter
	for _, t := range ts {
		// config.Load names the provider when there is only one (ssf.transmitters[].provider).
		p := oc.Provider(t.Provider)
		if p == nil {
			return nil, fmt.Errorf("ssf transmitter %s: provider %q is not configured", t.Name, t.Provider)
		}
		c, err := providerClient(t.CARootFile)
		if err != nil {
			return nil, fmt.Errorf("ssf transmitter %s: %w", t.Name, err)
		}
		keys := oidc.NewRemoteKeySet(oidc.ClientContext(context.Background(), c), t.JWKSURI)
		out = append(out, &transmitter{cfg: t, keys: keys, issuer: p.Issuer})
	}
	return out, nil
}

// ssfError is RFC 8935 §2.3's error answer.
type ssfError struct {
	status      int
	code, cause string
}

func (e *ssfError) Error() string { return e.code + ": " + e.cause }

// serveSSF receives one pushed SET.
func (m *Manager) serveSSF(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Cache-Control", "no-store")
	if len(m.transmitters) == 0 {
		http.NotFound(w, r)
		return nil
	}
	if r.Method != http.MethodPost {
		return methodNotAllowed(w, "POST")
	}
	t, err := m.receiveSET(w, r)
	if err != nil {
		var se *ssfError
		if !errors.As(err, &se) {
			return err // storage: 503, the transmitter retries
		}
		name := ""
		if t != nil {
			name = t.cfg.Name
		}
		m.log.Warn("security event refused", slog.String("transmitter", name), slog.String("err", se.code), slog.String("cause", se.cause))
		if m.refusalBudget.Allow() {
			m.appendAudit(r.Context(), w, audit.Event{Type: audit.SecurityEventRefused, Reason: se.code,
				Detail: map[string]string{"transmitter": name, "cause": truncate(se.cause, 200)}})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(se.status)
		_ = json.NewEncoder(w).Encode(map[string]string{"err": se.code, "description": se.cause})
		return nil
	}
	// RFC 8935 §2.2: 202 once the SET is received and validated.
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// setClaims are the claims of a SET Portcullis reads.
type setClaims struct {
	Issuer   string                     `json:"iss"`
	Audience jsonAudience               `json:"aud"`
	IssuedAt *float64                   `json:"iat"`
	JTI      string                     `json:"jti"`
	SubID    *subjectID                 `json:"sub_id"`
	Events   map[string]json.RawMessage `json:"events"`
}

type subjectID struct {
	Format string     `json:"format"`
	Iss    string     `json:"iss"`
	Sub    string     `json:"sub"`
	Email  string     `json:"email"`
	User   *subjectID `json:"user"`
}

// jsonAudience is aud: a string or an array of them.
type jsonAudience []string

func (a *jsonAudience) UnmarshalJSON(b []byte) error {
	var one string
	if json.Unmarshal(b, &one) == nil {
		*a = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return errors.New("aud is neither a string nor an array of strings")
	}
	*a = many
	return nil
}

// receiveSET verifies the request's SET and applies its event. It returns the transmitter once
// known, and an *ssfError for the transmitter, or a storage error.
func (m *Manager) receiveSET(w http.ResponseWriter, r *http.Request) (*transmitter, error) {
	bad := func(code, format string, args ...any) error {
		return &ssfError{http.StatusBadRequest, code, fmt.Sprintf(format, args...)}
	}
	if ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || ct != setContentType {
		return nil, bad(ssfErrInvalidReq, "Content-Type must be %s", setContentType)
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxSETBytes)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, bad(ssfErrInvalidReq, "unreadable body (at most %d bytes)", maxSETBytes)
	}
	raw := strings.TrimSpace(string(body))
	jws, err := jose.ParseSignedCompact(raw, asymmetricAlgs)
	if err != nil || len(jws.Signatures) != 1 {
		return nil, bad(ssfErrInvalidReq, "not a compact JWS signed with one of %v", asymmetricAlgs)
	}
	if typ, _ := jws.Signatures[0].Protected.ExtraHeaders["typ"].(string); typ != "" &&
		strings.TrimPrefix(strings.ToLower(typ), "application/") != "secevent+jwt" {
		return nil, bad(ssfErrInvalidReq, "typ %q is not secevent+jwt", typ)
	}
	var unverified setClaims
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return nil, bad(ssfErrInvalidReq, "claims: %v", err)
	}
	var t *transmitter
	for _, c := range m.transmitters {
		if c.cfg.Issuer == unverified.Issuer {
			t = c
		}
	}
	if t == nil {
		return nil, bad(ssfErrInvalidIssuer, "iss %q is no configured transmitter", truncate(unverified.Issuer, 100))
	}
	ctx, cancel := context.WithTimeout(r.Context(), providerCallLimit)
	defer cancel()
	payload, err := t.keys.VerifySignature(ctx, raw)
	if err != nil {
		return t, bad(ssfErrInvalidKey, "signature not made by a key of %s's JWKS", t.cfg.Name)
	}
	var c setClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		return t, bad(ssfErrInvalidReq, "claims: %v", err)
	}
	now := m.now()
	skew := m.oc.ClockSkew.D()
	switch {
	case c.Issuer != t.cfg.Issuer:
		return t, bad(ssfErrInvalidIssuer, "iss is not %s's", t.cfg.Name)
	case !slices.Contains(c.Audience, t.cfg.Audience):
		return t, bad(ssfErrInvalidAud, "aud %q does not include %q", []string(c.Audience), t.cfg.Audience)
	case c.IssuedAt == nil:
		return t, bad(ssfErrInvalidReq, "no iat")
	case time.Unix(int64(*c.IssuedAt), 0).After(now.Add(skew)):
		return t, bad(ssfErrInvalidReq, "iat is in the future")
	case now.Sub(time.Unix(int64(*c.IssuedAt), 0)) > setMaxAge:
		return t, bad(ssfErrInvalidReq, "iat is older than %v", setMaxAge)
	case c.JTI == "" || len(c.JTI) > 256:
		return t, bad(ssfErrInvalidReq, "no jti (or longer than 256 bytes)")
	case len(c.Events) != 1:
		return t, bad(ssfErrInvalidReq, "a SET carries exactly one event (%d here)", len(c.Events))
	}
	var typ string
	var event json.RawMessage
	for k, v := range c.Events {
		typ, event = k, v
	}
	sub := c.SubID
	if sub == nil {
		// Earlier CAEP drafts put the subject in the event.
		var ev struct {
			Subject *subjectID `json:"subject"`
		}
		_ = json.Unmarshal(event, &ev)
		sub = ev.Subject
	}
	var user string
	if typ != ssfVerification {
		if user, err = m.subjectUser(ctx, t, sub); err != nil {
			return t, err
		}
	}
	fresh, err := m.events.MarkSecurityEvent(r.Context(), c.Issuer, c.JTI, setMaxAge+skew)
	if err != nil {
		return t, outage("mark security event", err)
	}
	if !fresh {
		return t, bad(ssfErrInvalidReq, "jti %q already received (replay)", truncate(c.JTI, 64))
	}
	done, err := m.applyEvent(r.Context(), typ, user)
	if err != nil {
		return t, err
	}
	m.log.Info("security event applied", slog.String("transmitter", t.cfg.Name), slog.String("event", typ),
		slog.String("user", user), slog.String("done", done))
	m.appendAudit(r.Context(), w, audit.Event{Type: audit.SecurityEventApplied, User: user, Reason: typ,
		Detail: map[string]string{"transmitter": t.cfg.Name, "jti": truncate(c.JTI, 64), "done": done}})
	return t, nil
}

// subjectUser is the person sub names: one of t's provider's.
func (m *Manager) subjectUser(ctx context.Context, t *transmitter, sub *subjectID) (string, error) {
	bad := func(format string, args ...any) error {
		return &ssfError{http.StatusBadRequest, ssfErrInvalidReq, fmt.Sprintf(format, args...)}
	}
	if sub != nil && sub.Format == ssfSubjectComplex && sub.User != nil {
		sub = sub.User // a session's subject: every session of its user ends
	}
	switch {
	case sub == nil:
		return "", bad("no subject (sub_id)")
	case sub.Format == ssfSubjectIssSub:
		if strings.TrimSuffix(sub.Iss, "/") != strings.TrimSuffix(t.issuer, "/") || sub.Sub == "" {
			return "", bad("the subject is not a person of %s's provider", t.cfg.Name)
		}
		return store.UserKey(t.issuer, sub.Sub), nil
	case sub.Format == ssfSubjectEmail:
		if sub.Email == "" {
			return "", bad("an email subject without an address")
		}
		user, err := m.events.ResolveEmail(ctx, sub.Email)
		switch {
		case errors.Is(err, store.ErrNotFound):
			return "", bad("nobody signed in with that address")
		case errors.Is(err, store.ErrConflict):
			return "", bad("more than one person signed in with that address")
		case err != nil:
			return "", outage("resolve an email subject", err)
		}
		if iss, _, _ := strings.Cut(user, "|"); strings.TrimSuffix(iss, "/") != strings.TrimSuffix(t.issuer, "/") {
			// Another provider's person: this transmitter does not speak for them.
			return "", bad("the address is not a person of %s's provider", t.cfg.Name)
		}
		return user, nil
	}
	return "", bad("subject format %q is not supported (iss_sub, email, complex with user)", truncate(sub.Format, 32))
}

// applyEvent does what typ asks of user's sessions and says what was done.
func (m *Manager) applyEvent(ctx context.Context, typ, user string) (string, error) {
	switch typ {
	case caepSessionRevoked, caepClaims, riscDisabled, riscPurged:
		n, err := m.st.RevokeUser(ctx, user)
		if err != nil {
			return "", outage("end sessions", err)
		}
		return fmt.Sprintf("sessions_ended=%d", n), nil
	case caepCredential, caepAssurance:
		n, err := m.dropElevations(ctx, user)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("elevations_dropped=%d", n), nil
	case ssfVerification:
		return "verified", nil
	}
	return "ignored", nil
}

// dropElevations removes every step-up elevation of user's sessions and returns how many
// sessions held one.
func (m *Manager) dropElevations(ctx context.Context, user string) (int, error) {
	recs, err := m.st.UserSessions(ctx, user)
	if err != nil {
		return 0, outage("sessions of a person", err)
	}
	n := 0
	now := m.now()
	for h, b := range recs {
		var rec record
		if json.Unmarshal(b, &rec) != nil || len(rec.Elevations) == 0 {
			continue
		}
		rec.Elevations = nil
		nb, err := json.Marshal(&rec)
		if err != nil {
			return n, internal("encode session", err)
		}
		ttl := m.ttl(&rec, now)
		if ttl <= 0 {
			continue
		}
		if err := m.st.UpdateSession(ctx, h, nb, ttl); err != nil {
			return n, outage("drop elevations", err)
		}
		n++
	}
	return n, nil
}
