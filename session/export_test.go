package session

import "context"

// VerifyIDToken exposes the ID token checks of the callback to the black-box tests, which can
// then try forged tokens without a provider willing to issue them.
func (m *Manager) VerifyIDToken(ctx context.Context, raw, nonce string) error {
	rp := m.current(m.providers()[0])
	if rp == nil {
		return errNoSession
	}
	_, err := m.verifyIDToken(ctx, rp, raw, nonce)
	return err
}

// SafeRedirect exposes safeRedirect.
var SafeRedirect = safeRedirect

// CacheLive reports whether the session cache's subscription is confirmed (false without a
// cache).
func (m *Manager) CacheLive() bool { return m.cache != nil && m.cache.Live() }

// HandleOf exposes handle: the storage name of a session cookie value.
var HandleOf = handle
