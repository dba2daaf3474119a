package session

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// Info is one of a person's sessions as they see it among their own (the console): when and
// in which browser it began, when it was last used, never its secret or tokens.
type Info struct {
	// ID names the session to the person and in logs (Session.LogID): it cannot act as it.
	ID                         string
	Created, LastSeen, Expires time.Time
	// Agent is the browser's User-Agent at sign-in, Host the host the session is for.
	Agent, Host string
	// HandedOff is a session of an organisation host, made from the sign-in host's.
	HandedOff bool
	ActiveOrg string
	// Current is the session the request came with; SameBrowser a session of the same
	// sign-in in the same browser (the sign-in host's and the organisation hosts' sessions
	// made from it by handoffs).
	Current, SameBrowser bool
}

// ErrNoSuchSession is EndSessionOf's answer for an id that names none of the person's other
// sessions.
var ErrNoSuchSession = errors.New("no such session")

// maxAgent bounds the User-Agent kept in a session record.
const maxAgent = 256

// agentOf is r's User-Agent as a record keeps it: printable ASCII, at most maxAgent bytes.
func agentOf(r *http.Request) string {
	ua := r.UserAgent()
	var b strings.Builder
	for i := 0; i < len(ua) && b.Len() < maxAgent; i++ {
		if c := ua[i]; c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// SessionsOf lists the live sessions of the person whose session admitted r (Admit), the
// current one first, then the most recently used.
func (m *Manager) SessionsOf(r *http.Request) ([]Info, error) {
	l, ok := admitted(r)
	if !ok {
		return nil, errNoSession
	}
	recs, err := m.userSessions(r.Context(), l.rec.User)
	if err != nil {
		return nil, err
	}
	now, family := m.now(), familyOf(l.rec, l.h)
	out := make([]Info, 0, len(recs))
	for h, rec := range recs {
		if !m.live(rec, now) {
			continue
		}
		out = append(out, Info{ID: logID(h), Created: rec.Created, LastSeen: rec.LastSeen, Expires: rec.Expires, Agent: rec.Agent,
			Host: rec.Host, HandedOff: rec.HandedOff, ActiveOrg: rec.ActiveOrg, Current: h == l.h,
			SameBrowser: h != l.h && familyOf(rec, h) == family})
	}
	slices.SortFunc(out, func(a, b Info) int {
		if a.Current != b.Current {
			if a.Current {
				return -1
			}
			return 1
		}
		return cmp.Or(b.LastSeen.Compare(a.LastSeen), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

// userSessions reads and decodes user's session records, by handle.
func (m *Manager) userSessions(ctx context.Context, user string) (map[string]*record, error) {
	raw, err := m.st.UserSessions(ctx, user)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*record, len(raw))
	for h, b := range raw {
		var rec record
		if json.Unmarshal(b, &rec) == nil && rec.User == user {
			out[h] = &rec
		}
	}
	return out, nil
}

// EndSessionOf ends another session of the person whose session admitted r, named by its id
// (Info.ID): "sign out this session" for a browser left signed in elsewhere, with the
// sessions of its sign-in in that browser (its family, as signing out there would). A session
// of the current one's own family (an organisation host's, in this browser) ends alone: the
// current session ends by signing out (/.portcullis/logout), never here. An id that names
// none of the person's other sessions, or more than one, is ErrNoSuchSession.
func (m *Manager) EndSessionOf(r *http.Request, id string) error {
	l, ok := admitted(r)
	if !ok {
		return errNoSession
	}
	recs, err := m.userSessions(r.Context(), l.rec.User)
	if err != nil {
		return err
	}
	var target string
	var rec *record
	for h, x := range recs {
		if logID(h) != id || h == l.h {
			continue
		}
		if target != "" {
			return ErrNoSuchSession // two of one person's sessions share the prefix: ask nothing
		}
		target, rec = h, x
	}
	if target == "" {
		return ErrNoSuchSession
	}
	ctx := r.Context()
	family := 0
	if f := familyOf(rec, target); f != familyOf(l.rec, l.h) {
		if family, err = m.st.EndFamily(ctx, f, rec.User, rec.Issuer, rec.SID); err != nil {
			return err
		}
	}
	if err := m.st.DeleteSession(ctx, target, rec.User, rec.Issuer, rec.SID); err != nil {
		return err
	}
	m.log.Info("session ended by its person", slog.String("user", rec.User), slog.String("session", id),
		slog.String("from_session", logID(l.h)), slog.Int("family_sessions_ended", family))
	m.recordEvent(ctx, audit.Event{Type: audit.SessionEnded, User: rec.User, Reason: "ended_by_person",
		Detail: map[string]string{"session": id, "from_session": logID(l.h)}})
	return nil
}
