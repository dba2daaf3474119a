// Package syntax holds the lexical rules of the names Portcullis accepts from its
// configuration, from requests and from operators: one function per rule, so that every
// package checking an organisation id, an HTTP token or a run of digits checks the same
// thing. The functions are pure, allocate nothing and run on the request path.
//
// It imports nothing of the project, so every package may use it, config included.
package syntax

import "strings"

// MaxOrgIDLen is the longest organisation id: one DNS label, so that any id fits a host
// pattern such as "{org}.portal.example.com".
const MaxOrgIDLen = 63

// OrgID reports whether s can be an organisation id: 1 to MaxOrgIDLen characters, each a
// lower-case ASCII letter, a digit or "-". Everything that becomes an org id passes through
// it, so "..", "%2e", "/", upper case, spaces and the empty string never reach a Redis key
// or a decision.
func OrgID(s string) bool {
	if len(s) == 0 || len(s) > MaxOrgIDLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// MaxNameLen is the longest role or purpose name a membership may hold.
const MaxNameLen = 64

// Name reports whether s can be a role or purpose name on a membership: 1 to MaxNameLen
// characters, each a lower-case ASCII letter, a digit, "-" or "_".
func Name(s string) bool {
	if len(s) == 0 || len(s) > MaxNameLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// tchar lists the RFC 9110 token characters besides letters and digits.
const tchar = "!#$%&'*+-.^_`|~"

// Token reports whether s is a non-empty RFC 9110 token: the syntax of a method and of a
// header name.
func Token(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(tchar, c) >= 0) {
			return false
		}
	}
	return true
}

// Digits reports whether s is one or more ASCII digits, and nothing else (no sign, no
// space, no Unicode digit).
func Digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
