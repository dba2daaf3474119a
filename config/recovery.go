package config

import (
	"fmt"
	"mime"
	"slices"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Recovery guard configuration: the parts of RecoveryGuard (types.go), its defaults and its
// checks. The checks mirror what authz.NewRecoverySpec accepts (config may import no other
// project package, so it cannot call it); package proxy compiles the rule with
// NewRecoverySpec and refuses, never forwards, if the two ever disagree.

// Identifier sources and other enumerations of recovery_guard.
const (
	RecoveryFromForm      = "form"
	RecoveryFromMultipart = "multipart"
	RecoveryFromJSON      = "json"
	RecoveryFromQuery     = "query"

	RecoveryKindEmail    = "email"
	RecoveryKindUsername = "username"

	RecoveryBlock   = "block"
	RecoveryAllow   = "allow"
	RecoveryForward = "forward"

	RecoveryGeneric   = "generic"
	RecoveryForbidden = "forbidden"

	RecoveryAuditHash = "hash"
	RecoveryAuditMask = "mask"
)

// Recovery limits, the same as package authz's.
const (
	DefaultRecoveryBodyLimit = 64 << 10
	MaxRecoveryBodyLimit     = 1 << 20
	maxRecoveryPointerDepth  = 8
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
		var msg string
		if id.From == RecoveryFromJSON {
			msg = recoveryPointerProblem(id.Name)
		} else {
			msg = recoveryFieldProblem(id.Name)
		}
		switch {
		case msg != "":
			v.errorf(ip+".name", "%s", msg)
		case locs[loc{id.From, id.Name}]:
			v.errorf(ip, "%s:%s is listed twice", id.From, v.show(ip+".name", id.Name))
		}
		locs[loc{id.From, id.Name}] = true
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
	v.oneOf(gp+".blocked_response", g.BlockedResponse, RecoveryGeneric, RecoveryForbidden)
	v.oneOf(gp+".identifier_in_audit", g.IdentifierInAudit, RecoveryAuditHash, RecoveryAuditMask)
	if len(g.GenericBody) > maxRecoveryGenericBody {
		v.errorf(gp+".generic_body", "must be at most %d bytes", maxRecoveryGenericBody)
	}
	if _, _, err := mime.ParseMediaType(g.GenericContentType); err != nil || strings.ContainsAny(g.GenericContentType, "\r\n") {
		v.errorf(gp+".generic_content_type", "must be a media type such as \"text/html; charset=utf-8\"")
	}
}

// recoveryFieldProblem mirrors authz's checkFieldName: names no client could send
// unambiguously are refused.
func recoveryFieldProblem(name string) string {
	switch {
	case name == "":
		return "is required"
	case len(name) > 256:
		return "must be at most 256 bytes"
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f || strings.IndexByte(`&=;"%+`, c) >= 0 {
			return `must not contain control characters or any of & = ; " % +`
		}
	}
	if strings.Trim(name, "[]. ") == "" {
		return "has no name to match"
	}
	return ""
}

// recoveryPointerProblem mirrors authz's parsePointer: an RFC 6901 pointer to a named member,
// at most 8 deep.
func recoveryPointerProblem(p string) string {
	if p == "" || p[0] != '/' {
		return `must be a JSON pointer such as "/email" or "/user/email"`
	}
	parts := strings.Split(p[1:], "/")
	if len(parts) > maxRecoveryPointerDepth {
		return fmt.Sprintf("must be at most %d levels deep", maxRecoveryPointerDepth)
	}
	for _, t := range parts {
		if t == "" {
			return "must not have an empty token"
		}
		for j := 0; j < len(t); j++ {
			if t[j] == '~' && (j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1')) {
				return `"~" must be followed by 0 or 1`
			}
		}
	}
	return ""
}
