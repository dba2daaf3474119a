package recoveryid

import (
	"net/mail"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// Reasons CanonicalEmail, CanonicalDomain and ValidUsername give for refusing a value. They
// are stable codes (the Detail of reason.IdentifierInvalid); "" means accepted.
const (
	EmailEmpty          = "empty"
	EmailTooLong        = "too_long"
	EmailInvalidUTF8    = "invalid_utf8"
	EmailControl        = "control_character"
	EmailWhitespace     = "whitespace"
	EmailEncodedWord    = "encoded_word"    // RFC 2047 "=?"
	EmailList           = "list"            // "," or ";": more than one address
	EmailDisplayName    = "display_name"    // "<" or ">": name-addr form
	EmailComment        = "comment"         // "(" or ")"
	EmailQuoted         = "quoted"          // `"`: quoted local part or display name
	EmailQuotedPair     = "quoted_pair"     // `\`
	EmailAddressLiteral = "address_literal" // "[" or "]"
	EmailAtCount        = "at_count"        // not exactly one "@"
	EmailSourceRoute    = "source_route"    // ":" before the "@"
	EmailPort           = "port"            // ":" after the "@"
	EmailPercentBang    = "percent_or_bang" // "%" or "!" routing in the local part
	EmailLocalEmpty     = "local_empty"
	EmailLocalTooLong   = "local_too_long"
	EmailLocalNotASCII  = "local_not_ascii"
	EmailLocalSyntax    = "local_syntax"
	EmailSyntax         = "syntax" // net/mail disagrees with the checks above

	DomainEmpty        = "domain_empty"
	DomainTooLong      = "domain_too_long"
	DomainTrailingDots = "domain_trailing_dots"
	DomainIDNA         = "domain_idna"  // UTS #46 lookup refuses it
	DomainLabel        = "domain_label" // an empty, over-long or non-LDH label
	DomainSingleLabel  = "domain_single_label"
	DomainNumeric      = "domain_numeric" // looks like an IPv4 address
	DomainScript       = "domain_script"  // a script the rule does not know
	DomainMixedScript  = "domain_mixed_script"
	DomainConfusable   = "domain_confusable"

	UsernameNotASCII = "not_ascii"
)

// maxRawEmail bounds the input before any parsing. Mapping can shrink a domain (soft hyphens
// and zero-width characters vanish), so the raw bound is looser than the 254 of the result.
const maxRawEmail = 1024

// CanonicalEmail reduces a recovery identifier to exactly one bare addr-spec, or refuses it
// with a reason. Nothing is guessed: the input may differ from the result only by
// surrounding ASCII whitespace and the domain's canonicalisation.
//
// Accepted: local@domain where local is a non-empty ASCII dot-atom of at most 64 bytes,
// without "%" or "!", and domain is accepted by CanonicalDomain; at most 254 bytes in all;
// and net/mail.ParseAddress agrees, returning no display name and the same address.
//
// Refused outright, because portals, MTAs and mail libraries disagree on what they mean:
// display names and angle brackets, comments, quoted local parts and quoted pairs, group
// and list syntax ("," ";"), source routes and ports (":"), address literals ("[...]"),
// RFC 2047 encoded-words ("=?"), "%" and "!" routing, any "@" but one, any whitespace or
// control character inside, and non-ASCII local parts (a portal may fold "ı" onto "i" or
// the Kelvin sign onto "k" when it looks the account up).
//
// The local part is returned as written: case and +tags are kept, since whether they matter
// is the mail domain's business, and matching accounts is the caller's.
func CanonicalEmail(s string) (local, domain, reason string) {
	s = trimASCIISpace(s)
	switch {
	case s == "":
		return "", "", EmailEmpty
	case len(s) > maxRawEmail:
		return "", "", EmailTooLong
	case !utf8.ValidString(s):
		return "", "", EmailInvalidUTF8
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", "", EmailControl
		}
	}
	// Structure before whitespace, so that "Name <a@b.example>" is reported as the display
	// name it is.
	switch {
	case strings.Contains(s, "=?"):
		return "", "", EmailEncodedWord
	case strings.ContainsAny(s, ",;"):
		return "", "", EmailList
	case strings.ContainsAny(s, "<>"):
		return "", "", EmailDisplayName
	case strings.ContainsAny(s, "()"):
		return "", "", EmailComment
	case strings.Contains(s, `"`):
		return "", "", EmailQuoted
	case strings.Contains(s, `\`):
		return "", "", EmailQuotedPair
	case strings.ContainsAny(s, "[]"):
		return "", "", EmailAddressLiteral
	case strings.ContainsFunc(s, unicode.IsSpace):
		return "", "", EmailWhitespace
	case strings.Count(s, "@") != 1:
		return "", "", EmailAtCount
	}
	local, rawDomain, _ := strings.Cut(s, "@")
	switch {
	case strings.Contains(local, ":"):
		return "", "", EmailSourceRoute
	case strings.Contains(rawDomain, ":"):
		return "", "", EmailPort
	case local == "":
		return "", "", EmailLocalEmpty
	case len(local) > 64:
		return "", "", EmailLocalTooLong
	case !isASCII(local):
		return "", "", EmailLocalNotASCII
	case strings.ContainsAny(local, "%!"):
		return "", "", EmailPercentBang
	case !isDotAtom(local):
		return "", "", EmailLocalSyntax
	}
	domain, reason = CanonicalDomain(rawDomain)
	if reason != "" {
		return "", "", reason
	}
	addr := local + "@" + domain
	if len(addr) > 254 {
		return "", "", EmailTooLong
	}
	// Belt and braces: the standard parser must read the result as the same bare address.
	if a, err := mail.ParseAddress(addr); err != nil || a.Name != "" || a.Address != addr {
		return "", "", EmailSyntax
	}
	return local, domain, ""
}

// CanonicalDomain returns the canonical form of an email or DNS domain: lower-case ASCII,
// A-labels for internationalised labels, no trailing dot. Use it on stored and configured
// domains too, so that both sides of a comparison are canonical.
//
// Steps: UTS #46 lookup mapping and ToASCII (idna.Lookup: it maps "ſ", fullwidth letters,
// the Kelvin sign and U+3002/U+FF0E/U+FF61 full stops, and removes soft hyphens and
// zero-width characters); then one trailing dot is dropped ("..": refused); every label is
// 1-63 LDH characters, the name has at least two labels and at most 253 bytes, and its last
// label is not all digits (an IPv4 address is not a mail domain).
//
// Script rule for look-alikes that do not map: every A-label must decode to a label in one
// script (Latin, Greek, Cyrillic, Armenian, Georgian, Hebrew, Arabic, Thai, the Indic
// scripts below, Hangul, or Han; Japanese may mix Han, Hiragana and Katakana and Korean Han
// and Hangul); Common and Inherited characters (digits, hyphen, combining marks) go with any
// script; other scripts are refused. Within that, a Latin label may not hold a non-ASCII
// letter whose case mapping is ASCII ("ı"), and a Cyrillic or Greek label may not consist
// only of letters that look like Latin ones ("ѕсоре") unless the top-level label is in
// that script too. So "stаle" (Cyrillic а) and "ѕtale" (Cyrillic ѕ) are mixed-script and
// refused.
func CanonicalDomain(s string) (domain, reason string) {
	switch {
	case s == "":
		return "", DomainEmpty
	case len(s) > maxRawEmail:
		return "", DomainTooLong
	case !utf8.ValidString(s):
		return "", EmailInvalidUTF8
	}
	a := strings.ToLower(s)
	if !isASCII(s) || strings.Contains(a, "xn--") {
		// For ASCII without A-labels, lookup mapping is lower-casing and validation is the
		// LDH check below, so the fast path gives the same result without allocating.
		var err error
		if a, err = idna.Lookup.ToASCII(s); err != nil {
			return "", DomainIDNA
		}
		// The result must be canonical itself. It is not always: a mapping can bring in a
		// right-to-left label that makes the name fail the Bidi rule only once mapped
		// ("ℷ.0a" becomes "xn--6db.0a", which ToASCII refuses).
		if again, err := idna.Lookup.ToASCII(a); err != nil || again != a {
			return "", DomainIDNA
		}
	}
	if strings.HasSuffix(a, "..") {
		return "", DomainTrailingDots
	}
	a = strings.TrimSuffix(a, ".")
	switch {
	case a == "":
		return "", DomainEmpty
	case len(a) > 253:
		return "", DomainTooLong
	}
	labels := strings.Split(a, ".")
	if len(labels) < 2 {
		return "", DomainSingleLabel
	}
	for _, l := range labels {
		if !isLDHLabel(l) {
			return "", DomainLabel
		}
	}
	if syntax.Digits(labels[len(labels)-1]) {
		return "", DomainNumeric
	}
	tld := scriptNone
	for i := len(labels) - 1; i >= 0; i-- {
		if !strings.HasPrefix(labels[i], "xn--") {
			if i == len(labels)-1 {
				tld = scriptLatin
			}
			continue
		}
		u, err := idna.Lookup.ToUnicode(labels[i])
		if err != nil {
			return "", DomainIDNA
		}
		sc, reason := labelScript(u)
		if reason != "" {
			return "", reason
		}
		if i == len(labels)-1 {
			tld = sc
		}
		if sc != tld && wholeScriptLookalike(u, sc) {
			return "", DomainConfusable
		}
	}
	return a, ""
}

// DomainCovers reports whether candidate is listed or a subdomain of it, on label
// boundaries: "mail.stale.example" is covered by "stale.example", "evilstale.example" is
// not. Both should be canonical (CanonicalDomain); ASCII case, one trailing dot on either and
// a leading dot on listed (".stale.example") are tolerated. An empty name covers nothing.
func DomainCovers(candidate, listed string) bool {
	c := strings.TrimSuffix(candidate, ".")
	l := strings.TrimPrefix(strings.TrimSuffix(listed, "."), ".")
	if c == "" || l == "" || len(c) < len(l) {
		return false
	}
	if len(c) > len(l) && c[len(c)-len(l)-1] != '.' {
		return false
	}
	return asciiFoldEqual(c[len(c)-len(l):], l)
}

// ValidUsername returns "" when s (after trimming surrounding ASCII whitespace) is an
// acceptable portal username, or the reason it is not: empty, longer than 256 bytes, or
// holding anything but printable ASCII without "," and ";". Non-ASCII is refused for the
// same reason as in local parts: a portal may fold it onto another account's ASCII name.
func ValidUsername(s string) string {
	s = trimASCIISpace(s)
	switch {
	case s == "":
		return EmailEmpty
	case len(s) > 256:
		return EmailTooLong
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= utf8.RuneSelf:
			return UsernameNotASCII
		case c < 0x20 || c == 0x7f:
			return EmailControl
		case c == ' ':
			return EmailWhitespace
		case c == ',' || c == ';':
			return EmailList
		}
	}
	return ""
}

// trimASCIISpace removes surrounding ASCII whitespace only: a Unicode space around an
// address is not something a client sends by accident.
func trimASCIISpace(s string) string {
	return strings.Trim(s, " \t\r\n\v\f")
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// isDotAtom reports whether s is an RFC 5322 dot-atom of ASCII atext.
func isDotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.':
		case strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isLDHLabel reports whether l is a lower-case LDH label of 1 to 63 bytes, not starting or
// ending with a hyphen, with "--" in positions 3-4 only for an A-label ("xn--"), as the
// lookup profile's CheckHyphens requires.
func isLDHLabel(l string) bool {
	if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
		return false
	}
	if len(l) >= 4 && l[2:4] == "--" && !strings.HasPrefix(l, "xn--") {
		return false
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func asciiFoldEqual(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Scripts a domain label may be written in, as bits so a label's set is one word.
const (
	scriptNone  = 0
	scriptLatin = 1 << iota
	scriptGreek
	scriptCyrillic
	scriptArmenian
	scriptGeorgian
	scriptHebrew
	scriptArabic
	scriptThai
	scriptDevanagari
	scriptBengali
	scriptTamil
	scriptHangul
	scriptHiragana
	scriptKatakana
	scriptHan
)

var scriptTables = []struct {
	bit   int
	table *unicode.RangeTable
}{
	{scriptLatin, unicode.Latin},
	{scriptGreek, unicode.Greek},
	{scriptCyrillic, unicode.Cyrillic},
	{scriptArmenian, unicode.Armenian},
	{scriptGeorgian, unicode.Georgian},
	{scriptHebrew, unicode.Hebrew},
	{scriptArabic, unicode.Arabic},
	{scriptThai, unicode.Thai},
	{scriptDevanagari, unicode.Devanagari},
	{scriptBengali, unicode.Bengali},
	{scriptTamil, unicode.Tamil},
	{scriptHangul, unicode.Hangul},
	{scriptHiragana, unicode.Hiragana},
	{scriptKatakana, unicode.Katakana},
	{scriptHan, unicode.Han},
}

// Script combinations one label may use besides a single script (UTS #39 "highly
// restrictive", without Latin).
const (
	mixJapanese = scriptHan | scriptHiragana | scriptKatakana
	mixKorean   = scriptHan | scriptHangul
)

// labelScript returns the script of a U-label, or a reason to refuse it. A label of Common
// and Inherited characters only (digits, hyphens) counts as Latin.
func labelScript(u string) (int, string) {
	set := 0
	for _, r := range u {
		if unicode.In(r, unicode.Common, unicode.Inherited) {
			continue
		}
		bit := 0
		for _, st := range scriptTables {
			if unicode.Is(st.table, r) {
				bit = st.bit
				break
			}
		}
		if bit == 0 {
			return 0, DomainScript
		}
		// A non-ASCII Latin letter whose case mapping is ASCII (dotless ı → I) is read as
		// that ASCII letter by any portal that compares case-insensitively.
		if bit == scriptLatin && r >= utf8.RuneSelf &&
			(unicode.ToUpper(r) < utf8.RuneSelf || unicode.ToLower(r) < utf8.RuneSelf) {
			return 0, DomainConfusable
		}
		set |= bit
	}
	switch {
	case set == 0:
		return scriptLatin, ""
	case set&(set-1) == 0:
		return set, ""
	case set&^mixJapanese == 0 || set&^mixKorean == 0:
		return set, ""
	}
	return 0, DomainMixedScript
}

// Letters of Cyrillic and Greek that look like Latin ones in lower case (after Chrome's IDN
// display rule). A label made only of them reads as a Latin word.
const (
	cyrillicLookalikes = "асԁеһіјӏорԛѕԝхуъьҽпгѵѡ"
	greekLookalikes    = "αικνορτυχ"
)

// wholeScriptLookalike reports whether a Cyrillic or Greek label is made only of letters
// that look Latin (and so could pass for an ASCII name).
func wholeScriptLookalike(u string, script int) bool {
	var set string
	switch script {
	case scriptCyrillic:
		set = cyrillicLookalikes
	case scriptGreek:
		set = greekLookalikes
	default:
		return false
	}
	for _, r := range u {
		if unicode.In(r, unicode.Common, unicode.Inherited) {
			continue
		}
		if !strings.ContainsRune(set, r) {
			return false
		}
	}
	return true
}
