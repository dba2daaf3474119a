package proxy

import (
	"errors"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
)

// Method overrides. Many frameworks let a request say it is another method than the one on
// its request line: Rails (Rack::MethodOverride), Laravel and Symfony, Spring's
// HiddenHttpMethodFilter and Express's method-override read a `_method` field of a POST (in
// the body, and some in the query), and ASP.NET, Express, Symfony and Laravel also an
// X-HTTP-Method-Override header (X-HTTP-Method in OData, X-Method-Override elsewhere). The
// route table decides a request by its method, so a portal turning an allowed POST into a
// DELETE would act on a request that was never decided as one.
//
// By default the headers never reach the portal (forward.go strips them, by CGI name, like
// identity headers), and a `_method` field is refused where the method matters: on a route
// with methods, with a step-up, that allows overrides, or that an earlier route restricted
// to some methods overlaps (overridePolicy.sensitive). A route with `method_override: allow`
// forwards them, and the request is decided as the method it asks for.

// overrideHeaders are the CGI names of the method-override headers.
var overrideHeaders = [...]string{"X_HTTP_METHOD_OVERRIDE", "X_METHOD_OVERRIDE", "X_HTTP_METHOD"}

// overrideField is the form field frameworks read (Rails, Laravel, Symfony, Spring, Express).
const overrideField = "_method"

// overridable are the methods an override may ask for: what Rack::MethodOverride accepts.
var overridable = []string{"GET", "HEAD", "PUT", "POST", "DELETE", "OPTIONS", "PATCH", "LINK", "UNLINK"}

func isOverrideHeader(name string) bool { return cgiIn(name, overrideHeaders[:]) }

// overridePolicy is what a route does with method overrides, compiled once per
// configuration.
type overridePolicy struct {
	// allow: method_override: allow. The overrides are forwarded and decided on.
	allow bool
	// sensitive: the method can change how a request on this route is decided, so a
	// `_method` field is looked for.
	sensitive bool
}

// compileOverrides computes each route's overridePolicy. A route without methods of its own
// can still be method-sensitive: an earlier route restricted to DELETE on an overlapping path
// would win for a DELETE. Overlap is judged conservatively (any shared host, one path a
// case-insensitive prefix of the other), since a false overlap costs only a body read.
func compileOverrides(routes []config.Route) []overridePolicy {
	out := make([]overridePolicy, len(routes))
	for i := range routes {
		r := &routes[i]
		p := &out[i]
		p.allow = r.MethodOverride == config.MethodOverrideAllow
		// A recovery guard inspects some methods only: a POST the portal runs as a PUT
		// would dodge a guard on PUT.
		p.sensitive = p.allow || len(r.Methods) > 0 || r.StepUp != nil || r.RecoveryGuard != nil
		for j := 0; j < i && !p.sensitive; j++ {
			if len(routes[j].Methods) > 0 && routesOverlap(&routes[j], r) {
				p.sensitive = true
			}
		}
	}
	return out
}

// routesOverlap reports whether some request could match both routes' hosts and paths.
func routesOverlap(a, b *config.Route) bool {
	return hostsOverlap(a.Hosts, b.Hosts) && pathsOverlap(a.Path, b.Path)
}

func hostsOverlap(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		for _, y := range b {
			xs, xw := strings.CutPrefix(x, "*.")
			ys, yw := strings.CutPrefix(y, "*.")
			switch {
			case x == y,
				xw && (strings.HasSuffix(y, "."+xs) || strings.HasSuffix(ys, "."+xs)),
				yw && (strings.HasSuffix(x, "."+ys) || strings.HasSuffix(xs, "."+ys)):
				return true
			}
		}
	}
	return false
}

func pathsOverlap(a, b string) bool {
	a, b = strings.TrimSuffix(a, "/"), strings.TrimSuffix(b, "/")
	return hasPrefixFold(a, b) || hasPrefixFold(b, a)
}

func hasPrefixFold(s, prefix string) bool {
	return len(s) >= len(prefix) && asciiEqualFold(s[:len(prefix)], prefix)
}

// overrides finds what the request asks the portal to treat it as, on route idx matched by
// its own method. It returns the route the request is decided on: idx, or for an allowed
// override the route of the method asked for (ex.method is then that method). The body, if
// read, is restored byte for byte.
func (ex *exchange) overrides(idx int) (int, error) {
	op := ex.st.overrides[idx]
	if !op.sensitive {
		// The headers are stripped when forwarded; a field cannot change the decision.
		return idx, nil
	}
	r := ex.r
	var buf [4]string
	asked := buf[:0]
	if op.allow {
		for name, vs := range r.Header {
			if isOverrideHeader(name) {
				asked = append(asked, vs...)
			}
		}
	}
	fields, err := ex.overrideFields(idx)
	if err != nil {
		return idx, err
	}
	asked = append(asked, fields...)

	method := ""
	for _, v := range asked {
		// Upper-cased as Rack, Laravel, Spring and Express do; anything else a framework
		// would not take as the same method ("DELETE " is no DELETE to Rails) is refused
		// rather than decided as one method and run as another.
		v = strings.ToUpper(v)
		switch {
		case !slices.Contains(overridable, v):
			return idx, ex.overrideRefused("not_a_method")
		case method != "" && v != method:
			return idx, ex.overrideRefused("ambiguous")
		}
		method = v
	}
	if method == "" || method == r.Method {
		return idx, nil
	}
	switch {
	case !op.allow:
		return idx, ex.overrideRefused("not_allowed")
	case r.Method != http.MethodPost:
		// Frameworks override POSTs only: a GET asking to be a DELETE stays a GET there, so
		// deciding it as a DELETE would decide another request than the one run.
		return idx, ex.overrideRefused("not_post")
	}
	j, err := ex.match(method)
	if err != nil {
		return idx, err
	}
	if !ex.st.overrides[j].allow {
		// The route of the method asked for never agreed to be reached this way.
		return idx, ex.overrideRefused("target_not_allowed")
	}
	ex.method = method
	return j, nil
}

// overrideFields returns the values of every `_method` field of a POST (the only method the
// frameworks override): in the query, and in a body frameworks take parameters from (a form,
// any multipart type, JSON, or no Content-Type at all, which Rack reads as a form).
func (ex *exchange) overrideFields(idx int) ([]string, error) {
	r := ex.r
	if r.Method != http.MethodPost {
		return nil, nil
	}
	q := r.URL.RawQuery
	mayQuery := strings.IndexByte(q, '%') >= 0 || containsFold(q, "method")
	ct := r.Header.Values("Content-Type")
	if len(ct) > 1 {
		// Which one counts differs between parsers.
		return nil, ex.overrideRefused("content_type_repeated")
	}
	contentType := ""
	if len(ct) == 1 {
		contentType = ct[0]
	}
	mayBody := r.ContentLength != 0 && inspectedMedia(contentType)
	if !mayQuery && !mayBody {
		return nil, nil
	}
	var body []byte
	if mayBody {
		limit := int64(ex.st.set.Server.BodyInspectionLimit)
		if r.ContentLength > limit {
			ex.w.Header().Set("Connection", "close")
			return nil, reject(reason.BodyTooLarge)
		}
		var err error
		body, err = recoveryid.ReadBody(r.Body, limit)
		switch {
		case errors.Is(err, recoveryid.ErrBodyTooLarge):
			ex.w.Header().Set("Connection", "close")
			return nil, reject(reason.BodyTooLarge)
		case err != nil:
			ex.w.Header().Set("Connection", "close")
			return nil, reject(reason.BodyReadError)
		}
		restoreBody(r, body)
	}
	if strings.TrimSpace(contentType) == "" {
		contentType = "application/x-www-form-urlencoded" // as Rack reads it
	}
	values, detail := recoveryid.FieldValues(overrideField, contentType, q, body)
	if detail != "" {
		if g := ex.st.policies[idx].recovery; g != nil && g.Spec.Guards(r.Method) {
			// The recovery guard reads the same bytes by the same rules and refuses what
			// cannot be read, with its own reason and audit event.
			return nil, nil
		}
		return nil, ex.overrideRefused(detail)
	}
	return values, nil
}

// inspectedMedia reports whether a Content-Type is one frameworks take parameters from: none
// at all, a form, any multipart type, or JSON. An unparsable one is inspected too, and then
// refused.
func inspectedMedia(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	media, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return true
	}
	return media == "application/x-www-form-urlencoded" || strings.HasPrefix(media, "multipart/") ||
		media == "application/json" || strings.HasSuffix(media, "+json") || strings.Contains(media, "/json")
}

func (ex *exchange) overrideRefused(detail string) error {
	ex.s.log.LogAttrs(ex.r.Context(), slog.LevelInfo, "method override refused",
		slog.String("route", ex.routeLabel), slog.String("request_id", ex.requestID),
		slog.String("method", ex.r.Method), slog.String("detail", detail))
	return reject(reason.MethodOverride)
}
