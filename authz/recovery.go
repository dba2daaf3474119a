package authz

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// This file holds the compiled form of a route's account-recovery rule (RecoverySpec) and the
// vocabulary of its outcomes (Problem). ExtractIdentifier (recovery_extract.go) applies a
// spec to one request; CanonicalEmail (recovery_email.go) canonicalises the address found.
// Looking the result up (stale domain, live membership, rate limits) is the caller's job.

// DefaultRecoveryBodyLimit is the body limit of a recovery route that sets none: 64 KiB, far
// more than any password-reset form needs.
const DefaultRecoveryBodyLimit int64 = 64 << 10

// MaxRecoveryBodyLimit caps a configured body limit. The whole body is held in memory and
// parsed on every request to a public route, so the cap bounds what an anonymous client can
// make the proxy hold.
const MaxRecoveryBodyLimit int64 = 1 << 20

// maxPointerDepth bounds a configured JSON pointer, and maxJSONDepth the nesting of a
// request body: recovery payloads are flat, and deep nesting only costs the parser.
const (
	maxPointerDepth = 8
	maxJSONDepth    = 32
)

// IdentifierKind says what the identifier names.
type IdentifierKind string

// Identifier kinds.
const (
	// IdentifierEmail: an email address, canonicalised by CanonicalEmail.
	IdentifierEmail IdentifierKind = "email"
	// IdentifierUsername: a portal username, mapped to a person by an index the caller
	// keeps; validated by ValidUsername.
	IdentifierUsername IdentifierKind = "username"
)

// IdentifierSource says which part of a request carries the identifier.
type IdentifierSource string

// Identifier sources. Each body source admits exactly one media type.
const (
	// SourceForm: a field of an application/x-www-form-urlencoded body.
	SourceForm IdentifierSource = "form"
	// SourceMultipart: a (non-file) part of a multipart/form-data body.
	SourceMultipart IdentifierSource = "multipart"
	// SourceJSON: a string at an RFC 6901 JSON pointer in an application/json body.
	SourceJSON IdentifierSource = "json"
	// SourceQuery: a parameter of the URL query.
	SourceQuery IdentifierSource = "query"
)

// Media types of the body sources.
const (
	mediaForm      = "application/x-www-form-urlencoded"
	mediaMultipart = "multipart/form-data"
	mediaJSON      = "application/json"
)

// IdentifierLocation is one place the identifier may be: a field or parameter name, or for
// SourceJSON a JSON pointer such as "/user/email".
type IdentifierLocation struct {
	Source IdentifierSource
	Name   string
}

// String renders the location as source:name, for logs and messages.
func (l IdentifierLocation) String() string { return string(l.Source) + ":" + l.Name }

// RecoveryRule is the uncompiled recovery rule of a route, as configuration gives it.
type RecoveryRule struct {
	// Methods the guard inspects, such as POST. Empty: every method. Match is
	// ASCII-case-insensitive, so "post" cannot dodge a POST rule on a portal that ignores
	// case. List every method the portal accepts on the path.
	Methods []string
	// Locations where the identifier may be; at least one. The identifier must be found in
	// exactly one of them, exactly once.
	Locations []IdentifierLocation
	// Kind of identifier. Empty means IdentifierEmail.
	Kind IdentifierKind
	// BodyLimit in bytes; 0 means DefaultRecoveryBodyLimit. At most MaxRecoveryBodyLimit.
	BodyLimit int64
}

// RecoverySpec is a route's recovery rule compiled once at configuration load. It is
// immutable and safe to share between goroutines. Build it with NewRecoverySpec; the zero
// RecoverySpec has no locations, so it never finds an identifier.
type RecoverySpec struct {
	methods   []string // upper-case, deduplicated; nil: every method
	locations []location
	kind      IdentifierKind
	bodyLimit int64
	// leaves are the last names of every location (the field name, or the pointer's last
	// token). A key related to one of them anywhere in the request is a candidate, so
	// `user[email]`, `EMAIL` or a query parameter cannot carry a second value past the
	// guard. See relatedKey.
	leaves []string
	// media lists the body media types the locations admit; a body of any other type is
	// refused.
	media []string
}

// location is an IdentifierLocation with its JSON pointer split into unescaped tokens.
type location struct {
	IdentifierLocation
	pointer []string
}

// NewRecoverySpec validates and compiles a rule. The error lists every problem at once,
// each named by its place (e.g. "locations[1].name: ..."), for the configuration loader to
// prefix with the file position.
func NewRecoverySpec(r RecoveryRule) (*RecoverySpec, error) {
	var errs []error
	bad := func(place, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", place, fmt.Sprintf(format, args...)))
	}
	s := &RecoverySpec{kind: r.Kind, bodyLimit: r.BodyLimit}

	switch r.Kind {
	case "":
		s.kind = IdentifierEmail
	case IdentifierEmail, IdentifierUsername:
	default:
		bad("kind", "must be %q or %q, not %q", IdentifierEmail, IdentifierUsername, r.Kind)
	}

	switch {
	case r.BodyLimit == 0:
		s.bodyLimit = DefaultRecoveryBodyLimit
	case r.BodyLimit < 0:
		bad("body_limit", "must not be negative")
	case r.BodyLimit > MaxRecoveryBodyLimit:
		bad("body_limit", "must be at most %d bytes", MaxRecoveryBodyLimit)
	}

	for i, m := range r.Methods {
		if !syntax.Token(m) {
			bad(fmt.Sprintf("methods[%d]", i), "%q is not an HTTP method token", m)
			continue
		}
		m = strings.ToUpper(m)
		if !slices.Contains(s.methods, m) {
			s.methods = append(s.methods, m)
		}
	}

	if len(r.Locations) == 0 {
		bad("locations", "at least one identifier location is required")
	}
	for i, l := range r.Locations {
		place := fmt.Sprintf("locations[%d]", i)
		loc := location{IdentifierLocation: l}
		var leaf string
		switch l.Source {
		case SourceForm, SourceMultipart, SourceQuery:
			if err := checkFieldName(l.Name); err != nil {
				bad(place+".name", "%v", err)
				continue
			}
			leaf = fieldLeaf(l.Name)
		case SourceJSON:
			p, err := parsePointer(l.Name)
			if err != nil {
				bad(place+".name", "%v", err)
				continue
			}
			loc.pointer = p
			leaf = p[len(p)-1]
		default:
			bad(place+".source", "must be form, multipart, json or query, not %q", l.Source)
			continue
		}
		for _, prev := range s.locations {
			if prev.IdentifierLocation == l {
				bad(place, "duplicate of %s", l)
			}
		}
		if leaf == "" {
			bad(place+".name", "%q has no name to match", l.Name)
			continue
		}
		s.locations = append(s.locations, loc)
		if !slices.Contains(s.leaves, leaf) {
			s.leaves = append(s.leaves, leaf)
		}
		if mt := sourceMedia(l.Source); mt != "" && !slices.Contains(s.media, mt) {
			s.media = append(s.media, mt)
		}
	}

	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return s, nil
}

// Guards reports whether the guard inspects requests with this method.
func (s *RecoverySpec) Guards(method string) bool {
	if len(s.methods) == 0 {
		return true
	}
	for _, m := range s.methods {
		if strings.EqualFold(m, method) {
			return true
		}
	}
	return false
}

// Methods returns the inspected methods, upper-case; nil means every method. The slice is
// shared: callers must not modify it.
func (s *RecoverySpec) Methods() []string { return s.methods }

// Kind returns the kind of identifier the route expects.
func (s *RecoverySpec) Kind() IdentifierKind {
	if s.kind == "" {
		return IdentifierEmail
	}
	return s.kind
}

// BodyLimit returns the most body bytes the route accepts.
func (s *RecoverySpec) BodyLimit() int64 {
	if s.bodyLimit <= 0 {
		return DefaultRecoveryBodyLimit
	}
	return s.bodyLimit
}

// ContentTypes returns the body media types the route accepts (none when the identifier is
// only in the query). The slice is new on each call.
func (s *RecoverySpec) ContentTypes() []string {
	return append([]string(nil), s.media...)
}

// Locations returns the configured locations in order. The slice is new on each call.
func (s *RecoverySpec) Locations() []IdentifierLocation {
	out := make([]IdentifierLocation, len(s.locations))
	for i, l := range s.locations {
		out[i] = l.IdentifierLocation
	}
	return out
}

func sourceMedia(src IdentifierSource) string {
	switch src {
	case SourceForm:
		return mediaForm
	case SourceMultipart:
		return mediaMultipart
	case SourceJSON:
		return mediaJSON
	}
	return ""
}

// checkFieldName refuses names no client could send unambiguously: empty, control
// characters, or the form syntax characters themselves.
func checkFieldName(name string) error {
	if name == "" {
		return errors.New("must not be empty")
	}
	if len(name) > 256 {
		return errors.New("longer than 256 bytes")
	}
	for _, c := range []byte(name) {
		if c < 0x20 || c == 0x7f || c == '&' || c == '=' || c == ';' || c == '"' || c == '%' || c == '+' {
			return fmt.Errorf("%q contains a character that is not allowed in a field name", name)
		}
	}
	return nil
}

// parsePointer splits an RFC 6901 pointer into unescaped tokens. The whole document ("")
// and empty tokens are refused: the identifier is always a named member.
func parsePointer(p string) ([]string, error) {
	if p == "" || p[0] != '/' {
		return nil, fmt.Errorf("JSON pointer %q must start with \"/\"", p)
	}
	parts := strings.Split(p[1:], "/")
	if len(parts) > maxPointerDepth {
		return nil, fmt.Errorf("JSON pointer %q is deeper than %d", p, maxPointerDepth)
	}
	for i, t := range parts {
		if t == "" {
			return nil, fmt.Errorf("JSON pointer %q has an empty token", p)
		}
		var b strings.Builder
		for j := 0; j < len(t); j++ {
			if t[j] != '~' {
				b.WriteByte(t[j])
				continue
			}
			if j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1') {
				return nil, fmt.Errorf("JSON pointer %q: \"~\" must be followed by 0 or 1", p)
			}
			if t[j+1] == '0' {
				b.WriteByte('~')
			} else {
				b.WriteByte('/')
			}
			j++
		}
		parts[i] = b.String()
	}
	return parts, nil
}

// ProblemCode is the stable code of a recovery request the guard could not reduce to one
// identifier. Like Reason, it appears unchanged in logs, metrics, audit events and pages.
type ProblemCode string

// Problem codes, in the order ExtractIdentifier checks for them. Every one but
// ProblemIdentifierMissing and ProblemMethodNotGuarded means the request must not be
// forwarded; those two mean there is nothing to check, and the caller decides.
const (
	// ProblemMethodNotGuarded: the method is not one the rule inspects.
	ProblemMethodNotGuarded ProblemCode = "method_not_guarded"
	// ProblemBodyTooLarge: the body exceeds the route's limit.
	ProblemBodyTooLarge ProblemCode = "body_too_large"
	// ProblemContentTypeNotAllowed: a body whose media type (or charset, or Content-Type
	// syntax) the rule's locations do not declare. A portal may still parse it (frameworks
	// sniff, or read JSON sent as text/plain), so it is never forwarded unread.
	ProblemContentTypeNotAllowed ProblemCode = "content_type_not_allowed"
	// ProblemMalformedQuery: the URL query cannot be read unambiguously (bad escape, a ";"
	// separator, a control character in a name).
	ProblemMalformedQuery ProblemCode = "malformed_query"
	// ProblemMalformedBody: the body cannot be read unambiguously in its declared type.
	ProblemMalformedBody ProblemCode = "malformed_body"
	// ProblemIdentifierAmbiguous: the identifier appears more than once, or under a name,
	// shape or place a portal might read differently (see ExtractIdentifier).
	ProblemIdentifierAmbiguous ProblemCode = "identifier_ambiguous"
	// ProblemIdentifierMissing: the identifier appears nowhere.
	ProblemIdentifierMissing ProblemCode = "identifier_missing"
	// ProblemIdentifierInvalid: the identifier was found once but is not a canonical-able
	// email address or an acceptable username; Problem.Detail says why.
	ProblemIdentifierInvalid ProblemCode = "identifier_invalid"
)

// ProblemCodes returns every code ExtractIdentifier can give, in check order, for
// pre-registering metric labels. The slice is new on each call.
func ProblemCodes() []ProblemCode {
	return []ProblemCode{
		ProblemMethodNotGuarded,
		ProblemBodyTooLarge,
		ProblemContentTypeNotAllowed,
		ProblemMalformedQuery,
		ProblemMalformedBody,
		ProblemIdentifierAmbiguous,
		ProblemIdentifierMissing,
		ProblemIdentifierInvalid,
	}
}

// Problem is the outcome of ExtractIdentifier when no identifier was found. The zero Problem
// means an identifier was found.
type Problem struct {
	// Code is the stable code; "" when an identifier was found.
	Code ProblemCode
	// Detail is a short fixed phrase (for identifier_invalid, the CanonicalEmail or
	// ValidUsername reason) for logs and audit events. It never contains request data.
	Detail string
}

// OK reports whether an identifier was found.
func (p Problem) OK() bool { return p.Code == "" }

// Blocks reports whether the request must not be forwarded: every problem except a missing
// identifier and an uninspected method, which leave the decision to the caller.
func (p Problem) Blocks() bool {
	return p.Code != "" && p.Code != ProblemIdentifierMissing && p.Code != ProblemMethodNotGuarded
}

// Status suggests the HTTP status for a blocking problem when the route answers with the
// precise reason: 413, 415, or 400 for anything ambiguous or unparsable. It returns 0 when
// the problem does not block.
func (p Problem) Status() int {
	switch {
	case !p.Blocks():
		return 0
	case p.Code == ProblemBodyTooLarge:
		return 413
	case p.Code == ProblemContentTypeNotAllowed:
		return 415
	}
	return 400
}

// String renders the code with its detail in parentheses, for logs.
func (p Problem) String() string {
	if p.Detail == "" {
		return string(p.Code)
	}
	return string(p.Code) + " (" + p.Detail + ")"
}

// Identifier is the one identifier a recovery request carries.
type Identifier struct {
	// Kind is the route's identifier kind.
	Kind IdentifierKind
	// Location is where it was found.
	Location IdentifierLocation
	// Raw is the value as decoded from the transport (percent-decoding, JSON escapes), with
	// surrounding ASCII whitespace removed. It is personal data: mask or hash it before
	// logging.
	Raw string
	// Local and Domain are CanonicalEmail's result (IdentifierEmail only): the local part as
	// written and the canonical lower-case A-label domain.
	Local, Domain string
}

// Canonical returns the form to look up: local@domain for an email, the username as
// written otherwise.
func (id Identifier) Canonical() string {
	if id.Kind == IdentifierEmail {
		return id.Local + "@" + id.Domain
	}
	return id.Raw
}
