package authz

import (
	"errors"
	"fmt"
	"net/textproto"
	"strings"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// source is where a resolver looks; the zero value resolves nothing (fail closed).
type source uint8

const (
	sourceNone source = iota
	sourceHost
	sourcePath
	sourceHeader
	sourceSession
)

// OrgResolver finds the organisation a request acts for, as one route's `org` section says.
// It is built once by NewOrgResolver, immutable, and safe for concurrent use. The zero
// OrgResolver resolves nothing.
type OrgResolver struct {
	src source
	// hostSuffix is the host pattern after "{org}", including the leading dot.
	hostSuffix string
	segment    int    // 1-based path segment
	header     string // canonical header name
}

// NewOrgResolver compiles a route's organisation source. A nil s, or an empty From, means the
// session's choice from the org picker (the configuration default).
func NewOrgResolver(s *config.OrgSource) (OrgResolver, error) {
	if s == nil {
		return OrgResolver{src: sourceSession}, nil
	}
	switch s.From {
	case config.OrgFromSession, "":
		return OrgResolver{src: sourceSession}, nil
	case config.OrgFromHost:
		suffix, ok := config.OrgHostSuffix(s.Host)
		if !ok {
			return OrgResolver{}, fmt.Errorf("org source: host pattern %q: must be \"{org}.\" followed by a lower-case DNS name", s.Host)
		}
		return OrgResolver{src: sourceHost, hostSuffix: suffix}, nil
	case config.OrgFromPath:
		if s.PathSegment < 1 {
			return OrgResolver{}, fmt.Errorf("org source: path segment %d: must be 1 or more", s.PathSegment)
		}
		return OrgResolver{src: sourcePath, segment: s.PathSegment}, nil
	case config.OrgFromHeader:
		if s.Header == "" {
			return OrgResolver{}, errors.New("org source: header name is empty")
		}
		// Canonical once here, so http.Header.Get finds it without canonicalising per request.
		return OrgResolver{src: sourceHeader, header: textproto.CanonicalMIMEHeaderKey(s.Header)}, nil
	default:
		return OrgResolver{}, fmt.Errorf("org source: from %q: must be host, path, header or session", s.From)
	}
}

// From returns the source's name (host, path, header or session), or "" for the zero
// resolver; for logs.
func (r OrgResolver) From() string {
	switch r.src {
	case sourceHost:
		return config.OrgFromHost
	case sourcePath:
		return config.OrgFromPath
	case sourceHeader:
		return config.OrgFromHeader
	case sourceSession:
		return config.OrgFromSession
	}
	return ""
}

// Header returns the canonical name of the header the org id is read from, or "" when the
// source is not a header. The proxy removes it from requests that do not come from a trusted
// proxy, like every identity header.
func (r OrgResolver) Header() string { return r.header }

// Resolve returns the organisation id a request acts for, and false when none can be
// determined; the caller then refuses an org-scoped route with reason.NoOrg.
//
// host must already be lower-case and without port, and path the router's normalised path:
// Resolve does not normalise, it refuses. header reads a request header's values
// (http.Header.Values); it is consulted only when fromTrustedProxy is true, because anyone
// else could name any org, and a header sent more than once names no org: which of the
// values counts would be a choice the portal may make differently.
// sessionOrg is the org the person chose in the org picker. Whatever the source, the result
// is a valid org id (syntax.OrgID) or nothing. Resolve allocates nothing for host, path and
// session sources.
func (r OrgResolver) Resolve(host, path string, header func(string) []string, fromTrustedProxy bool, sessionOrg string) (org string, ok bool) {
	switch r.src {
	case sourceHost:
		org, ok = strings.CutSuffix(host, r.hostSuffix)
		// syntax.OrgID refuses dots, so the pattern's {org} is exactly one label.
	case sourcePath:
		org, ok = pathSegment(path, r.segment)
	case sourceHeader:
		if fromTrustedProxy && header != nil {
			if vs := header(r.header); len(vs) == 1 {
				org, ok = vs[0], true
			}
		}
	case sourceSession:
		org, ok = sessionOrg, true
	}
	if !ok || !syntax.OrgID(org) {
		return "", false
	}
	return org, true
}

// pathSegment returns the n-th (1-based) segment of an absolute path: in "/orgs/acme/x",
// segment 2 is "acme". A path too short has no such segment. An empty segment at or before
// the n-th ("//acme") is refused rather than counted or skipped: a normalised path has none,
// and an upstream that collapses "//" would count the segments differently from us.
func pathSegment(path string, n int) (string, bool) {
	if n < 1 || !strings.HasPrefix(path, "/") {
		return "", false
	}
	rest := path[1:]
	for i := 1; ; i++ {
		seg, after, more := strings.Cut(rest, "/")
		if seg == "" {
			return "", false
		}
		if i == n {
			return seg, true
		}
		if !more {
			return "", false
		}
		rest = after
	}
}
