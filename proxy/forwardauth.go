package proxy

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Forward-auth. An ingress that already routes the portal (nginx auth_request, Caddy
// forward_auth, Traefik forwardAuth) holds the request and asks Portcullis about it:
// GET /.portcullis/auth with the original method and URI in headers, and the original
// cookies, Authorization and Accept as they were. Portcullis decides the request it describes
// with the proxy's own steps (host, path normalisation, route table, method overrides,
// upgrades, session, organisation, membership, step-up, assertion) and answers:
//
//   - allowed: 200, no body, with every identity header of the route (empty when it has no
//     value, so an ingress that copies them overwrites whatever the client sent) and
//     X-Portcullis-Upstream-Cookie, the Cookie header without Portcullis's own cookies;
//   - refused: the answer the proxy would give (the sign-in redirect, the step-up page, the
//     refusal page or JSON, the 401 challenge), with X-Portcullis-Reason. Caddy and Traefik
//     pass it to the client as it is. nginx's auth_request takes only 2xx, 401 and 403, so a
//     question in nginx's convention (X-Original-URI) is answered 401 for a redirect (with
//     its absolute Location, for `error_page 401 =302 $location`) and 403 for anything else,
//     with the real status in X-Portcullis-Status.
//
// What cannot be decided the proxy's way is refused, never guessed: the request is believed
// only from server.trusted_proxies; its path must already be in the one form the proxy
// decides on (the ingress forwards the original, which the proxy would have normalised); and
// a decision that needs the body (a recovery guard, a POST that may carry `_method` where
// the method matters) is refused with forward_auth_body, since no ingress passes it on.

// forwardAuthPath is the endpoint's path, on the main listener or one of its own.
const forwardAuthPath = ownPrefix + "auth"

// labelForwardAuth is the route label of a question refused before a route was found.
const labelForwardAuth = "_forward_auth"

// The headers an ingress names the original request with: nginx's convention (set in its
// configuration, by habit from the auth_request documentation) and Traefik's, which Caddy
// follows.
const (
	hdrOriginalMethod  = "X-Original-Method"
	hdrOriginalURI     = "X-Original-Uri"
	hdrForwardedMethod = "X-Forwarded-Method"
	hdrForwardedURI    = "X-Forwarded-Uri"
)

// The headers of the answer, besides the identity headers.
const (
	hdrFAReason         = "X-Portcullis-Reason"
	hdrFAStatus         = "X-Portcullis-Status"
	hdrFAUpstreamCookie = "X-Portcullis-Upstream-Cookie"
)

// forwardAuthHandler serves the endpoint on a listener of its own (forward_auth.listen):
// /.portcullis/auth and nothing else.
func (s *Server) forwardAuthHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.serve(w, r, true) })
}

// serveForwardAuthListener answers a request on the forward-auth listener: a question at
// /.portcullis/auth, or 404.
func (ex *exchange) serveForwardAuthListener() error {
	ex.routeLabel = labelForwardAuth
	if raw, ok := requestPath(ex.r); !ok || raw != forwardAuthPath || !ex.st.set.ForwardAuth.Enabled {
		// Disabled by a reload: the listeners stay bound until the next restart.
		return reject(reason.NoRoute)
	}
	ex.path = forwardAuthPath
	return ex.forwardAuth()
}

// forwardAuth answers a question at /.portcullis/auth.
func (ex *exchange) forwardAuth() error {
	ex.routeLabel = labelForwardAuth
	ex.question = true
	// Installed first, so every refusal carries its reason (problem.ReasonTagger); the
	// convention and the original's base are known once the question is read.
	fw := &forwardAuthWriter{ResponseWriter: ex.w}
	ex.w = fw
	r := ex.r
	if !ex.trusted {
		ex.s.log.LogAttrs(r.Context(), slog.LevelWarn, "forward-auth question from an untrusted address refused",
			slog.String("client", r.RemoteAddr), slog.String("request_id", ex.requestID))
		return reject(reason.ForwardAuthUntrusted)
	}
	method, uri, nginx, detail := originalRequest(r.Header)
	if fault, _ := r.Context().Value(questionFaultKey{}).(string); fault != "" {
		detail = fault
	}
	host := ""
	if detail == "" {
		// Never the question's own Host: that names Portcullis, not the portal.
		switch hs := r.Header.Values("X-Forwarded-Host"); {
		case len(hs) == 1 && hs[0] != "":
			host = hs[0]
		case len(hs) > 1:
			detail = "X-Forwarded-Host repeated"
		default:
			detail = "no X-Forwarded-Host"
		}
	}
	var u *url.URL
	if detail == "" {
		var err error
		if u, err = url.ParseRequestURI(uri); err != nil || !strings.HasPrefix(uri, "/") {
			detail = "the original URI is not a path and query"
		}
	}
	if detail != "" {
		ex.s.log.LogAttrs(r.Context(), slog.LevelWarn, "forward-auth question refused", slog.String("detail", detail),
			slog.String("request_id", ex.requestID))
		return reject(reason.ForwardAuthRequest)
	}

	orig := r.Clone(r.Context())
	orig.Method, orig.RequestURI, orig.URL, orig.Host = method, uri, u, host
	// The body stays with the ingress; what the question itself carried is not the request's.
	orig.Body, orig.ContentLength, orig.TransferEncoding = http.NoBody, 0, nil
	for _, h := range [...]string{hdrOriginalMethod, hdrOriginalURI, hdrForwardedMethod, hdrForwardedURI, "Content-Length"} {
		orig.Header.Del(h)
	}
	ex.r = orig
	fw.nginx, fw.base = nginx, ex.proto+"://"+host
	if err := ex.decideOriginal(); err != nil {
		return err
	}
	ex.allow()
	return nil
}

// originalRequest reads the method and request-target of the request a question describes,
// from nginx's headers or Traefik's (Caddy's), and whether it is nginx's convention. detail
// says what is wrong when they do not name one request.
func originalRequest(h http.Header) (method, uri string, nginx bool, detail string) {
	one := func(name string) (string, bool) {
		vs := h.Values(name)
		if len(vs) > 1 {
			detail = name + " repeated"
		}
		if len(vs) == 0 {
			return "", false
		}
		return vs[0], true
	}
	nm, hasNM := one(hdrOriginalMethod)
	nu, hasNU := one(hdrOriginalURI)
	fm, hasFM := one(hdrForwardedMethod)
	fu, hasFU := one(hdrForwardedURI)
	if detail != "" {
		return "", "", false, detail
	}
	// One convention, whole: the ingress sets both of its headers, and a header of the other
	// convention can only come from the client (an ingress passes the client's headers on).
	switch {
	case (hasNU || hasNM) && (hasFU || hasFM):
		return "", "", false, "both the nginx and the Traefik headers are present"
	case hasNU && hasNM:
		method, uri, nginx = nm, nu, true
	case hasFU && hasFM:
		method, uri = fm, fu
	case hasNU || hasFU:
		return "", "", false, "no original method (X-Original-Method or X-Forwarded-Method)"
	default:
		return "", "", false, "no original URI (X-Original-URI or X-Forwarded-Uri)"
	}
	switch {
	case method == "":
		return "", "", false, "no original method (X-Original-Method or X-Forwarded-Method)"
	case !syntax.Token(method):
		return "", "", false, "the original method is not a method"
	}
	return method, uri, nginx, ""
}

// decideOriginal runs the proxy's steps on the request a question describes, up to the
// point where the proxy would forward it.
func (ex *exchange) decideOriginal() error {
	r, st := ex.r, ex.st
	// Never stripped of ";params": the ingress forwards what it holds.
	rawPath, err := ex.readTarget(false)
	if err != nil {
		return err
	}
	if ex.escapedPath != rawPath {
		// The proxy would forward the normal form; the ingress forwards this one, which the
		// portal may read as another path than the one decided.
		return reject(reason.ForwardAuthPath)
	}
	if isOwnPath(ex.path) {
		// Portcullis's own endpoints are served by Portcullis: the ingress routes them to it.
		return reject(reason.NoRoute)
	}

	ex.method = r.Method
	// The body is there only when Envoy sent all of it (with_request_body): then the
	// method-override fields and the recovery guard are read from it as the proxy would.
	body, whole := r.Context().Value(questionBodyKey{}).([]byte)
	if whole {
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	}
	idx, err := ex.match(r.Method)
	if err != nil {
		return err
	}
	ex.routeLabel = st.set.Routes[idx].Name
	if op := st.overrides[idx]; op.sensitive {
		if !op.allow && hasOverrideHeader(r.Header) {
			// The proxy strips these; the ingress passes them on to a portal that may obey.
			return ex.overrideRefused("header_not_stripped")
		}
		if r.Method == http.MethodPost && mayCarryFields(r.Header) && !whole {
			ex.s.log.LogAttrs(r.Context(), slog.LevelInfo, "forward-auth cannot see a POST body where the method matters",
				slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID))
			return reject(reason.ForwardAuthBody)
		}
	}
	if idx, err = ex.overrides(idx); err != nil {
		return err
	}
	ex.route, ex.pol = &st.set.Routes[idx], &st.policies[idx]
	ex.routeLabel = ex.route.Name
	ex.allowOverride = st.overrides[idx].allow
	if _, err := ex.upgrade(); err != nil {
		return err
	}
	if name := unsafeClientHeader(r.Header, st.identityCGI, st.clientIPHeader, ex.client); name != "" {
		// The proxy strips every spelling a CGI, PHP or WSGI portal folds into an identity
		// header, and every managed header; the ingress replaces only the names it is
		// answered and those it sets itself, and passes this on.
		ex.s.log.LogAttrs(r.Context(), slog.LevelWarn, "forward-auth refused a request carrying a header only the proxy may set",
			slog.String("route", ex.routeLabel), slog.String("header", name), slog.String("request_id", ex.requestID))
		return reject(reason.ForwardAuthRequest)
	}
	switch {
	case !ex.route.Public:
		return ex.admit()
	case presentsAPIKey(r.Header):
		// The ingress would pass the key on to the portal: never answered with an allow.
		return ex.machineRefusal(reason.CredentialNotAccepted, "", "")
	case ex.pol.recovery != nil && ex.pol.recovery.Spec.Guards(ex.method):
		// ex.method: an allowed override (X-HTTP-Method-Override: PUT on a POST) is decided
		// as the method it asks for, as the proxy's recover() does.
		// The guard reads the body: only Envoy sends it (with_request_body), and then only
		// when it is whole. A mirror guard forwards a rewritten body, which an ingress that
		// forwards the original cannot do.
		if !whole || ex.pol.recovery.BlockedResponse == config.RecoveryMirror {
			ex.s.log.LogAttrs(r.Context(), slog.LevelWarn, "forward-auth cannot run this recovery guard (it needs the whole body, and a mirror guard rewrites it); send it with Envoy's with_request_body, or serve this route through Portcullis as the proxy",
				slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID))
			return reject(reason.ForwardAuthBody)
		}
		return ex.recover()
	}
	return nil
}

// hasOverrideHeader reports whether h carries a method-override header in any spelling.
func hasOverrideHeader(h http.Header) bool {
	for name := range h {
		if isOverrideHeader(name) {
			return true
		}
	}
	return false
}

// mayCarryFields reports whether a POST with these headers may have a body frameworks read
// parameters from (a `_method` field among them): its Content-Type says so, or there is none.
func mayCarryFields(h http.Header) bool {
	ct := h.Values("Content-Type")
	return len(ct) != 1 || inspectedMedia(ct[0])
}

// noValue is an answered header without a value, shared read-only by every answer (it has no
// room to append into).
var noValue = []string{""}

// allow answers an allowed question: 200 with the route's identity headers, every one of
// them present (empty when it has no value) so that an ingress copying them replaces what
// the client sent, and the Cookie header the portal should get.
func (ex *exchange) allow() {
	h := ex.w.Header()
	var names headerNames
	if ex.pol != nil {
		names = ex.pol.names // canonical already (compilePolicies)
	} else {
		names = canonicalNames(ex.st.set.Headers)
	}
	for _, n := range names {
		if n != "" {
			h[n] = noValue
		}
	}
	if ex.admitted {
		ex.told.set(h)
	}
	if ex.st.clientIPHeader != "" && ex.client.IsValid() {
		h[ex.st.clientIPHeader] = []string{ex.client.String()}
	}
	cookies := http.Header{"Cookie": ex.r.Header.Values("Cookie")}
	stripOwnCookies(cookies)
	h.Set(hdrFAUpstreamCookie, strings.Join(cookies.Values("Cookie"), "; "))
	h.Set("Cache-Control", "no-store")
	for w := ex.w; w != nil; {
		if m, ok := w.(allowMarker); ok {
			m.markAllowed()
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	ex.w.WriteHeader(http.StatusOK)
}

// allowMarker is a writer told that the answer it gets is an allow, not a refusal with the
// same status (ext_authz's captureWriter).
type allowMarker interface{ markAllowed() }

// forwardAuthWriter adapts the proxy's answers to what an ingress does with them: a
// redirect's Location is made absolute (nginx redirects to it as given), and in nginx's
// convention the status is 401 (a redirect) or 403, with the real one in X-Portcullis-Status.
type forwardAuthWriter struct {
	http.ResponseWriter
	nginx  bool
	base   string // scheme://host of the original request; "" until it is known
	status int
}

func (w *forwardAuthWriter) WriteHeader(code int) {
	if w.status != 0 {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	w.status = code
	h := w.Header()
	if code/100 == 3 {
		if loc := h.Get("Location"); w.base != "" && strings.HasPrefix(loc, "/") && !strings.HasPrefix(loc, "//") {
			h.Set("Location", w.base+loc)
		}
	}
	if w.nginx && code/100 != 2 && code != http.StatusUnauthorized {
		h.Set(hdrFAStatus, strconv.Itoa(code))
		if code/100 == 3 && h.Get("Location") != "" {
			code = http.StatusUnauthorized
		} else {
			code = http.StatusForbidden
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *forwardAuthWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// TagReason implements problem.ReasonTagger: the code travels in X-Portcullis-Reason.
func (w *forwardAuthWriter) TagReason(code reason.Code) {
	if w.status == 0 {
		w.Header().Set(hdrFAReason, string(code))
	}
	if t, ok := w.ResponseWriter.(problem.ReasonTagger); ok {
		t.TagReason(code) // the recorder's, for the refusal counts
	}
}

func (w *forwardAuthWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ingressSet are the managed headers an ingress sets on the question itself and on the
// request to the portal alike (the snippets in examples/ set them; Envoy sets them from the
// attributes), exactly so spelled. Portcullis sees only the question's, so an ingress that
// replaced one on the question alone would pass the client's on: the snippets are tested for
// what the portal receives (cmd/portcullis/e2e_ingress_test.go).
var ingressSet = map[string]bool{
	"X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true, "X-Request-Id": true,
}

// ingressClientAddr are the client-address headers an ingress may set from its peer
// (Traefik's X-Real-Ip, Envoy's X-Envoy-External-Address): accepted only when they are
// exactly the client Portcullis decided for, which an ingress passing the client's own on
// cannot guarantee.
var ingressClientAddr = map[string]bool{"X-Real-Ip": true, "X-Envoy-External-Address": true}

// unsafeClientHeader returns a header of the described request that the proxy would strip
// but that the ingress may pass on to the portal, so the question is refused rather than
// answered; "" when there is none. Those are:
//   - any identity header, in any spelling (X-Portcullis-User, X_Portcullis_User, a route's
//     own X-Remote-Person): no client sends one, and an ingress replaces only the names it
//     was configured with;
//   - any other header of Portcullis's namespace, whatever its spelling;
//   - any other managed header (X-Remote-User, Forwarded, True-Client-IP, X-Forwarded-Port…),
//     except the ingress's own forwarding headers (ingressSet);
//   - a client-address header (server.client_ip_header's, X-Real-Ip, Envoy's) that is not
//     exactly the client's address: the answer carries the first, but a snippet that does
//     not copy it would pass the client's on.
//
// The proxy strips these silently because it forwards the request itself; behind an ingress
// the only safe answer to a request carrying one is a refusal.
func unsafeClientHeader(h http.Header, identityCGI []string, clientIPHeader string, client netip.Addr) string {
	for k, vs := range h {
		if k == clientIPHeader || ingressClientAddr[k] {
			if len(vs) != 1 || !client.IsValid() || vs[0] != client.String() {
				return k
			}
			continue
		}
		if cgiIn(k, identityCGI) || isManaged(k, nil) && !ingressSet[k] {
			return k
		}
	}
	return ""
}
