package proxy

import (
	"net/http"
	"net/netip"
	"strings"

	"github.com/portcullis-proxy/portcullis/session"
)

// managedHeaders are the request headers only the proxy may set, or that must never reach a
// portal from a client because some component trusts them for routing or identity. They are
// compared by CGI name (upper case, every non-alphanumeric byte as "_"), because CGI/WSGI/PHP
// backends fold "X_Forwarded_For", "X.Forwarded.For" and "X-Forwarded-For" into one variable
// while Go keeps them as distinct keys (security cases HDR-01, HDR-02, AUTHN-02).
var managedHeaders = []string{
	"FORWARDED",
	"X_FORWARDED_FOR",
	"X_FORWARDED_HOST",
	"X_FORWARDED_PROTO",
	"X_FORWARDED_PORT",
	"X_FORWARDED_SERVER",
	"X_FORWARDED_URI",
	"X_FORWARDED_PATH",
	"X_FORWARDED_PREFIX",
	"X_FORWARDED_USER",
	"X_FORWARDED_EMAIL",
	"X_FORWARDED_GROUPS",
	"X_ORIGINAL_URI",
	"X_ORIGINAL_URL",
	"X_REWRITE_URL",
	"X_REAL_IP",
	"X_CLIENT_IP",
	// The client-address family that portals, application servers and CDNs read: a client
	// naming its own address in any of them could pass an IP allow-list or poison a log.
	// server.client_ip_header sets one of them from the real peer.
	"TRUE_CLIENT_IP",
	"CF_CONNECTING_IP",
	"CF_CONNECTING_IPV6",
	"CF_PSEUDO_IPV4",
	"FASTLY_CLIENT_IP",
	"X_CLUSTER_CLIENT_IP",
	"X_ORIGINATING_IP",
	"X_REMOTE_IP",
	"X_REMOTE_ADDR",
	"CLIENT_IP",
	"X_FORWARDED",
	"X_ORIGINAL_FORWARDED_FOR",
	"X_PROXYUSER_IP",
	"WL_PROXY_CLIENT_IP",
	"PROXY_CLIENT_IP",
	"X_ENVOY_EXTERNAL_ADDRESS",
	"X_AZURE_CLIENTIP",
	"X_APPENGINE_USER_IP",
	"AKAMAI_CLIENT_IP",
	"X_CLIENT_ADDR",
	"X_REQUEST_ID",
	"X_AUTH_REQUEST_USER",
	"X_AUTH_REQUEST_EMAIL",
	"X_REMOTE_USER",
	"REMOTE_USER",
	"X_WEBAUTH_USER",
}

// managedPrefix catches every header of Portcullis's own namespace, whatever its spelling.
const managedPrefix = "X_PORTCULLIS_"

// cgiEqual reports whether header name h has the CGI name c (c is already upper case with "_").
// It does not allocate: it runs for every header of every request.
func cgiEqual(h, c string) bool {
	if len(h) != len(c) {
		return false
	}
	for i := 0; i < len(h); i++ {
		if cgiByte(h[i]) != c[i] {
			return false
		}
	}
	return true
}

// cgiSame reports whether header names a and b have the same CGI name (cgiEqual is the
// faster form, for the every-request checks, when one side is a CGI name already).
func cgiSame(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if cgiByte(a[i]) != cgiByte(b[i]) {
			return false
		}
	}
	return true
}

func cgiHasPrefix(h, prefix string) bool {
	return len(h) >= len(prefix) && cgiEqual(h[:len(prefix)], prefix)
}

func cgiByte(b byte) byte {
	switch {
	case 'a' <= b && b <= 'z':
		return b - ('a' - 'A')
	case 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return b
	default:
		return '_'
	}
}

// isManaged reports whether a client-sent header must be dropped before forwarding.
func isManaged(name string, extra []string) bool {
	if cgiHasPrefix(name, managedPrefix) {
		return true
	}
	return cgiIn(name, managedHeaders) || cgiIn(name, extra)
}

// cgiIn reports whether header name h has one of the CGI names cs.
func cgiIn(h string, cs []string) bool {
	for _, c := range cs {
		if cgiEqual(h, c) {
			return true
		}
	}
	return false
}

// stripManaged deletes from h every header whose CGI name is managed. extra holds additional
// CGI names (every route's identity headers); overrides also deletes the method-override
// headers (override.go).
func stripManaged(h http.Header, extra []string, overrides bool) {
	for name := range h {
		if isManaged(name, extra) || overrides && isOverrideHeader(name) {
			delete(h, name)
		}
	}
}

// cgiName converts a header name to its CGI form, for configuration-time use.
func cgiName(h string) string {
	b := []byte(h)
	for i := range b {
		b[i] = cgiByte(b[i])
	}
	return string(b)
}

// clientAddr returns the address of the client: the TCP peer, or, when the peer is a trusted
// proxy, the right-most address in X-Forwarded-For that is not itself trusted. It also returns
// the X-Forwarded-For chain to send upstream. Untrusted peers' forwarding headers are ignored
// entirely (AUTHN-02: a default trust of everyone is the bug).
func clientAddr(r *http.Request, trusted []netip.Prefix) (client netip.Addr, chain string) {
	peer, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, ""
	}
	client = peer.Addr().Unmap()
	if len(trusted) == 0 || !isTrusted(client, trusted) {
		return client, client.String()
	}
	prior := r.Header.Values("X-Forwarded-For")
	var hops []netip.Addr
	for _, v := range prior {
		for part := range strings.SplitSeq(v, ",") {
			a, err := netip.ParseAddr(strings.TrimSpace(part))
			if err != nil {
				// A garbled chain cannot be believed; fall back to the peer alone.
				return client, client.String()
			}
			hops = append(hops, a.Unmap())
		}
	}
	hops = append(hops, client)
	// Walk from the right: the first untrusted hop is the client.
	for i := len(hops) - 1; i >= 0; i-- {
		if !isTrusted(hops[i], trusted) || i == 0 {
			client = hops[i]
			hops = hops[i:]
			break
		}
	}
	parts := make([]string, len(hops))
	for i, h := range hops {
		parts[i] = h.String()
	}
	return client, strings.Join(parts, ", ")
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// ownCookies are Portcullis's cookies. They are removed from what the portal receives: a
// portal that logs or echoes its Cookie header would otherwise hold a replayable session.
var ownCookies = []string{session.CookieName, session.LoginCookieName}

// stripOwnCookies removes Portcullis's cookies (in any letter case) from the Cookie headers,
// keeping every other cookie byte for byte.
func stripOwnCookies(h http.Header) {
	vals := h["Cookie"]
	if len(vals) == 0 {
		return
	}
	found := false
	for _, v := range vals {
		if containsFold(v, "portcullis") {
			found = true
			break
		}
	}
	if !found {
		return
	}
	var kept []string
	for _, v := range vals {
		var parts []string
		for part := range strings.SplitSeq(v, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(part), "=")
			if isOwnCookie(strings.TrimSpace(name)) {
				continue
			}
			if p := strings.TrimSpace(part); p != "" {
				parts = append(parts, p)
			}
		}
		if len(parts) > 0 {
			kept = append(kept, strings.Join(parts, "; "))
		}
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = kept
}

func isOwnCookie(name string) bool {
	for _, c := range ownCookies {
		if strings.EqualFold(name, c) {
			return true
		}
	}
	return false
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}
