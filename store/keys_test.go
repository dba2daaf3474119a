package store

import (
	"net/url"
	"strings"
	"testing"
)

// hashTag is the part of key Redis Cluster hashes: between the first "{" and the first "}" after
// it, when non-empty; otherwise the whole key.
func hashTag(key string) string {
	open := strings.IndexByte(key, '{')
	if open < 0 {
		return key
	}
	n := strings.IndexByte(key[open+1:], '}')
	if n <= 0 {
		return key
	}
	return key[open+1 : open+1+n]
}

func mustKeys(t *testing.T, prefix string) keys {
	t.Helper()
	k, err := newKeys(prefix)
	if err != nil {
		t.Fatalf("newKeys(%q): %v", prefix, err)
	}
	return k
}

func TestKeyNames(t *testing.T) {
	k := mustKeys(t, "")
	for _, tc := range []struct{ got, want string }{
		{k.sessionRecord("Zm9v_-bar"), "pc:{s:Zm9v_-bar}:sess"},
		{k.userSessions("alice"), "pc:{u:alice}:sessions"},
		{k.userOrgs("alice"), "pc:{u:alice}:orgs"},
		{k.org("acme"), "pc:{o:acme}:org"},
		{k.membership("acme", "alice"), "pc:{o:acme}:mem:alice"},
		{k.domainOrg("acme.example"), "pc:{d:acme.example}:org"},
		{k.invalidations(), "pc:inval"},
		{k.audit(), "pc:audit"},
		{mustKeys(t, "pc-staging:v2").org("acme"), "pc-staging:v2:{o:acme}:org"},
		// An IdP user id (issuer and subject) is escaped, readable where it can be.
		{k.userSessions("https://idp.example|248289761001"), "pc:{u:https%3A%2F%2Fidp.example%7C248289761001}:sessions"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %s, want %s", tc.got, tc.want)
		}
	}
}

// attackIDs are identifiers an attacker might choose (as IdP subject, cookie value, org id or
// email domain) to move a key into another hash tag or forge another key's name.
var attackIDs = []string{
	"", "}", "{", ":", "{}", "}{", "}:sess:x", "x}:mem:admin", "{o:acme}", "u:bob}",
	"alice:sess:1", "%", "%7D", "%25", "*", "?", "[a-z]", `\`, " ", "\n", "\r\n", "\x00",
	"ü", "\xff", "ａ}", strings.Repeat("}", 100),
}

func TestUserPartsStayInTheirHashTag(t *testing.T) {
	k := mustKeys(t, "")
	for _, id := range attackIDs {
		for _, tc := range []struct{ key, tag string }{
			{k.sessionRecord(id), "s:" + escape(id)},
			{k.userSessions(id), "u:" + escape(id)},
			{k.userOrgs(id), "u:" + escape(id)},
			{k.org(id), "o:" + escape(id)},
			{k.membership(id, "alice"), "o:" + escape(id)},
			{k.membership("acme", id), "o:acme"},
			{k.domainOrg(id), "d:" + escape(id)},
		} {
			if got := hashTag(tc.key); got != tc.tag {
				t.Errorf("id %q: key %q hashes on %q, want %q", id, tc.key, got, tc.tag)
			}
			if strings.Count(tc.key, "{") != 1 || strings.Count(tc.key, "}") != 1 {
				t.Errorf("id %q: key %q has braces beyond its hash tag", id, tc.key)
			}
			if strings.ContainsAny(tc.key, "*?[]\\ \r\n\x00") {
				t.Errorf("id %q: key %q contains pattern or control characters", id, tc.key)
			}
		}
		// The membership of alice in org X and the membership of bob in org Y never collide,
		// whatever X and Y contain.
		if k.membership("acme", id) == k.membership("acme:mem:"+id, "") && id != "" {
			t.Errorf("id %q: two memberships share a key", id)
		}
	}
	// A session of one user must never name a key of another user.
	if k.sidSessions("iss}:x", "1") == k.sidSessions("iss", "x}:1") {
		t.Error("session keys of two users collide")
	}
}

func TestEscapeIsReversibleAndClean(t *testing.T) {
	for _, id := range attackIDs {
		checkEscape(t, id)
	}
}

func FuzzEscape(f *testing.F) {
	for _, id := range attackIDs {
		f.Add(id)
	}
	f.Fuzz(checkEscape)
}

func checkEscape(t *testing.T, id string) {
	e := escape(id)
	for i := 0; i < len(e); i++ {
		if !isUnreserved(e[i]) && e[i] != '%' {
			t.Fatalf("escape(%q) = %q contains %q", id, e, e[i])
		}
	}
	// Injective: the escaped form decodes to exactly the input.
	if back, err := url.PathUnescape(e); err != nil || back != id {
		t.Fatalf("escape(%q) = %q decodes to %q, %v", id, e, back, err)
	}
}

func TestKeyPrefixValidation(t *testing.T) {
	for _, ok := range []string{"", "pc", "portcullis", "pc:staging", "a.b-c_d~e", strings.Repeat("p", 64)} {
		if _, err := newKeys(ok); err != nil {
			t.Errorf("newKeys(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"{pc}", "pc}", "p{", "p c", "p*", "pc?", "pc\n", "pü", "p\\", strings.Repeat("p", 65)} {
		if _, err := newKeys(bad); err == nil {
			t.Errorf("newKeys(%q) accepted a prefix that could break hash tags or patterns", bad)
		}
	}
}
