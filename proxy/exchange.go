package proxy

import (
	"context"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/session"
	"go.opentelemetry.io/otel/trace"
)

// exchange is one request on its way through the proxy. ServeHTTP builds it once; each step
// of the flow is a method that reads what earlier steps learnt and adds its own, and returns
// the refusal, if any, for fail. The forwarder finds it in the request context (Rewrite),
// which is why it also holds what the portal is told.
//
// The flow, in serve's order: the host, the request-target and its path (normalised once;
// the normalised request is matched and forwarded); own endpoints; the route table; then for
// a route that is not public, admit (the session, the organisation, the membership decision,
// the step-up, the assertion), and for a public route with a recovery guard, recover.
type exchange struct {
	s  *Server
	st *state
	w  http.ResponseWriter
	r  *http.Request

	requestID string
	// method is the method the request is decided as: its own, or the one an allowed
	// override asks for (override.go).
	method  string
	client  netip.Addr // the client's address (X-Forwarded-For only from trusted proxies)
	xff     string     // the X-Forwarded-For chain sent upstream
	trusted bool       // the peer is one of server.trusted_proxies
	proto   string

	host        string // canonical, without port
	path        string // normalised, decoded: what routes match
	escapedPath string // normalised, as forwarded
	routeLabel  string

	route *config.Route
	pol   *routePolicy
	// allowOverride: the route forwards method-override headers (method_override: allow).
	allowOverride bool

	// org is the organisation the request acts for, resolved once by resolveOrg; orgKnown
	// says whether it could be (an empty org with orgKnown false: none).
	org      string
	orgKnown bool

	sess *session.Session
	// question: the request is an ingress's forward-auth question about another (forwardauth.go).
	question bool
	// apiKey is the API key or client token the request presents, when it is decided as a
	// machine (choosePrincipal), and cred which of the two it is.
	apiKey string
	cred   credential
	// tokenExpiry is a client token's exp (admitClient): a WebSocket tunnel ends with it.
	tokenExpiry time.Time
	// id is who the request was admitted as (admitted), and told what the portal is told of
	// them (identity.go).
	id       identity
	told     *rendered
	admitted bool

	// audited: the refusal was recorded as an event of its own (not counted, refusals.go).
	audited bool

	// decision is the decision's span while it runs (tracing.go); nil untraced.
	decision trace.Span
}

type exchangeKey struct{}

// exchangeOf is the exchange a forwarded request belongs to.
func exchangeOf(r *http.Request) *exchange {
	ex, _ := r.Context().Value(exchangeKey{}).(*exchange)
	return ex
}

// serve runs the steps of one request: it forwards it, or returns why not.
func (ex *exchange) serve() error {
	r, st := ex.r, ex.st
	if err := ex.checkFraming(); err != nil {
		return err
	}
	if _, err := ex.readTarget(st.stripParams); err != nil {
		return err
	}
	if isOwnPath(ex.path) {
		ex.routeLabel = labelOwn
		return ex.serveOwn()
	}

	ex.method = r.Method
	idx, err := ex.match(r.Method)
	if err != nil {
		return err
	}
	ex.routeLabel = st.set.Routes[idx].Name
	idx, err = ex.overrides(idx)
	if err != nil {
		return err
	}
	ex.route, ex.pol = &st.set.Routes[idx], &st.policies[idx]
	ex.routeLabel = ex.route.Name
	ex.allowOverride = st.overrides[idx].allow
	websocket, err := ex.upgrade()
	if err != nil {
		return err
	}

	switch {
	case !ex.route.Public:
		err = ex.admit()
	case presentsAPIKey(r.Header):
		// A public route takes no credential: a Portcullis key sent to one would reach the
		// portal (and its logs) as it is.
		err = ex.machineRefusal(reason.CredentialNotAccepted, "", "")
	case ex.pol.recovery != nil:
		err = ex.recover()
	}
	if err != nil {
		return err
	}
	if err := ex.bufferChunked(); err != nil {
		return err
	}
	ex.r = ex.r.WithContext(context.WithValue(ex.r.Context(), exchangeKey{}, ex))
	if websocket && ex.admitted {
		r, cancel := ex.guardTunnel()
		defer cancel()
		ex.r = r
	}
	ex.endDecision(nil)
	st.upstreams[idx].proxy.ServeHTTP(ex.w, ex.r)
	return nil
}

// readTarget reads the request's host and request-target: the canonical host, and the
// path normalised once (with stripParams, ";params" stripped rather than refused), into ex.
// It returns the raw path as sent.
func (ex *exchange) readTarget(stripParams bool) (string, error) {
	r := ex.r
	host, ok := canonicalHost(r.Host)
	if !ok {
		return "", reject(reason.BadHost)
	}
	ex.host = host
	if len(r.RequestURI) > maxRequestTarget {
		// Legacy portals and their logs choke on long targets long before Go's header limit.
		return "", reject(reason.URITooLong)
	}
	rawPath, ok := requestPath(r)
	if !ok {
		return "", reject(reason.BadRequest)
	}
	path, escaped, code := normalizePath(rawPath, stripParams)
	if code != "" {
		return "", reject(code)
	}
	ex.path, ex.escapedPath = path, escaped
	if len(r.Header["Authorization"]) > 1 {
		// Components disagree on which of two credentials counts (HDR-03).
		return "", reject(reason.DuplicateAuthorization)
	}
	return rawPath, nil
}

// isOwnPath reports whether a normalised path is one of Portcullis's own (/.portcullis/...).
func isOwnPath(path string) bool {
	return strings.HasPrefix(path, ownPrefix) || path == ownPrefix[:len(ownPrefix)-1]
}

// match finds the route of the request's host and path for method, or the refusal: no route
// (404), or none for that method (405, with the Allow header).
func (ex *exchange) match(method string) (int, error) {
	idx, res := ex.st.router.match(ex.host, ex.path, method)
	switch res {
	case matchNotFound:
		return 0, reject(reason.NoRoute)
	case matchMethodNotAllowed:
		ex.w.Header().Set("Allow", ex.st.router.allow(ex.host, ex.path))
		return 0, reject(reason.MethodNotAllowed)
	}
	return idx, nil
}

// maxRequestTarget bounds the request-target (path and query). 8 KiB is what common servers
// and load balancers accept.
const maxRequestTarget = 8 << 10

// requestPath returns the raw path of the request-target exactly as sent. For an
// absolute-form target (GET http://host/path) net/http has already made the target's host the
// request's Host, so the host that is matched is the host that is forwarded (AUTHN-06).
func requestPath(r *http.Request) (string, bool) {
	uri := r.RequestURI
	if !strings.HasPrefix(uri, "/") {
		// absolute-form: scheme://authority/path?query
		i := strings.Index(uri, "://")
		if i < 0 {
			return "", false // asterisk-form or garbage
		}
		rest := uri[i+3:]
		j := strings.IndexAny(rest, "/?")
		if j < 0 || rest[j] == '?' {
			return "/", true
		}
		uri = rest[j:]
	}
	if i := strings.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	return uri, true
}

// returnPath is the same-origin path and query to come back to after a detour.
func (ex *exchange) returnPath() string { return session.SafeReturn(ex.r.RequestURI) }
