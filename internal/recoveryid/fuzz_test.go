package recoveryid

import (
	"bytes"
	"encoding/json"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzCanonicalEmail: never panics; an accepted address has a lower-case ASCII LDH domain of
// two or more labels without a trailing dot, an ASCII local part, and is a fixed point.
func FuzzCanonicalEmail(f *testing.F) {
	for _, c := range recEmailCases {
		f.Add(c.in)
	}
	for _, s := range []string{"a@b.example", "A@XN--BCHER-ALT-Q9A.EXAMPLE.", "a@\u0441\u043E\u0441\u043E.\u0440\u0444", "a@b..", "a@1.2", "x@ab--c.example", "a@xn--.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		local, domain, reason := CanonicalEmail(s)
		if reason != "" {
			if local != "" || domain != "" {
				t.Fatalf("%q refused (%s) with a result %q@%q", s, reason, local, domain)
			}
			return
		}
		if local == "" || !isASCII(local) || strings.ContainsAny(local, "@%!\"(),;:<>[]\\ ") {
			t.Fatalf("%q: local part %q", s, local)
		}
		if strings.HasSuffix(domain, ".") || !strings.Contains(domain, ".") || len(local)+1+len(domain) > 254 {
			t.Fatalf("%q: domain %q", s, domain)
		}
		for _, l := range strings.Split(domain, ".") {
			if !isLDHLabel(l) {
				t.Fatalf("%q: domain %q has label %q", s, domain, l)
			}
		}
		l2, d2, r2 := CanonicalEmail(local + "@" + domain)
		if l2 != local || d2 != domain || r2 != "" {
			t.Fatalf("%q: not a fixed point: %q@%q -> %q@%q (%s)", s, local, domain, l2, d2, r2)
		}
		if d3, r3 := CanonicalDomain(domain); d3 != domain || r3 != "" {
			t.Fatalf("%q: CanonicalDomain(%q) = %q, %s", s, domain, d3, r3)
		}
	})
}

// fuzzSpecs covers every source, and a nested pointer.
func fuzzSpecs(tb testing.TB) []*Spec {
	return []*Spec{
		mustSpec(tb, Rule{Locations: []Location{loc(SourceForm, "email"), loc(SourceQuery, "email")}}),
		mustSpec(tb, Rule{Locations: []Location{loc(SourceJSON, "/email")}}),
		mustSpec(tb, Rule{Locations: []Location{loc(SourceJSON, "/user/email")}}),
		mustSpec(tb, Rule{Locations: []Location{loc(SourceMultipart, "email")}}),
	}
}

var fuzzContentTypes = []string{ctForm, ctJSON, ctMultipart, "", "text/plain"}

// FuzzExtractIdentifier: never panics, an identifier comes only with a zero Problem, and
// when one is found, the standard library's own reading of the body agrees: exactly one
// value under the name, equal to what the guard found.
func FuzzExtractIdentifier(f *testing.F) {
	f.Add(uint8(0), "", []byte("email=alice%40fresh.example"))
	f.Add(uint8(0), "email=a@b.example", []byte("Email=x"))
	f.Add(uint8(1), "", []byte(`{"email":"victim\u0040stale.example"}`))
	f.Add(uint8(2), "", []byte(`{"user":{"email":"a@b.example"},"User":{}}`))
	f.Add(uint8(3), "", []byte(multipartBody(field("email", "a@b.example"))))
	f.Add(uint8(3), "", []byte(multipartBody(field("email", "a@b.example"), field("email", "c@d.example"))))
	specs := fuzzSpecs(f)
	f.Fuzz(func(t *testing.T, mode uint8, query string, body []byte) {
		spec := specs[int(mode)%len(specs)]
		ct := fuzzContentTypes[int(mode/4)%len(fuzzContentTypes)]
		id, p := Extract(spec, "POST", ct, query, body)
		if !p.OK() {
			if id != (Identifier{}) {
				t.Fatalf("identifier %+v with problem %v", id, p)
			}
			return
		}
		if id.Local == "" || id.Domain == "" || id.Raw == "" {
			t.Fatalf("empty identifier %+v", id)
		}
		if id.Location.Source == SourceQuery || ct == ctForm {
			// Go's parser must see the same single value (its ";" handling aside, which
			// the guard refuses anyway).
			var all []string
			if q, err := url.ParseQuery(query); err == nil {
				all = append(all, q["email"]...)
			}
			if ct == ctForm {
				if b, err := url.ParseQuery(string(body)); err == nil {
					all = append(all, b["email"]...)
				}
			}
			if len(all) != 1 || trimASCIISpace(all[0]) != id.Raw {
				t.Fatalf("guard found %q at %s, net/url sees %q", id.Raw, id.Location, all)
			}
		}
		if ct == ctMultipart && id.Location.Source == SourceMultipart {
			form, err := multipart.NewReader(bytes.NewReader(body), "XyZ").ReadForm(1 << 20)
			if err != nil {
				t.Fatalf("guard accepted multipart mime/multipart refuses: %v", err)
			}
			if v := form.Value["email"]; len(v) != 1 || trimASCIISpace(v[0]) != id.Raw || len(form.File["email"]) != 0 {
				t.Fatalf("guard found %q, mime/multipart %q", id.Raw, v)
			}
		}
		if ct == ctJSON && spec.locations[0].Name == "/email" {
			var m map[string]any
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("guard accepted JSON encoding/json refuses: %v", err)
			}
			if v, ok := m["email"].(string); !ok || trimASCIISpace(v) != id.Raw {
				t.Fatalf("guard found %q, encoding/json %q", id.Raw, m["email"])
			}
		}
	})
}

// FuzzExtractIdentifierTwice: whatever the two values, key spellings and encoding, a request
// carrying the field twice never yields an identifier.
func FuzzExtractIdentifierTwice(f *testing.F) {
	f.Add("alice@fresh.example", "victim@stale.example", "email", "email", uint8(0))
	f.Add("a@b.example", "a@b.example", "Email", "email[]", uint8(1))
	f.Add("a@b.example", "c@d.example", "email", "EMAIL", uint8(2))
	f.Add("a@b.example", "c@d.example", "email", "email", uint8(3))
	f.Add("a@b.example", "c@d.example", "user[email]", "email", uint8(4))
	specs := fuzzSpecs(f)
	// Spellings a portal may read as the field; the fuzzer picks among them by index so that
	// every input really does carry the field twice.
	spellings := []string{"email", "Email", "EMAIL", "email[]", "user[email]", "user[email][]", "ema\u0131l", " email", "user.email", "email[0]"}
	f.Fuzz(func(t *testing.T, v1, v2, k1, k2 string, mode uint8) {
		pick := func(k string) string {
			n, err := strconv.Atoi(k)
			if err != nil || n < 0 {
				n = len(k)
			}
			return spellings[n%len(spellings)]
		}
		k1, k2 = pick(k1), pick(k2)
		var (
			spec         *Spec
			ct, q, body  string
			form         = specs[0]
			jsonTop      = specs[1]
			multi        = specs[3]
			jsonString   = func(s string) string { b, _ := json.Marshal(s); return string(b) }
			formPair     = func(k, v string) string { return url.QueryEscape(k) + "=" + url.QueryEscape(v) }
			validUTF8Val = utf8.ValidString(v1) && utf8.ValidString(v2)
		)
		switch mode % 5 {
		case 0: // form body, twice
			spec, ct, body = form, ctForm, formPair(k1, v1)+"&"+formPair(k2, v2)
		case 1: // query and body
			spec, ct, q, body = form, ctForm, formPair(k1, v1), formPair(k2, v2)
		case 2: // query twice, no body
			spec, q = form, formPair(k1, v1)+"&"+formPair(k2, v2)
		case 3: // JSON, two keys in one object
			if !validUTF8Val {
				return
			}
			k1, k2 = strings.Trim(k1, " "), strings.Trim(k2, " ")
			spec, ct, body = jsonTop, ctJSON, "{"+jsonString(k1)+":"+jsonString(v1)+","+jsonString(k2)+":"+jsonString(v2)+"}"
		case 4: // multipart, two parts
			if strings.ContainsAny(v1+v2, "\r\n") || strings.Contains(v1+v2, "XyZ") {
				return // would end the part early: then the field is not there twice
			}
			spec, ct, body = multi, ctMultipart, multipartBody(field(k1, v1), field(k2, v2))
		}
		id, p := Extract(spec, "POST", ct, q, []byte(body))
		if p.OK() {
			t.Fatalf("field twice (%q, %q) gave %+v\nquery %q\nbody %q", k1, k2, id, q, body)
		}
	})
}
