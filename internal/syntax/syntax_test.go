package syntax

import (
	"strings"
	"testing"
)

func TestOrgID(t *testing.T) {
	for _, ok := range []string{"acme", "a", "acme-corp", "x9", "0", strings.Repeat("a", MaxOrgIDLen)} {
		if !OrgID(ok) {
			t.Errorf("OrgID(%q) = false", ok)
		}
	}
	// What an attacker puts in a Host label, a path segment or a header to reach another key.
	for _, bad := range []string{"", "Acme", "acme.corp", "..", "%2e%2e", "a/b", "a b", "a_b", "acme\x00",
		"ａcme", "acme\n", "a:b", "{o:x}", strings.Repeat("a", MaxOrgIDLen+1)} {
		if OrgID(bad) {
			t.Errorf("OrgID(%q) = true", bad)
		}
	}
}

func TestOrgIDTable(t *testing.T) {
	for s, want := range map[string]bool{
		"acme": true, "a": true, "acme-2": true, "0": true, "-": true, strings.Repeat("a", 63): true,
		"": false, strings.Repeat("a", 64): false, "Acme": false, "ACME": false, "..": false, ".": false,
		"a.b": false, "a/b": false, "%61cme": false, "acme%2f": false, "a_b": false, "a b": false, " acme": false,
		"acme\n": false, "acme\x00": false, "ac\u00e9me": false, "\u212Aone": false, "a;b": false, "a:b": false,
		"{org}": false, "*": false,
	} {
		if got := OrgID(s); got != want {
			t.Errorf("OrgID(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestName(t *testing.T) {
	for _, ok := range []string{"billing-admin", "audit_2026", "_x", "9", strings.Repeat("r", MaxNameLen)} {
		if !Name(ok) {
			t.Errorf("Name(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "Admin", "a b", "a,b", "a.b", "a:b", "é", strings.Repeat("r", MaxNameLen+1)} {
		if Name(bad) {
			t.Errorf("Name(%q) = true", bad)
		}
	}
}

func TestToken(t *testing.T) {
	for _, ok := range []string{"GET", "get", "PROPFIND", "X-Custom", "a!#$%&'*+-.^_`|~z", "0"} {
		if !Token(ok) {
			t.Errorf("Token(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "GET ", " GET", "G\tET", "GE\x00T", "X:Y", "a/b", "a\"b", "(x)", "é", "a,b", "a;b", "a=b", "{}"} {
		if Token(bad) {
			t.Errorf("Token(%q) = true", bad)
		}
	}
}

func TestDigits(t *testing.T) {
	for _, ok := range []string{"0", "1700000000000", "007"} {
		if !Digits(ok) {
			t.Errorf("Digits(%q) = false", ok)
		}
	}
	for _, bad := range []string{"", "-1", "+1", "1 ", " 1", "1e3", "0x1", "١٢", "1.0", "$"} {
		if Digits(bad) {
			t.Errorf("Digits(%q) = true", bad)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	n := testing.AllocsPerRun(100, func() {
		_ = OrgID("acme") && Name("admin") && Token("GET") && Digits("123")
	})
	if n != 0 {
		t.Errorf("allocations: %v", n)
	}
}
