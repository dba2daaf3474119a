package recoveryid

import (
	"strings"
	"testing"
)

// staleDomains is the stale list of docs/security-cases.md §0, canonical.
var staleDomains = []string{"stale.example", "old-corp.example", "kappa-legacy.example", "xn--bcher-alt-q9a.example"}

func isStale(domain string) bool {
	for _, s := range staleDomains {
		if DomainCovers(domain, s) {
			return true
		}
	}
	return false
}

// emailCase is one payload: either the canonical result (and whether the stale list covers
// it), or the reason it is refused.
type emailCase struct {
	name   string
	in     string
	local  string
	domain string
	stale  bool
	reason string
}

// recEmailCases holds every address payload of REC-01..REC-05 and the examples.
// Nothing stale may come out with stale false, and nothing ambiguous may come out at all.
var recEmailCases = []emailCase{
	// Control: forwarded.
	{name: "control", in: "alice@fresh.example", local: "alice", domain: "fresh.example"},

	// REC-01: baseline, case and local-part variations.
	{name: "REC-01 baseline", in: "victim@stale.example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-01 upper", in: "Victim@STALE.EXAMPLE", local: "Victim", domain: "stale.example", stale: true},
	{name: "REC-01 title", in: "victim@Stale.Example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-01 tag", in: "victim+reset@stale.example", local: "victim+reset", domain: "stale.example", stale: true},
	{name: "REC-01 dots", in: "v.i.c.t.i.m@stale.example", local: "v.i.c.t.i.m", domain: "stale.example", stale: true},
	{name: "REC-01 old-corp", in: "victim@old-corp.example", local: "victim", domain: "old-corp.example", stale: true},
	{name: "REC-01 kappa", in: "victim@kappa-legacy.example", local: "victim", domain: "kappa-legacy.example", stale: true},
	{name: "REC-01 a-label", in: "victim@xn--bcher-alt-q9a.example", local: "victim", domain: "xn--bcher-alt-q9a.example", stale: true},

	// REC-02: trailing dots, whitespace and subdomains.
	{name: "REC-02 trailing dot", in: "victim@stale.example.", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-02 two trailing dots", in: "victim@stale.example..", reason: DomainTrailingDots},
	{name: "REC-02 leading space", in: " victim@stale.example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-02 trailing space", in: "victim@stale.example ", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-02 trailing tab", in: "victim@stale.example\t", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-02 subdomain", in: "victim@mail.stale.example", local: "victim", domain: "mail.stale.example", stale: true},
	{name: "REC-02 deep subdomain dot", in: "victim@a.b.stale.example.", local: "victim", domain: "a.b.stale.example", stale: true},
	{name: "REC-02 port", in: "victim@stale.example:25", reason: EmailPort},
	{name: "REC-02 literal", in: "victim@[stale.example]", reason: EmailAddressLiteral},

	// REC-03: quoted local parts, multiple @, routing.
	{name: "REC-03 quoted attacker", in: `"attacker@fresh.example"@stale.example`, reason: EmailQuoted},
	{name: "REC-03 quoted victim", in: `"victim@stale.example"@fresh.example`, reason: EmailQuoted},
	{name: "REC-03 two @ stale first", in: "victim@stale.example@fresh.example", reason: EmailAtCount},
	{name: "REC-03 two @ stale last", in: "victim@fresh.example@stale.example", reason: EmailAtCount},
	{name: "REC-03 percent hack", in: "victim%stale.example@fresh.example", reason: EmailPercentBang},
	{name: "REC-03 bang path", in: "stale.example!victim@fresh.example", reason: EmailPercentBang},
	{name: "REC-03 source route", in: "@fresh.example:victim@stale.example", reason: EmailAtCount},
	{name: "REC-03 escaped @", in: `victim@stale.example\@fresh.example`, reason: EmailQuotedPair},

	// REC-04: comments, display names, encoded-words.
	{name: "REC-04 trailing comment", in: "victim@stale.example(fresh.example)", reason: EmailComment},
	{name: "REC-04 local comment", in: "victim(fresh.example)@stale.example", reason: EmailComment},
	{name: "REC-04 domain comment", in: "victim@(x)stale.example", reason: EmailComment},
	{name: "REC-04 display name", in: "Alice <victim@stale.example>", reason: EmailDisplayName},
	{name: "REC-04 address as name", in: "alice@fresh.example <victim@stale.example>", reason: EmailDisplayName},
	{name: "REC-04 quoted name", in: `"alice@fresh.example" <victim@stale.example>`, reason: EmailDisplayName},
	{name: "REC-04 encoded local", in: "=?utf-8?q?victim=40stale.example?=@fresh.example", reason: EmailEncodedWord},
	{name: "REC-04 encoded whole", in: "=?utf-8?b?dmljdGltQHN0YWxlLmV4YW1wbGU=?=", reason: EmailEncodedWord},
	{name: "REC-04 unterminated", in: "victim@stale.example (unterminated", reason: EmailComment},

	// REC-05: mapped to a stale domain, so canonicalised onto it.
	{name: "REC-05 long s", in: "victim@\u017Ftale.example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 fullwidth", in: "victim@ＳＴＡＬＥ.example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 fullwidth stop", in: "victim@stale\uFF0Eexample", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 ideographic stop", in: "victim@stale\u3002example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 halfwidth stop", in: "victim@stale\uFF61example", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 soft hyphen", in: "victim@stale.exam\u00ADple", local: "victim", domain: "stale.example", stale: true},
	{name: "REC-05 zero width", in: "victim@old-corp.example\u200B", local: "victim", domain: "old-corp.example", stale: true},
	{name: "REC-05 kelvin", in: "victim@\u212Aappa-legacy.example", local: "victim", domain: "kappa-legacy.example", stale: true},
	{name: "REC-05 upper umlaut", in: "victim@BÜCHER-ALT.example", local: "victim", domain: "xn--bcher-alt-q9a.example", stale: true},
	{name: "REC-05 combining", in: "victim@bu\u0308cher-alt.example", local: "victim", domain: "xn--bcher-alt-q9a.example", stale: true},
	{name: "REC-05 dotless i local", in: "v\u0131ctim@stale.example", reason: EmailLocalNotASCII},
	// REC-05: confusables that do not map are refused.
	{name: "REC-05 cyrillic dze", in: "victim@\u0455tale.example", reason: DomainMixedScript},
	{name: "REC-05 cyrillic a", in: "victim@st\u0430le.example", reason: DomainMixedScript},
	{name: "REC-05 cyrillic dze a-label", in: "victim@xn--tale-f9d.example", reason: DomainMixedScript},

	// The examples.
	{name: "issue cyrillic acme", in: "a@\u0430cme.com", reason: DomainMixedScript},
	{name: "issue quoted", in: `"a@b"@acme.com`, reason: EmailQuoted},
	{name: "issue list", in: "a@acme.com,b@evil.com", reason: EmailList},
	{name: "issue display name", in: "Name <a@acme.com>", reason: EmailDisplayName},
	{name: "issue comment", in: "a@acme.com (comment)", reason: EmailComment},
	{name: "issue upper", in: "A@ACME.COM", local: "A", domain: "acme.com"},
}

func TestCanonicalEmailRecoveryCases(t *testing.T) {
	runEmailCases(t, recEmailCases)
}

// More shapes beyond the catalogue: syntax, lengths, scripts.
func TestCanonicalEmailMore(t *testing.T) {
	long := strings.Repeat("a", 63)
	runEmailCases(t, []emailCase{
		{name: "empty", in: "", reason: EmailEmpty},
		{name: "blank", in: " \t ", reason: EmailEmpty},
		{name: "no at", in: "victim.stale.example", reason: EmailAtCount},
		{name: "only at", in: "@", reason: EmailLocalEmpty},
		{name: "no domain", in: "victim@", reason: DomainEmpty},
		{name: "no local", in: "@stale.example", reason: EmailLocalEmpty},
		{name: "semicolon list", in: "a@fresh.example;victim@stale.example", reason: EmailList},
		{name: "group", in: "g: victim@stale.example;", reason: EmailList},
		{name: "inner space", in: "alice@fresh.example victim@stale.example", reason: EmailWhitespace},
		{name: "nbsp", in: "alice\u00A0@fresh.example", reason: EmailWhitespace},
		{name: "ideographic space", in: "alice@fresh\u3000example", reason: EmailWhitespace},
		{name: "crlf header", in: "victim@stale.example\r\nBcc: a@b.example", reason: EmailControl},
		{name: "nul", in: "victim@stale.example\x00.fresh.example", reason: EmailControl},
		{name: "c1", in: "victim@stale.example\u0085", reason: EmailControl},
		{name: "invalid utf8", in: "\xffvictim@stale.example", reason: EmailInvalidUTF8},
		{name: "too long raw", in: strings.Repeat("a", 2000), reason: EmailTooLong},
		{name: "local 64", in: long + "a@fresh.example", local: long + "a", domain: "fresh.example"},
		{name: "local 65", in: long + "aa@fresh.example", reason: EmailLocalTooLong},
		{name: "total 255", in: long + "@" + long + "." + long + "." + strings.Repeat("b", 60) + ".ex", reason: EmailTooLong},
		{name: "leading dot local", in: ".victim@stale.example", reason: EmailLocalSyntax},
		{name: "double dot local", in: "vic..tim@stale.example", reason: EmailLocalSyntax},
		{name: "trailing dot local", in: "victim.@stale.example", reason: EmailLocalSyntax},
		{name: "atext", in: "o'neil/x=y?z^{a}|b~c#d$e&f*g@fresh.example", local: "o'neil/x=y?z^{a}|b~c#d$e&f*g", domain: "fresh.example"},
		{name: "single label", in: "victim@localhost", reason: DomainSingleLabel},
		{name: "ipv4", in: "victim@127.0.0.1", reason: DomainNumeric},
		{name: "underscore", in: "victim@st_ale.example", reason: DomainLabel},
		{name: "leading hyphen", in: "victim@-stale.example", reason: DomainLabel},
		{name: "double hyphen", in: "victim@st--ale.example", reason: DomainLabel},
		{name: "empty label", in: "victim@stale..example", reason: DomainLabel},
		{name: "leading dot domain", in: "victim@.stale.example", reason: DomainLabel},
		{name: "long label", in: "victim@" + long + "a.example", reason: DomainLabel},
		{name: "bad a-label", in: "victim@xn--zz.example", reason: DomainIDNA},
		{name: "upper a-label", in: "victim@XN--BCHER-ALT-Q9A.EXAMPLE", local: "victim", domain: "xn--bcher-alt-q9a.example", stale: true},
		{name: "bidi override", in: "victim@elpmaxe.\u202Eelats", reason: DomainIDNA},
		{name: "dotless i domain", in: "victim@st\u0131le.example", reason: DomainConfusable},
		{name: "cyrillic lookalike word", in: "victim@\u0455\u0441\u043E\u0440\u0435.example", reason: DomainConfusable},
		{name: "cyrillic lookalike under cyrillic tld", in: "victim@\u0441\u043E\u0441\u043E.\u0440\u0444", local: "victim", domain: "xn--n1aahb.xn--p1ai"},
		{name: "cyrillic word", in: "victim@\u043F\u0440\u0438\u043C\u0435\u0440.example", local: "victim", domain: "xn--e1afmkfd.example"},
		{name: "greek lookalike", in: "victim@\u03BF\u03B9\u03BA\u03BF.example", reason: DomainConfusable},
		{name: "latin with accent", in: "victim@caf\u00E9.example", local: "victim", domain: "xn--caf-dma.example"},
		{name: "japanese", in: "victim@\u65E5\u672C\u8A9E\u3072\u3089\u304C\u306A.jp", local: "victim", domain: "xn--v8j0cwa6g1563acvb2w6i.jp"},
		{name: "korean", in: "victim@\uD55C\uAD6D\uC5B4.kr", local: "victim", domain: "xn--3e0bk47br7k.kr"},
		{name: "han and latin", in: "victim@\u65E5\u672Cabc.jp", reason: DomainMixedScript},
		{name: "bidi only after mapping", in: "0@\u2137.0A", reason: DomainIDNA}, // fuzz: not a fixed point before
		{name: "unlisted script", in: "victim@\u1780\u1781.example", reason: DomainScript},
	})
}

func runEmailCases(t *testing.T, cases []emailCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			local, domain, reason := CanonicalEmail(c.in)
			if reason != c.reason || local != c.local || domain != c.domain {
				t.Fatalf("CanonicalEmail(%q) = %q, %q, %q; want %q, %q, %q", c.in, local, domain, reason, c.local, c.domain, c.reason)
			}
			if reason == "" && isStale(domain) != c.stale {
				t.Fatalf("%q: stale = %v, want %v", domain, !c.stale, c.stale)
			}
		})
	}
}

func TestCanonicalDomain(t *testing.T) {
	for _, c := range []struct{ in, want, reason string }{
		{"Stale.Example.", "stale.example", ""},
		{"bücher-alt.example", "xn--bcher-alt-q9a.example", ""},
		{".", "", DomainEmpty},
		{"", "", DomainEmpty},
		{"example", "", DomainSingleLabel},
		{strings.Repeat("a.", 127) + "ex", "", DomainTooLong},
	} {
		got, reason := CanonicalDomain(c.in)
		if got != c.want || reason != c.reason {
			t.Errorf("CanonicalDomain(%q) = %q, %q; want %q, %q", c.in, got, reason, c.want, c.reason)
		}
	}
}

func TestDomainCovers(t *testing.T) {
	for _, c := range []struct {
		candidate, listed string
		want              bool
	}{
		{"stale.example", "stale.example", true},
		{"mail.stale.example", "stale.example", true},
		{"a.b.stale.example", "stale.example", true},
		{"Mail.Stale.Example.", "stale.example", true},
		{"stale.example", ".stale.example", true},
		{"evilstale.example", "stale.example", false},
		{"stale.example.evil", "stale.example", false},
		{"example", "stale.example", false},
		{".stale.example", "stale.example", true}, // not canonical, but no bypass either
		{"stale.example", "", false},
		{"", "stale.example", false},
		{"xn--bcher-alt-q9a.example", "xn--bcher-alt-q9a.example", true},
		{"\u212Aappa-legacy.example", "kappa-legacy.example", false}, // not canonical: no Unicode folding here
	} {
		if got := DomainCovers(c.candidate, c.listed); got != c.want {
			t.Errorf("DomainCovers(%q, %q) = %v, want %v", c.candidate, c.listed, got, c.want)
		}
	}
}

func TestValidUsername(t *testing.T) {
	for _, c := range []struct{ in, reason string }{
		{"bob", ""},
		{" bob.smith@acme ", ""},
		{"", EmailEmpty},
		{"b\u0131b", UsernameNotASCII},
		{"bob smith", EmailWhitespace},
		{"bob\x00", EmailControl},
		{"bob,alice", EmailList},
		{"bob;alice", EmailList},
		{strings.Repeat("b", 257), EmailTooLong},
	} {
		if got := ValidUsername(c.in); got != c.reason {
			t.Errorf("ValidUsername(%q) = %q, want %q", c.in, got, c.reason)
		}
	}
}
