package proxy

import (
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/assertion"
)

// What the portal is told of an admitted request: the identity headers and the assertion,
// rendered once per person, organisation, route and grant and reused by every request that
// has the same, so a warm request neither joins, formats nor signs anything.

// forwardMode is what a route tells its portal of an admitted request (identity.forward).
type forwardMode uint8

const (
	forwardFull      forwardMode = iota // every identity header and the assertion
	forwardHeaders                      // the headers, no assertion
	forwardAssertion                    // the assertion alone
	forwardNone                         // nothing
)

// forwardModeOf is a route's mode: its own, else the configuration's (config.Load checked
// both; a hand-built configuration that names none gets full).
func forwardModeOf(global, route string) forwardMode {
	m := route
	if m == "" {
		m = global
	}
	switch m {
	case config.ForwardHeaders:
		return forwardHeaders
	case config.ForwardAssertion:
		return forwardAssertion
	case config.ForwardNone:
		return forwardNone
	}
	return forwardFull
}

func (m forwardMode) sendsHeaders() bool   { return m == forwardFull || m == forwardHeaders }
func (m forwardMode) sendsAssertion() bool { return m == forwardFull || m == forwardAssertion }

// headerNames are a route's identity header names in canonical form ("" for one not sent),
// in the order of identityNames.
type headerNames [10]string

func canonicalNames(h config.IdentityHeaders) headerNames {
	var n headerNames
	for i, name := range identityNames(h) {
		if name != "" {
			n[i] = http.CanonicalHeaderKey(name)
		}
	}
	return n
}

// Indexes into headerNames, as identityNames orders them.
const (
	hUser = iota
	hEmail
	hOrg
	hRoles
	hPurpose
	hPurposeReason
	hPurposeExpires
	hKind
	hAssertion
	hSponsor
)

// rendered is what one identity tells the portal of one route: the headers to set, each
// value its own one-element, capacity-limited slice, shared read-only by every request it is
// set on (nothing on the way to the portal writes into a header value; an append copies),
// and the assertion they came with.
type rendered struct {
	roles   []string // the roles it was rendered for: the key holds none
	headers []renderedHeader
	// signed is when its assertion was signed, and kid the key that signed it ("" without
	// one: a route that sends none, or no signer).
	signed time.Time
	kid    string
}

type renderedHeader struct {
	name string
	val  []string
}

// set writes r's headers on h.
func (r *rendered) set(h http.Header) {
	for _, rh := range r.headers {
		h[rh.name] = rh.val
	}
}

// renderKey is everything a rendering depends on besides the roles, which are compared
// after the lookup (a slice cannot be a key, and joining them would allocate per request).
type renderKey struct {
	pol                                                        *routePolicy // the route, in one configuration
	user, email, org, purpose, kind, acr, sponsor, reason, aud string
	grantEnd                                                   int64 // UnixNano; 0 without an end
}

// renderCache holds the renderings of one configuration. It is emptied when full, which
// only costs renderings.
type renderCache struct {
	mu sync.RWMutex
	m  map[renderKey]*rendered
}

// maxRendered bounds a renderCache: people × organisations × routes in use at once.
const maxRendered = 10000

// render returns what id tells the portal of the route whose policy is pol and name is aud,
// reusing a rendering while its assertion may be: signed by the signer's current key within
// its reuse window (assertion.Signer.ReuseWindow). An assertion the route needs but sig
// cannot sign (no key yet) is an error; without a signer, none is sent.
func (c *renderCache) render(pol *routePolicy, id *identity, aud string, sig *assertion.Signer, now time.Time) (*rendered, error) {
	k := renderKey{pol: pol, user: id.user, email: id.email, org: id.org, purpose: id.purpose, kind: id.kind, acr: id.acr,
		sponsor: id.sponsor, reason: id.grantReason, aud: aud}
	if !id.grantEnd.IsZero() {
		k.grantEnd = id.grantEnd.UnixNano()
	}
	signs := pol.forward.sendsAssertion() && sig != nil
	kid := ""
	if signs {
		kid = sig.KeyID()
	}
	c.mu.RLock()
	r := c.m[k]
	c.mu.RUnlock()
	if r != nil && r.kid == kid && slices.Equal(r.roles, id.roles) &&
		(!signs || !now.Before(r.signed) && now.Sub(r.signed) < sig.ReuseWindow()) {
		return r, nil
	}
	r, err := renderNew(pol, id, aud, sig, signs, kid, now)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	if c.m == nil || len(c.m) >= maxRendered {
		c.m = make(map[renderKey]*rendered)
	}
	c.m[k] = r
	c.mu.Unlock()
	return r, nil
}

// renderNew renders id for pol's route, signing its assertion if signs (kid: the signer's key
// when asked, read before signing, so a key changed meanwhile makes the next request sign again).
func renderNew(pol *routePolicy, id *identity, aud string, sig *assertion.Signer, signs bool, kid string, now time.Time) (*rendered, error) {
	r := &rendered{roles: slices.Clone(id.roles)}
	names := &pol.names
	vals := make([]string, 0, len(names))
	add := func(i int, v string) {
		if names[i] != "" && v != "" {
			vals = append(vals, v)
			r.headers = append(r.headers, renderedHeader{names[i], vals[len(vals)-1 : len(vals) : len(vals)]})
		}
	}
	if pol.forward.sendsHeaders() {
		add(hUser, id.user)
		add(hEmail, id.email)
		add(hOrg, id.org)
		add(hRoles, strings.Join(id.roles, ","))
		add(hPurpose, id.purpose)
		if id.purpose != "" {
			add(hPurposeReason, headerText(id.grantReason))
			if !id.grantEnd.IsZero() {
				add(hPurposeExpires, id.grantEnd.UTC().Format(time.RFC3339))
			}
		}
		add(hKind, id.kind)
		add(hSponsor, id.sponsor)
	}
	if signs {
		// No request id (jti): the assertion is reused; X-Request-Id carries the request's.
		tok, err := sig.Sign(assertion.Claims{
			Subject: id.user, Email: id.email, Org: id.org, Roles: id.roles, Purpose: id.purpose,
			PurposeReason: id.grantReason, PurposeExpiry: id.grantExpiry(),
			Kind: id.kind, Sponsor: id.sponsor, ACR: id.acr, Audience: aud,
		}, now)
		if err != nil {
			return nil, err
		}
		r.signed, r.kid = now, kid
		add(hAssertion, tok)
	}
	return r, nil
}
