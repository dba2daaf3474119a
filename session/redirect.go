package session

import (
	"net/url"
	"strings"
)

// maxRedirectLen bounds a return path; longer ones fall back to "/".
const maxRedirectLen = 2048

// safeRedirect returns rd when it is a same-origin relative path (optionally with a query) that
// every browser resolves on our origin, and false otherwise (the caller then uses "/").
//
// Browsers and Go parse URLs differently (OR-02, OR-04): they strip TAB/CR/LF anywhere, read "\"
// as "/", resolve dot segments, and some components decode percent escapes once more. So rd is
// checked as written and after each of up to three rounds of percent-decoding, and in every form:
// no control character, DEL or backslash anywhere; it starts with exactly one "/"; and no path
// segment is empty, blank, "." or "..", so neither "//host", "/\t/host" nor "/./../\host" can
// climb to another origin or be collapsed into one. Legitimate paths lose little: a path with
// an empty segment ("/a//b") returns to "/" instead.
func safeRedirect(rd string) (string, bool) {
	if rd == "" || len(rd) > maxRedirectLen || strings.ContainsRune(rd, '#') {
		return "", false
	}
	s := rd
	for range 4 {
		if !safePathForm(s) {
			return "", false
		}
		d, err := url.PathUnescape(s)
		if err != nil {
			return "", false
		}
		if d == s {
			break
		}
		s = d
	}
	if !safePathForm(s) {
		return "", false
	}
	return escapeLocation(rd), true
}

// safePathForm checks one form of a candidate return path.
func safePathForm(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return false
		}
	}
	p, _, _ := strings.Cut(s, "?")
	if !strings.HasPrefix(p, "/") {
		return false // scheme ("https:", "javascript:"), relative path or empty
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		t := strings.TrimSpace(strings.Trim(seg, "\v\f\u00a0"))
		if t == "" && i == len(segs)-1 && seg == "" {
			continue // a trailing slash, or "/" itself
		}
		if t == "" || t == "." || t == ".." {
			return false
		}
	}
	return true
}

// escapeLocation percent-encodes the bytes that must not appear raw in a Location header
// (non-ASCII, space, quotes, angle brackets), leaving existing escapes as they are.
func escapeLocation(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 || c == ' ' || c == '"' || c == '<' || c == '>' || c == '`' || c == '{' || c == '}' || c == '|' || c == '^' {
			if b.Len() == 0 {
				b.WriteString(s[:i])
			}
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(c)
		}
	}
	if b.Len() == 0 {
		return s
	}
	return b.String()
}

// SafeReturn is safeRedirect for other packages' detours (the org picker): rd when it is a
// same-origin relative path every browser resolves on our origin, else "/".
func SafeReturn(rd string) string {
	if v, ok := safeRedirect(rd); ok {
		return v
	}
	return "/"
}
