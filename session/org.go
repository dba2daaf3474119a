package session

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/store"
)

// The organisation picker (package proxy) records the person's choice in the session. These
// methods work on a request Admit let through: it carries the session it was admitted with.

// admitted is the session a request was admitted with, for the methods below only.
func admitted(r *http.Request) (*loaded, bool) {
	a, ok := admissionOf(r.Context())
	if !ok {
		return nil, false
	}
	return a.l, true
}

// CSRFToken returns a token bound to the session of r (admitted by Admit) for forms that change
// it, such as the organisation picker; "" when r carries no session.
func (m *Manager) CSRFToken(r *http.Request) string {
	l, ok := admitted(r)
	if !ok {
		return ""
	}
	return csrfFor(l, "org")
}

// CheckCSRF reports whether token is the CSRFToken of r's session.
func (m *Manager) CheckCSRF(r *http.Request, token string) bool {
	l, ok := admitted(r)
	return ok && token != "" && hmac.Equal([]byte(token), []byte(csrfFor(l, "org")))
}

// SetActiveOrg records org as the organisation the person of r's session acts for. Whether they
// may is for the caller (authz) to have decided. The record is read again so a concurrent
// change is not undone; a session ended meanwhile is not revived.
func (m *Manager) SetActiveOrg(ctx context.Context, r *http.Request, org string) error {
	l, ok := admitted(r)
	if !ok {
		return errors.New("set active org: request has no session")
	}
	b, err := m.st.LoadSession(ctx, l.h)
	if err != nil {
		return fmt.Errorf("set active org: %w", err)
	}
	var rec record
	if err := json.Unmarshal(b, &rec); err != nil {
		return fmt.Errorf("set active org: decode session: %w", err)
	}
	// An elevation belongs to the organisation it was earned for: a switch drops every other
	// one (those earned for org, while it was used without being chosen, stay).
	rec.Elevations = slices.DeleteFunc(rec.Elevations, func(e authz.Elevation) bool { return e.Org != org })
	rec.ActiveOrg = org
	if b, err = json.Marshal(&rec); err != nil {
		return fmt.Errorf("set active org: %w", err)
	}
	ttl := m.ttl(&rec, m.now())
	if ttl <= 0 {
		return fmt.Errorf("set active org: %w", store.ErrNotFound)
	}
	if err := m.st.UpdateSession(ctx, l.h, b, ttl); err != nil {
		return fmt.Errorf("set active org: %w", err)
	}
	return nil
}
