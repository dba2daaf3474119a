package config

import (
	"fmt"
	"maps"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/recoveryid"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Recovery guard configuration: the parts of RecoveryGuard (types.go), its defaults and its
// checks. The syntax of identifier locations (field names, JSON pointers) is
// internal/recoveryid's, a leaf package: the validator reports its errors at the right keys,
// and a guard that passes is compiled once, here, into RecoveryGuard.Spec, which the proxy
// uses as it is.

// Identifier sources and other enumerations of recovery_guard.
const (
	RecoveryFromForm      = string(recoveryid.SourceForm)
	RecoveryFromMultipart = string(recoveryid.SourceMultipart)
	RecoveryFromJSON      = string(recoveryid.SourceJSON)
	RecoveryFromQuery     = string(recoveryid.SourceQuery)

	RecoveryKindEmail    = string(recoveryid.KindEmail)
	RecoveryKindUsername = string(recoveryid.KindUsername)

	RecoveryBlock   = "block"
	RecoveryAllow   = "allow"
	RecoveryForward = "forward"

	RecoveryGeneric   = "generic"
	RecoveryForbidden = "forbidden"
	RecoveryMirror    = "mirror"

	RecoveryAuditHash = "hash"
	RecoveryAuditMask = "mask"
)

// Recovery limits: the body limits are recoveryid's.
const (
	DefaultRecoveryBodyLimit = int(recoveryid.DefaultBodyLimit)
	MaxRecoveryBodyLimit     = int(recoveryid.MaxBodyLimit)
	maxRecoveryGenericBody   = 64 << 10
)

// DefaultRecoveryGenericBody is the generic answer to a recovery request: the same whether
// the request was forwarded or blocked, and true either way.
const DefaultRecoveryGenericBody = "If an account exists for that address, a reset link is on its way.\n"

// RecoveryIdentifier is one place the identifier may be.
type RecoveryIdentifier struct {
	// From is where the identifier is: form, multipart, json or query.
	From string `yaml:"from"`
	// Name is the field or parameter name, or for json an RFC 6901 pointer ("/user/email").
	Name string `yaml:"name"`
	// Kind is what the field holds: email or username. Default: the guard's kind. A portal
	// that takes either lists both fields, each with its kind.
	Kind string `yaml:"kind"`
}

// RecoveryRateLimit bounds recovery requests in fixed windows. Both limits always apply.
type RecoveryRateLimit struct {
	// PerIdentifier is how many requests one identifier (canonical address or username) may
	// have per window, over all clients. Default 5.
	PerIdentifier int `yaml:"per_identifier"`
	// PerClient is how many requests one client address may make per window. Default 20.
	PerClient int `yaml:"per_client"`
	// Window is the length of a window. Default 1h; from 1s to 24h.
	Window Duration `yaml:"window"`
}

// recoveryGuard checks a route's recovery_guard. It is called from policy.
func (v *validator) recoveryGuard(p string, r *Route) {
	g := r.RecoveryGuard
	if g == nil {
		return
	}
	gp := p + ".recovery_guard"
	errsBefore := len(v.errs)
	v.recoveryPresetCheck(gp, r)
	if !r.Public {
		v.errorf(gp, "is only for public routes: a recovery request comes from someone who cannot sign in")
	}
	seen := map[string]bool{}
	for i, m := range g.Methods {
		mp := fmt.Sprintf("%s.methods[%d]", gp, i)
		switch {
		case !syntax.Token(m):
			v.errorf(mp, "must be an HTTP method such as \"POST\", got %s", v.show(mp, m))
		case strings.ToUpper(m) != m:
			v.errorf(mp, "must be upper-case, got %s", v.show(mp, m))
		case seen[m]:
			v.errorf(mp, "%s is listed twice", v.show(mp, m))
		case len(r.Methods) > 0 && !slices.Contains(r.Methods, m):
			v.errorf(mp, "%s is not one of the route's methods, so the guard would never see it", v.show(mp, m))
		}
		seen[m] = true
	}
	if len(g.Identifier) == 0 {
		v.errorf(gp+".identifier", "at least one identifier location is required, such as {from: form, name: email}")
	}
	type loc struct{ from, name string }
	locs := map[loc]bool{}
	query := false
	for i, id := range g.Identifier {
		ip := fmt.Sprintf("%s.identifier[%d]", gp, i)
		if !v.oneOf(ip+".from", id.From, RecoveryFromForm, RecoveryFromMultipart, RecoveryFromJSON, RecoveryFromQuery) {
			continue
		}
		query = query || id.From == RecoveryFromQuery
		switch err := recoveryid.CheckLocation(recoveryid.Location{Source: recoveryid.Source(id.From), Name: id.Name}); {
		case err != nil:
			v.errorf(ip+".name", "%v", err)
		case locs[loc{id.From, id.Name}]:
			v.errorf(ip, "%s:%s is listed twice", id.From, v.show(ip+".name", id.Name))
		}
		locs[loc{id.From, id.Name}] = true
		if id.Kind != "" {
			v.oneOf(ip+".kind", id.Kind, RecoveryKindEmail, RecoveryKindUsername)
		}
	}
	if query && !slices.Contains(g.Methods, "GET") && (len(r.Methods) == 0 || slices.Contains(r.Methods, "GET")) {
		v.warnf(gp+".methods", "the identifier may be in the query but GET is not inspected: a GET with it is forwarded unchecked")
	}
	v.oneOf(gp+".kind", g.Kind, RecoveryKindEmail, RecoveryKindUsername)
	if g.BodyLimit < 1 || g.BodyLimit > MaxRecoveryBodyLimit {
		v.errorf(gp+".body_limit", "must be from 1 to %d bytes, got %s", MaxRecoveryBodyLimit, v.showInt(gp+".body_limit", g.BodyLimit))
	}
	rl := gp + ".rate_limit"
	for _, f := range []struct {
		key string
		n   int
	}{{"per_identifier", g.RateLimit.PerIdentifier}, {"per_client", g.RateLimit.PerClient}} {
		if f.n < 1 || f.n > 1_000_000 {
			v.errorf(rl+"."+f.key, "must be from 1 to 1000000 requests per window, got %s", v.showInt(rl+"."+f.key, f.n))
		}
	}
	if w := g.RateLimit.Window.D(); w < time.Second || w > 24*time.Hour {
		v.errorf(rl+".window", "must be from 1s to 24h")
	}
	v.oneOf(gp+".unknown_domains", g.UnknownDomains, RecoveryBlock, RecoveryAllow)
	v.oneOf(gp+".missing_identifier", g.MissingIdentifier, RecoveryForward, RecoveryBlock)
	v.oneOf(gp+".blocked_response", g.BlockedResponse, RecoveryGeneric, RecoveryForbidden, RecoveryMirror)
	v.oneOf(gp+".identifier_in_audit", g.IdentifierInAudit, RecoveryAuditHash, RecoveryAuditMask)
	if len(g.GenericBody) > maxRecoveryGenericBody {
		v.errorf(gp+".generic_body", "must be at most %d bytes", maxRecoveryGenericBody)
	}
	if g.GenericStatus < 200 || g.GenericStatus > 399 {
		v.errorf(gp+".generic_status", "must be from 200 to 399, got %s", v.showInt(gp+".generic_status", g.GenericStatus))
	}
	hasLocation := false
	for _, name := range slices.Sorted(maps.Keys(g.GenericHeaders)) {
		hp := gp + ".generic_headers." + name
		switch low := strings.ToLower(name); {
		case !syntax.Token(name):
			v.errorf(hp, "must be a header name")
		case hopByHop[low] || low == "content-length" || low == "content-type" || low == "host":
			v.errorf(hp, "is set by Portcullis (Content-Type from generic_content_type)")
		case strings.ContainsAny(g.GenericHeaders[name], "\r\n\x00"):
			v.errorf(hp, "must not contain line breaks")
		case low == "location":
			hasLocation = true
		}
	}
	if g.GenericStatus >= 300 && g.GenericStatus <= 399 && !hasLocation {
		v.errorf(gp+".generic_status", "%d is a redirect: generic_headers needs a Location", g.GenericStatus)
	}
	if _, _, err := mime.ParseMediaType(g.GenericContentType); err != nil || strings.ContainsAny(g.GenericContentType, "\r\n") {
		v.errorf(gp+".generic_content_type", "must be a media type such as \"text/html; charset=utf-8\"")
	}
	if len(v.errs) == errsBefore {
		v.compileRecovery(gp, g)
	}
}

// compileRecovery compiles a guard that passed validation into g.Spec. NewSpec applies the
// rules the validator just checked, with the same functions, so it does not fail; if it
// ever did, the file is refused rather than served without its guard.
func (v *validator) compileRecovery(gp string, g *RecoveryGuard) {
	rule := recoveryid.Rule{Methods: g.Methods, Kind: recoveryid.Kind(g.Kind), BodyLimit: int64(g.BodyLimit)}
	for _, l := range g.Identifier {
		rule.Locations = append(rule.Locations, recoveryid.Location{Source: recoveryid.Source(l.From), Name: l.Name, Kind: recoveryid.Kind(l.Kind)})
	}
	spec, err := recoveryid.NewSpec(rule)
	if err != nil {
		v.errorf(gp, "cannot be compiled: %v", err)
		return
	}
	g.Spec = spec
}
