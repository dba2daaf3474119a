package session

import "context"

// VerifyIDToken exposes the ID token checks of the callback to the black-box tests, which can
// then try forged tokens without a provider willing to issue them.
func (m *Manager) VerifyIDToken(ctx context.Context, raw, nonce string) error {
	rp := m.current()
	if rp == nil {
		return errNoSession
	}
	_, err := m.verifyIDToken(ctx, rp, raw, nonce)
	return err
}

// SafeRedirect exposes safeRedirect.
var SafeRedirect = safeRedirect
