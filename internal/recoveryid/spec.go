package recoveryid

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// This file holds the compiled form of a route's account-recovery rule (Spec) and the
// vocabulary of its outcomes (Problem). Extract (extract.go) applies a spec to one request;
// CanonicalEmail (email.go) canonicalises the address found.

// DefaultBodyLimit is the body limit of a recovery route that sets none: 64 KiB, far
// more than any password-reset form needs.
const DefaultBodyLimit int64 = 64 << 10

// MaxBodyLimit caps a configured body limit. The whole body is held in memory and
// parsed on every request to a public route, so the cap bounds what an anonymous client can
// make the proxy hold.
const MaxBodyLimit int64 = 1 << 20

// maxPointerDepth bounds a configured JSON pointer, and maxJSONDepth the nesting of a
// request body: recovery payloads are flat, and deep nesting only costs the parser.
const (
	maxPointerDepth = 8
	maxJSONDepth    = 32
)

// Kind says what the identifier names.
type Kind string

// Identifier kinds.
const (
	// KindEmail: an email address, canonicalised by CanonicalEmail.
	KindEmail Kind = "email"
	// KindUsername: a portal username, mapped to a person by an index the caller
	// keeps; validated by ValidUsername.
	KindUsername Kind = "username"
)

// Source says which part of a request carries the identifier.
type Source string

// Identifier sources. Each body source admits exactly one media type.
const (
	// SourceForm: a field of an application/x-www-form-urlencoded body.
	SourceForm Source = "form"
	// SourceMultipart: a (non-file) part of a multipart/form-data body.
	SourceMultipart Source = "multipart"
	// SourceJSON: a string at an RFC 6901 JSON pointer in an application/json body.
	SourceJSON Source = "json"
	// SourceQuery: a parameter of the URL query.
	SourceQuery Source = "query"
)

// Media types of the body sources.
const (
	mediaForm      = "application/x-www-form-urlencoded"
	mediaMultipart = "multipart/form-data"
	mediaJSON      = "application/json"
)

// Location is one place the identifier may be: a field or parameter name, or for
// SourceJSON a JSON pointer such as "/user/email", and what is found there. A portal that
// takes either an address or a username lists both fields, each with its kind; a request
// must still carry exactly one identifier.
type Location struct {
	Source Source
	Name   string
	// Kind is what the field holds; empty means the rule's Kind.
	Kind Kind
}

// at reports whether l is the place src:name, whatever its kind.
func (l Location) at(src Source, name string) bool { return l.Source == src && l.Name == name }

// String renders the location as source:name, for logs and messages.
func (l Location) String() string { return string(l.Source) + ":" + l.Name }

// Rule is the uncompiled recovery rule of a route, as configuration gives it.
type Rule struct {
	// Methods the guard inspects, such as POST. Empty: every method. Match is
	// ASCII-case-insensitive, so "post" cannot dodge a POST rule on a portal that ignores
	// case. List every method the portal accepts on the path.
	Methods []string
	// Locations where the identifier may be; at least one. The identifier must be found in
	// exactly one of them, exactly once.
	Locations []Location
	// Kind of identifier of the locations that name none. Empty means KindEmail.
	Kind Kind
	// BodyLimit in bytes; 0 means DefaultBodyLimit. At most MaxBodyLimit.
	BodyLimit int64
}

// Spec is a route's recovery rule compiled once at configuration load. It is
// immutable and safe to share between goroutines. Build it with NewSpec; the zero
// Spec has no locations, so it never finds an identifier.
type Spec struct {
	methods   []string // upper-case, deduplicated; nil: every method
	locations []location
	kind      Kind
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

// location is a Location compiled: its JSON pointer split into unescaped tokens, and its
// leaf (the field name, or the pointer's last token).
type location struct {
	Location
	pointer []string
	leaf    string
}

// NewSpec validates and compiles a rule. The error lists every problem at once,
// each named by its place (e.g. "locations[1].name: ..."), for the configuration loader to
// prefix with the file position.
func NewSpec(r Rule) (*Spec, error) {
	var errs []error
	bad := func(place, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", place, fmt.Sprintf(format, args...)))
	}
	s := &Spec{kind: r.Kind, bodyLimit: r.BodyLimit}

	switch r.Kind {
	case "":
		s.kind = KindEmail
	case KindEmail, KindUsername:
	default:
		bad("kind", "must be %q or %q, not %q", KindEmail, KindUsername, r.Kind)
	}

	switch {
	case r.BodyLimit == 0:
		s.bodyLimit = DefaultBodyLimit
	case r.BodyLimit < 0:
		bad("body_limit", "must not be negative")
	case r.BodyLimit > MaxBodyLimit:
		bad("body_limit", "must be at most %d bytes", MaxBodyLimit)
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
		loc, err := parseLocation(l)
		if err != nil {
			field := ".name"
			if l.Source != SourceForm && l.Source != SourceMultipart && l.Source != SourceQuery && l.Source != SourceJSON {
				field = ".source"
			}
			bad(place+field, "%v", err)
			continue
		}
		switch l.Kind {
		case "":
			loc.Kind = s.kind
		case KindEmail, KindUsername:
		default:
			bad(place+".kind", "must be %q or %q, not %q", KindEmail, KindUsername, l.Kind)
		}
		if slices.ContainsFunc(s.locations, func(prev location) bool { return prev.at(l.Source, l.Name) }) {
			bad(place, "duplicate of %s", l)
			continue
		}
		s.locations = append(s.locations, loc)
		if !slices.Contains(s.leaves, loc.leaf) {
			s.leaves = append(s.leaves, loc.leaf)
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
func (s *Spec) Guards(method string) bool {
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
func (s *Spec) Methods() []string { return s.methods }

// Kinds reports which kinds of identifier the route's locations hold.
func (s *Spec) Kinds() (email, username bool) {
	for _, l := range s.locations {
		email = email || l.Kind == KindEmail
		username = username || l.Kind == KindUsername
	}
	return email, username
}

// BodyLimit returns the most body bytes the route accepts.
func (s *Spec) BodyLimit() int64 {
	if s.bodyLimit <= 0 {
		return DefaultBodyLimit
	}
	return s.bodyLimit
}

// ContentTypes returns the body media types the route accepts (none when the identifier is
// only in the query). The slice is new on each call.
func (s *Spec) ContentTypes() []string {
	return append([]string(nil), s.media...)
}

// Locations returns the configured locations in order, each with its kind. The slice is new
// on each call.
func (s *Spec) Locations() []Location {
	out := make([]Location, len(s.locations))
	for i, l := range s.locations {
		out[i] = l.Location
	}
	return out
}

func sourceMedia(src Source) string {
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

// parseLocation checks l and returns it with its JSON pointer split and its leaf: the one
// place the syntax of a configured location is decided (config reports its errors at the
// identifier's key, NewSpec compiles with it). Messages are written for the configuration.
func parseLocation(l Location) (location, error) {
	loc := location{Location: l}
	switch l.Source {
	case SourceForm, SourceMultipart, SourceQuery:
		if msg := fieldNameProblem(l.Name); msg != "" {
			return loc, errors.New(msg)
		}
		loc.leaf = fieldLeaf(l.Name)
	case SourceJSON:
		p, msg := parsePointer(l.Name)
		if msg != "" {
			return loc, errors.New(msg)
		}
		loc.pointer, loc.leaf = p, p[len(p)-1]
	default:
		return loc, fmt.Errorf("must be form, multipart, json or query, not %q", l.Source)
	}
	if loc.leaf == "" {
		return loc, errors.New("has no name to match")
	}
	return loc, nil
}

// CheckLocation reports what is wrong with the name of a location whose source is valid, or
// nil: the error's text is written to follow the configuration key of the name.
func CheckLocation(l Location) error {
	_, err := parseLocation(l)
	return err
}

// fieldNameProblem refuses names no client could send unambiguously: empty, control
// characters, or the form syntax characters themselves.
func fieldNameProblem(name string) string {
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
	return ""
}

// parsePointer splits an RFC 6901 pointer into unescaped tokens. The whole document ("")
// and empty tokens are refused: the identifier is always a named member.
func parsePointer(p string) ([]string, string) {
	if p == "" || p[0] != '/' {
		return nil, `must be a JSON pointer such as "/email" or "/user/email"`
	}
	parts := strings.Split(p[1:], "/")
	if len(parts) > maxPointerDepth {
		return nil, fmt.Sprintf("must be at most %d levels deep", maxPointerDepth)
	}
	for i, t := range parts {
		if t == "" {
			return nil, "must not have an empty token"
		}
		var b strings.Builder
		for j := 0; j < len(t); j++ {
			if t[j] != '~' {
				b.WriteByte(t[j])
				continue
			}
			if j+1 == len(t) || (t[j+1] != '0' && t[j+1] != '1') {
				return nil, `"~" must be followed by 0 or 1`
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
	return parts, ""
}

// ProblemCodes returns every code Extract can give, in check order (package reason's
// table says what each means), for metric labels and exhaustive tests. Every one but
// reason.IdentifierMissing and reason.MethodNotGuarded means the request must not be
// forwarded; those two mean there is nothing to check, and the caller decides. The slice is
// new on each call.
func ProblemCodes() []reason.Code {
	return []reason.Code{
		reason.MethodNotGuarded,
		reason.BodyTooLarge,
		reason.ContentTypeNotAllowed,
		reason.MalformedQuery,
		reason.MalformedBody,
		reason.IdentifierAmbiguous,
		reason.IdentifierMissing,
		reason.IdentifierInvalid,
	}
}

// Problem is the outcome of Extract when no identifier was found. The zero Problem
// means an identifier was found.
type Problem struct {
	// Code is the stable code; "" when an identifier was found.
	Code reason.Code
	// Detail is a short fixed phrase (for identifier_invalid, the CanonicalEmail or
	// ValidUsername reason) for logs and audit events. It never contains request data.
	Detail string
}

// OK reports whether an identifier was found.
func (p Problem) OK() bool { return p.Code == "" }

// Blocks reports whether the request must not be forwarded: every problem except a missing
// identifier and an uninspected method, which leave the decision to the caller.
func (p Problem) Blocks() bool {
	return p.Code != "" && p.Code != reason.IdentifierMissing && p.Code != reason.MethodNotGuarded
}

// Status is the HTTP status of a blocking problem, as package reason's table gives it: 413,
// 415, or 400 for anything ambiguous or unparsable. It returns 0 when the problem does not
// block.
func (p Problem) Status() int {
	if !p.Blocks() {
		return 0
	}
	return reason.Of(p.Code).Status
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
	// Kind is the kind of the location it was found at.
	Kind Kind
	// Location is where it was found.
	Location Location
	// Raw is the value as decoded from the transport (percent-decoding, JSON escapes), with
	// surrounding ASCII whitespace removed. It is personal data: mask or hash it before
	// logging.
	Raw string
	// Local and Domain are CanonicalEmail's result (KindEmail only): the local part as
	// written and the canonical lower-case A-label domain.
	Local, Domain string
}

// LookupKey is the identifier as the person indexes and the rate-limit counters know it: an
// email lower-cased (local part included, as at sign-in), a username as written.
func (id Identifier) LookupKey() string {
	if id.Kind == KindEmail {
		return strings.ToLower(id.Canonical())
	}
	return id.Raw
}

// AuditHash is how logs and audit events name an identifier by default: "sha256:" and the hex
// of the first 16 bytes of SHA-256 over "portcullis/recovery-audit\x00" and its LookupKey.
func (id Identifier) AuditHash() string {
	sum := sha256.Sum256([]byte("portcullis/recovery-audit\x00" + id.LookupKey()))
	return "sha256:" + hex.EncodeToString(sum[:16])
}

// Canonical returns the form to look up: local@domain for an email, the username as
// written otherwise.
func (id Identifier) Canonical() string {
	if id.Kind == KindEmail {
		return id.Local + "@" + id.Domain
	}
	return id.Raw
}
