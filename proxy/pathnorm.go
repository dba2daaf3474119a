package proxy

import (
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Request paths the proxy refuses are answered 400 with one of the reason.Path* codes
// (package reason's table says what each stands for). The rules behind them exist because the
// proxy must never have a split view of a path: the path it matches against the route table
// must be exactly the path the upstream acts on. Every construct that a legacy portal, an
// application server or a second decoding step could read differently from us
// (docs/security-cases.md AUTHN-04, PATH-01..05) is either rewritten to one canonical form or
// refused.

// normStackBuf is the size of the on-stack buffers used by normalizePath; longer paths spill
// to the heap, which is fine for the rare path that is both long and not already normal.
const normStackBuf = 256

// normalizePath turns the path of a raw request-target (everything before the first "?",
// exactly as the client sent it) into the one form the proxy matches and forwards.
//
// It returns path, the decoded form used for route matching, and escaped, the form forwarded
// upstream, such that url.URL{Path: path, RawPath: escaped}.EscapedPath() == escaped and
// decoding escaped gives path. When the request must be refused, code is one of the
// reason.Path* codes and the other results are empty.
//
// The rules, applied in a single left-to-right pass:
//   - percent-escapes of unreserved characters (ALPHA DIGIT - . _ ~) are decoded, so "%2e%2e"
//     is ".." and "/%61dmin" is "/admin"; every other escape is kept, with upper-case hex;
//   - raw characters that are legal in practice but not in a URL path (" < > ^ ` { | }) are
//     percent-encoded in escaped, so that escaped is a valid RawPath;
//   - ";params" are stripped from each segment (stripParams) or refused;
//   - empty segments are collapsed ("//admin" is "/admin"), a trailing "/" is kept;
//   - "." and ".." segments are resolved as in RFC 3986 section 5.2.4, after decoding.
//
// A path that is already normal (the common case) is returned unchanged as both results,
// without allocating: this runs on every request.
func normalizePath(rawPath string, stripParams bool) (path, escaped string, code reason.Code) {
	if rawPath == "" || rawPath[0] != '/' {
		return "", "", reason.PathInvalid
	}
	if isNormalPath(rawPath) {
		return rawPath, rawPath, ""
	}
	return normalizeSlow(rawPath, stripParams)
}

// isNormalPath reports whether s (starting with "/") consists only of characters that are
// forwarded as they are and decode to themselves, with no empty, "." or ".." segment.
func isNormalPath(s string) bool {
	seg := 1 // start of the current segment
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == '/' {
			if isDotOrEmpty(s[seg:i]) {
				return false
			}
			seg = i + 1
			continue
		}
		if charClass[c] != classPlain {
			return false
		}
	}
	seg1 := s[seg:]
	return seg1 != "." && seg1 != ".."
}

func isDotOrEmpty(seg string) bool { return seg == "" || seg == "." || seg == ".." }

// Character classes of raw bytes in a request path.
const (
	classInvalid   = iota // refused: control, space, >= 0x80, "?" (never part of a path)
	classPlain            // forwarded as is, decodes to itself
	classEncode           // legal in practice, but must be percent-encoded in a RawPath
	classPercent          // "%"
	classSlash            // "/"
	classSemicolon        // ";"
	classHash             // "#"
	classBackslash        // "\"
)

// charClass classifies every byte value. It is a constant table (no state is ever written
// to it after initialisation).
var charClass = func() (t [256]uint8) {
	for c := 'a'; c <= 'z'; c++ {
		t[c] = classPlain
	}
	for c := 'A'; c <= 'Z'; c++ {
		t[c] = classPlain
	}
	for c := '0'; c <= '9'; c++ {
		t[c] = classPlain
	}
	// unreserved marks, sub-delims except ";", ":" and "@" (RFC 3986 pchar), and "[" "]",
	// which Go's URL.EscapedPath accepts in a RawPath as browsers send them.
	for _, c := range "-._~!$&'()*+,=:@[]" {
		t[c] = classPlain
	}
	for _, c := range "\"<>^`{|}" {
		t[c] = classEncode
	}
	t['%'] = classPercent
	t['/'] = classSlash
	t[';'] = classSemicolon
	t['#'] = classHash
	t['\\'] = classBackslash
	return t
}()

// isUnreserved reports whether c is an RFC 3986 unreserved character, whose escape is
// equivalent to the character itself and is therefore decoded.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

func isHex(c byte) bool { _, ok := unhex(c); return ok }

const upperHex = "0123456789ABCDEF"

// escapeAt decodes the escape "%XX" at s[i]; ok is false if s[i:] does not start with one.
func escapeAt(s string, i int) (b byte, ok bool) {
	if i+2 >= len(s) || s[i] != '%' {
		return 0, false
	}
	hi, ok1 := unhex(s[i+1])
	lo, ok2 := unhex(s[i+2])
	if !ok1 || !ok2 {
		return 0, false
	}
	return hi<<4 | lo, true
}

// decodedAt returns the character a single decoding step yields at s[i] and the index after
// it: a literal byte, or the byte of a valid escape. ok is false at the end of s.
func decodedAt(s string, i int) (c byte, next int, ok bool) {
	if i >= len(s) {
		return 0, i, false
	}
	if b, isEsc := escapeAt(s, i); isEsc {
		return b, i + 3, true
	}
	return s[i], i + 1, true
}

// isDoubleEncoded reports whether what follows a "%25" ending at s[i:] is, after one decoding
// step, something a second decoding step would turn into a character: two hex digits, or
// IIS's "u" and four hex digits.
func isDoubleEncoded(s string, i int) bool {
	c, i, ok := decodedAt(s, i)
	var more int // hex digits still needed
	switch {
	case !ok:
		return false
	case isHex(c):
		more = 1
	case c == 'u' || c == 'U':
		more = 4
	default:
		return false
	}
	for ; more > 0; more-- {
		if c, i, ok = decodedAt(s, i); !ok || !isHex(c) {
			return false
		}
	}
	return true
}

// normalizeSlow is the general case of normalizePath. It writes the decoded path to p and the
// escaped path to e; both always hold "/" followed by the completed segments, each followed
// by "/", then the segment being built, so "." and ".." are resolved as each segment ends.
func normalizeSlow(s string, stripParams bool) (path, escaped string, code reason.Code) {
	var pBuf, eBuf [normStackBuf]byte
	p := append(pBuf[:0], '/')
	e := append(eBuf[:0], '/')
	segP, segE := 1, 1 // where the current segment starts in p and e
	inParams := false  // inside a ";params" part being stripped
	for i := 1; i <= len(s); {
		if i == len(s) || s[i] == '/' {
			// End of a segment. Its content is p[segP:] (== e[segE:] for dot segments,
			// since "." is never kept escaped).
			switch seg := p[segP:]; {
			case len(seg) == 0:
				// Empty (or only ";params"): collapse, except that a final "/" stays.
			case len(seg) == 1 && seg[0] == '.':
				p, e = p[:segP], e[:segE]
			case len(seg) == 2 && seg[0] == '.' && seg[1] == '.':
				if segP == 1 {
					return "", "", reason.PathTraversal
				}
				// Drop ".." and the segment before it, keeping that segment's leading "/".
				p = p[:lastSlash(p[:segP-1])+1]
				e = e[:lastSlash(e[:segE-1])+1]
			default:
				if i < len(s) {
					p = append(p, '/')
					e = append(e, '/')
				}
			}
			segP, segE = len(p), len(e)
			inParams = false
			i++
			continue
		}
		c := s[i]
		switch charClass[c] {
		case classPlain:
			if !inParams {
				p = append(p, c)
				e = append(e, c)
			}
			i++
		case classEncode:
			if !inParams {
				p = append(p, c)
				e = append(e, '%', upperHex[c>>4], upperHex[c&15])
			}
			i++
		case classSemicolon:
			if !stripParams {
				return "", "", reason.PathSemicolon
			}
			inParams = true
			i++
		case classHash:
			return "", "", reason.PathFragment
		case classBackslash:
			return "", "", reason.PathBackslash
		case classInvalid:
			return "", "", reason.PathInvalid
		case classPercent:
			b, ok := escapeAt(s, i)
			if !ok {
				return "", "", reason.PathBadEscape
			}
			switch {
			case b == '/':
				return "", "", reason.PathEncodedSlash
			case b == '\\':
				return "", "", reason.PathEncodedBackslash
			case b < 0x20 || b == 0x7f:
				return "", "", reason.PathEncodedControl
			case b == ';':
				if !stripParams {
					return "", "", reason.PathSemicolon
				}
				inParams = true
				i += 3
			case b == '%' && isDoubleEncoded(s, i+3):
				return "", "", reason.PathDoubleEncoding
			case isUnreserved(b):
				if !inParams {
					p = append(p, b)
					e = append(e, b)
				}
				i += 3
			case b < utf8.RuneSelf:
				if !inParams {
					p = append(p, b)
					e = append(e, '%', upperHex[b>>4], upperHex[b&15])
				}
				i += 3
			default:
				// The first byte of a multi-byte UTF-8 sequence; its continuation bytes
				// must be the escapes that immediately follow.
				var seq [utf8.UTFMax]byte
				n, j := 0, i
				for n < len(seq) {
					b, ok := escapeAt(s, j)
					if !ok {
						break
					}
					seq[n] = b
					n, j = n+1, j+3
				}
				r, size := utf8.DecodeRune(seq[:n])
				if r == utf8.RuneError && size <= 1 {
					return "", "", reason.PathBadUTF8
				}
				if !inParams {
					p = append(p, seq[:size]...)
					for _, b := range seq[:size] {
						e = append(e, '%', upperHex[b>>4], upperHex[b&15])
					}
				}
				i += 3 * size
			}
		}
	}
	// Reuse the input (or the decoded path) for results that equal it, to save allocations.
	if string(p) == s {
		path = s
	} else {
		path = string(p)
	}
	switch {
	case string(e) == s:
		escaped = s
	case string(e) == path:
		escaped = path
	default:
		escaped = string(e)
	}
	return path, escaped, ""
}

// lastSlash returns the index of the last "/" in b (b always starts with one).
func lastSlash(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == '/' {
			return i
		}
	}
	return 0
}
