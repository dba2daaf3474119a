package recoveryid

import (
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

const (
	ctForm      = "application/x-www-form-urlencoded"
	ctJSON      = "application/json"
	ctMultipart = "multipart/form-data; boundary=XyZ"
)

func mustSpec(tb testing.TB, r Rule) *Spec {
	tb.Helper()
	s, err := NewSpec(r)
	if err != nil {
		tb.Fatalf("NewSpec: %v", err)
	}
	return s
}

func loc(src Source, name string) Location {
	return Location{Source: src, Name: name}
}

// The recovery endpoints of docs/security-cases.md §0.
func testSpecs(tb testing.TB) (form, jsonSpec, formOrQuery, multi, nested, user *Spec) {
	form = mustSpec(tb, Rule{Methods: []string{"POST"}, Locations: []Location{loc(SourceForm, "email")}})
	jsonSpec = mustSpec(tb, Rule{Methods: []string{"POST"}, Locations: []Location{loc(SourceJSON, "/email")}})
	formOrQuery = mustSpec(tb, Rule{Methods: []string{"GET", "POST"}, Locations: []Location{loc(SourceQuery, "email"), loc(SourceForm, "email")}})
	multi = mustSpec(tb, Rule{Locations: []Location{loc(SourceMultipart, "email")}})
	nested = mustSpec(tb, Rule{Locations: []Location{loc(SourceJSON, "/user/email")}})
	user = mustSpec(tb, Rule{Kind: KindUsername, Locations: []Location{loc(SourceForm, "username")}})
	return
}

// multipartBody joins raw parts (headers, blank line, value) with the boundary XyZ.
func multipartBody(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		b.WriteString("--XyZ\r\n" + p + "\r\n")
	}
	b.WriteString("--XyZ--\r\n")
	return b.String()
}

func field(name, value string) string {
	return "Content-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value
}

type extractCase struct {
	name   string
	spec   *Spec
	method string // default POST
	ctype  string
	query  string
	body   string
	code   reason.Code // "" for success
	detail string      // checked when set
	want   string      // Canonical() on success
}

func runExtract(t *testing.T, cases []extractCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			method := c.method
			if method == "" {
				method = "POST"
			}
			id, p := Extract(c.spec, method, c.ctype, c.query, []byte(c.body))
			if p.Code != c.code || (c.detail != "" && p.Detail != c.detail) {
				t.Fatalf("problem = %v, want %s (%s)", p, c.code, c.detail)
			}
			if p.OK() != (id.Raw != "") {
				t.Fatalf("identifier %+v with problem %v", id, p)
			}
			if p.OK() && id.Canonical() != c.want {
				t.Fatalf("identifier = %q, want %q", id.Canonical(), c.want)
			}
		})
	}
}

// REC-01: every payload as form, JSON and query.
func TestExtractREC01AllEncodings(t *testing.T) {
	form, jsonSpec, formOrQuery, _, _, _ := testSpecs(t)
	for _, c := range recEmailCases[:9] {
		want := c.local + "@" + c.domain
		jsonValue := strings.ReplaceAll(c.in, "@", `\u0040`)
		runExtract(t, []extractCase{
			{name: c.name + "/form", spec: form, ctype: ctForm, body: "email=" + url.QueryEscape(c.in), want: want},
			{name: c.name + "/json", spec: jsonSpec, ctype: ctJSON, body: `{"email":"` + jsonValue + `"}`, want: want},
			{name: c.name + "/query", spec: formOrQuery, method: "GET", query: "email=" + url.QueryEscape(c.in), want: want},
		})
	}
}

// Every other REC-02..05 payload through the form: the same outcome as CanonicalEmail.
func TestExtractRECAddressesThroughForm(t *testing.T) {
	form, _, _, _, _, _ := testSpecs(t)
	for _, c := range recEmailCases {
		ec := extractCase{name: c.name, spec: form, ctype: ctForm, body: "email=" + url.QueryEscape(c.in)}
		if c.reason != "" {
			ec.code, ec.detail = reason.IdentifierInvalid, c.reason
		} else {
			ec.want = c.local + "@" + c.domain
		}
		runExtract(t, []extractCase{ec})
	}
}

// REC-06 and the duplicate-field examples.
func TestExtractREC06(t *testing.T) {
	form, _, formOrQuery, _, _, _ := testSpecs(t)
	amb := reason.IdentifierAmbiguous
	runExtract(t, []extractCase{
		{name: "control", spec: form, ctype: ctForm, body: "email=alice%40fresh.example&csrf=x", want: "alice@fresh.example"},
		{name: "twice", spec: form, ctype: ctForm, body: "email=alice@fresh.example&email=victim@stale.example", code: amb, detail: detailRepeated},
		{name: "twice reversed", spec: form, ctype: ctForm, body: "email=victim@stale.example&email=alice@fresh.example", code: amb},
		{name: "twice same value", spec: form, ctype: ctForm, body: "email=alice@fresh.example&email=alice@fresh.example", code: amb},
		{name: "php array", spec: form, ctype: ctForm, body: "email[]=alice@fresh.example&email[]=victim@stale.example", code: amb},
		{name: "rails nested array", spec: form, ctype: ctForm, body: "user[email][]=victim@stale.example&user[email][]=attacker@fresh.example", code: amb},
		{name: "rails nested", spec: form, ctype: ctForm, body: "user[email]=victim@stale.example", code: amb, detail: detailOtherName},
		{name: "dotted nested", spec: form, ctype: ctForm, body: "user.email=victim@stale.example", code: amb, detail: detailOtherName},
		{name: "query and body", spec: form, ctype: ctForm, query: "email=victim@stale.example", body: "email=alice@fresh.example", code: amb},
		{name: "body and query", spec: form, ctype: ctForm, query: "email=alice@fresh.example", body: "email=victim@stale.example", code: amb},
		{name: "query and body both listed", spec: formOrQuery, ctype: ctForm, query: "email=victim@stale.example", body: "email=alice@fresh.example", code: amb, detail: detailRepeated},
		{name: "comma list", spec: form, ctype: ctForm, body: "email=alice@fresh.example,victim@stale.example", code: reason.IdentifierInvalid, detail: EmailList},
		{name: "semicolon", spec: form, ctype: ctForm, body: "email=alice@fresh.example;victim@stale.example", code: reason.MalformedBody, detail: detailSemicolon},
		{name: "encoded space", spec: form, ctype: ctForm, body: "email=alice@fresh.example%20victim@stale.example", code: reason.IdentifierInvalid, detail: EmailWhitespace},
		{name: "plus space", spec: form, ctype: ctForm, body: "email=alice@fresh.example+victim@stale.example", code: reason.IdentifierInvalid, detail: EmailWhitespace},
		{name: "key case", spec: form, ctype: ctForm, body: "Email=victim@stale.example&email=alice@fresh.example", code: amb},
		{name: "upper key only", spec: form, ctype: ctForm, body: "EMAIL=victim@stale.example", code: amb, detail: detailOtherName},
		{name: "dotless i key", spec: form, ctype: ctForm, body: "ema%C4%B1l=victim@stale.example&email=alice@fresh.example", code: amb},
		{name: "escaped key", spec: form, ctype: ctForm, body: "%65mail=victim@stale.example&email=alice@fresh.example", code: amb},
		{name: "php mangled space", spec: form, ctype: ctForm, body: "+email=victim@stale.example&email=alice@fresh.example", code: amb},
		{name: "key without value", spec: form, ctype: ctForm, body: "email&email=alice@fresh.example", code: amb},
		{name: "unclosed bracket", spec: form, ctype: ctForm, body: "email[=victim@stale.example", code: amb},
		{name: "unrelated similar keys", spec: form, ctype: ctForm, body: "email_confirm=x&emails=y&email=alice@fresh.example", want: "alice@fresh.example"},
		{name: "query semicolon", spec: form, ctype: ctForm, query: "a=1;email=victim@stale.example", body: "email=alice@fresh.example", code: reason.MalformedQuery},
		{name: "query bad escape", spec: form, ctype: ctForm, query: "x=%zz", body: "email=alice@fresh.example", code: reason.MalformedQuery},
		{name: "body bad escape", spec: form, ctype: ctForm, body: "email=alice%4", code: reason.MalformedBody, detail: detailEscape},
		{name: "nul in key", spec: form, ctype: ctForm, body: "email%00x=victim@stale.example&email=alice@fresh.example", code: reason.MalformedBody, detail: detailKey},
		{name: "missing", spec: form, ctype: ctForm, body: "csrf=x", code: reason.IdentifierMissing},
		{name: "missing empty body", spec: form, code: reason.IdentifierMissing},
		{name: "empty value", spec: form, ctype: ctForm, body: "email=", code: reason.IdentifierInvalid, detail: EmailEmpty},
		{name: "query only listed", spec: formOrQuery, method: "GET", query: "email=alice%40fresh.example", want: "alice@fresh.example"},
		{name: "form only listed", spec: formOrQuery, ctype: ctForm, body: "email=alice%40fresh.example", want: "alice@fresh.example"},
		{name: "unlisted query in GET", spec: form, method: "POST", query: "EMAIL=victim@stale.example", code: amb},
	})
}

func TestExtractContentTypeAndLimits(t *testing.T) {
	form, jsonSpec, formOrQuery, _, _, _ := testSpecs(t)
	bad := reason.ContentTypeNotAllowed
	runExtract(t, []extractCase{
		{name: "json to form route", spec: form, ctype: ctJSON, body: `{"email":"victim@stale.example"}`, code: bad},
		{name: "form to json route", spec: jsonSpec, ctype: ctForm, body: "email=victim@stale.example", code: bad},
		{name: "text plain json", spec: jsonSpec, ctype: "text/plain", body: `{"email":"victim@stale.example"}`, code: bad},
		{name: "no content type", spec: form, body: "email=victim@stale.example", code: bad, detail: detailNoType},
		{name: "utf-7", spec: form, ctype: ctForm + "; charset=utf-7", body: "email=victim@stale.example", code: bad, detail: detailCharset},
		{name: "utf-8 ok", spec: form, ctype: "Application/X-WWW-Form-Urlencoded; Charset=UTF-8", body: "email=alice@fresh.example", want: "alice@fresh.example"},
		{name: "two types joined", spec: form, ctype: ctForm + ", " + ctJSON, body: "email=victim@stale.example", code: bad},
		{name: "duplicate params", spec: form, ctype: ctForm + "; charset=utf-8; charset=latin1", body: "email=victim@stale.example", code: bad},
		{name: "json suffix type", spec: jsonSpec, ctype: "application/merge-patch+json", body: `{"email":"a@b.example"}`, code: bad},
		{name: "multipart to form route", spec: form, ctype: ctMultipart, body: multipartBody(field("email", "victim@stale.example")), code: bad},
		{name: "body on query-only route", spec: mustSpec(t, Rule{Locations: []Location{loc(SourceQuery, "email")}}), ctype: ctForm, query: "email=alice@fresh.example", body: "email=victim@stale.example", code: bad},
		{name: "empty body any type", spec: formOrQuery, method: "GET", ctype: "text/plain", query: "email=alice@fresh.example", want: "alice@fresh.example"},
		{name: "method not guarded", spec: form, method: "GET", query: "email=victim@stale.example", code: reason.MethodNotGuarded},
		{name: "method case", spec: form, method: "post", ctype: ctForm, body: "email=victim@stale.example", want: "victim@stale.example"},
		{name: "too large", spec: mustSpec(t, Rule{BodyLimit: 16, Locations: []Location{loc(SourceForm, "email")}}), ctype: ctForm, body: "email=alice%40fresh.example", code: reason.BodyTooLarge},
	})
}

func TestExtractJSON(t *testing.T) {
	_, js, _, _, nested, _ := testSpecs(t)
	amb := reason.IdentifierAmbiguous
	deep := strings.Repeat(`{"a":`, maxJSONDepth+1) + "1" + strings.Repeat("}", maxJSONDepth+1)
	deepOK := `{"email":"alice@fresh.example","x":` + strings.Repeat("[", maxJSONDepth-1) + strings.Repeat("]", maxJSONDepth-1) + "}"
	runExtract(t, []extractCase{
		{name: "control", spec: js, ctype: ctJSON, body: `{"email":"alice@fresh.example","csrf":1}`, want: "alice@fresh.example"},
		{name: "utf-8 charset", spec: js, ctype: ctJSON + "; charset=utf-8", body: ` {"email" : "alice@fresh.example"} `, want: "alice@fresh.example"},
		{name: "case collision", spec: js, ctype: ctJSON, body: `{"email":"a@fresh.example","Email":"b@stale.example"}`, code: amb, detail: detailDuplicateKey},
		{name: "array value", spec: js, ctype: ctJSON, body: `{"email":["victim@stale.example"]}`, code: amb, detail: detailNotString},
		{name: "object value", spec: js, ctype: ctJSON, body: `{"email":{"x":"victim@stale.example"}}`, code: amb, detail: detailNotString},
		{name: "null value", spec: js, ctype: ctJSON, body: `{"email":null}`, code: amb, detail: detailNotString},
		{name: "number value", spec: js, ctype: ctJSON, body: `{"email":1}`, code: amb, detail: detailNotString},
		{name: "duplicate key", spec: js, ctype: ctJSON, body: `{"email":"alice@fresh.example","email":"victim@stale.example"}`, code: amb, detail: detailDuplicateKey},
		{name: "escaped at", spec: js, ctype: ctJSON, body: `{"email":"victim\u0040stale.example"}`, want: "victim@stale.example"},
		{name: "escaped key duplicate", spec: js, ctype: ctJSON, body: `{"\u0065mail":"victim@stale.example","email":"alice@fresh.example"}`, code: amb},
		{name: "kelvin-folded key", spec: mustSpec(t, Rule{Locations: []Location{loc(SourceJSON, "/kind")}, Kind: KindUsername}), ctype: ctJSON, body: `{"kind":"bob","\u212Aind":"eve"}`, code: amb},
		{name: "nested elsewhere", spec: js, ctype: ctJSON, body: `{"user":{"email":"victim@stale.example"}}`, code: amb, detail: detailOtherName},
		{name: "in array", spec: js, ctype: ctJSON, body: `{"list":[{"email":"victim@stale.example"}]}`, code: amb},
		{name: "wrong case only", spec: js, ctype: ctJSON, body: `{"EMAIL":"victim@stale.example"}`, code: amb, detail: detailOtherName},
		{name: "missing", spec: js, ctype: ctJSON, body: `{"name":"x"}`, code: reason.IdentifierMissing},
		{name: "top-level array", spec: js, ctype: ctJSON, body: `[{"email":"victim@stale.example"}]`, code: reason.MalformedBody, detail: detailNotObject},
		{name: "top-level string", spec: js, ctype: ctJSON, body: `"victim@stale.example"`, code: reason.MalformedBody},
		{name: "two documents", spec: js, ctype: ctJSON, body: `{"email":"alice@fresh.example"}{"email":"victim@stale.example"}`, code: reason.MalformedBody, detail: detailTrailing},
		{name: "truncated", spec: js, ctype: ctJSON, body: `{"email":"alice@fresh.example"`, code: reason.MalformedBody},
		{name: "trailing comma", spec: js, ctype: ctJSON, body: `{"email":"alice@fresh.example",}`, code: reason.MalformedBody},
		{name: "nul in key", spec: js, ctype: ctJSON, body: `{"email\u0000":"victim@stale.example","email":"alice@fresh.example"}`, code: reason.MalformedBody, detail: detailKey},
		{name: "invalid utf-8", spec: js, ctype: ctJSON, body: "{\"email\":\"alice@fresh.example\",\"x\":\"\xff\"}", code: reason.MalformedBody, detail: detailEncoding},
		{name: "too deep", spec: js, ctype: ctJSON, body: deep, code: reason.MalformedBody, detail: detailTooDeep},
		{name: "deep but within limit", spec: js, ctype: ctJSON, body: deepOK, want: "alice@fresh.example"},
		{name: "nested control", spec: nested, ctype: ctJSON, body: `{"user":{"email":"alice@fresh.example"},"csrf":"x"}`, want: "alice@fresh.example"},
		{name: "nested parent case twin", spec: nested, ctype: ctJSON, body: `{"user":{"email":"alice@fresh.example"},"User":{}}`, code: amb, detail: detailDuplicateKey},
		{name: "nested parent wrong case", spec: nested, ctype: ctJSON, body: `{"User":{"email":"victim@stale.example"}}`, code: amb, detail: detailOtherName},
		{name: "nested and top", spec: nested, ctype: ctJSON, body: `{"user":{"email":"alice@fresh.example"},"email":"victim@stale.example"}`, code: amb},
		{name: "nested parent not object", spec: nested, ctype: ctJSON, body: `{"user":"victim@stale.example"}`, code: reason.IdentifierMissing},
		{name: "pointer escapes", spec: mustSpec(t, Rule{Locations: []Location{loc(SourceJSON, "/a~1b/e~0mail")}}), ctype: ctJSON, body: `{"a/b":{"e~mail":"alice@fresh.example"}}`, want: "alice@fresh.example"},
	})
}

func TestExtractMultipart(t *testing.T) {
	_, _, _, mp, _, _ := testSpecs(t)
	amb := reason.IdentifierAmbiguous
	file := "Content-Disposition: form-data; name=\"email\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nvictim@stale.example"
	runExtract(t, []extractCase{
		{name: "control", spec: mp, ctype: ctMultipart, body: multipartBody(field("csrf", "x"), field("email", "alice@fresh.example")), want: "alice@fresh.example"},
		{name: "text/plain part", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data; name=\"email\"\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nalice@fresh.example"), want: "alice@fresh.example"},
		{name: "twice", spec: mp, ctype: ctMultipart, body: multipartBody(field("email", "alice@fresh.example"), field("email", "victim@stale.example")), code: amb, detail: detailRepeated},
		{name: "case twin", spec: mp, ctype: ctMultipart, body: multipartBody(field("email", "alice@fresh.example"), field("Email", "victim@stale.example")), code: amb},
		{name: "file only", spec: mp, ctype: ctMultipart, body: multipartBody(file), code: amb, detail: detailFilePart},
		{name: "file and field", spec: mp, ctype: ctMultipart, body: multipartBody(field("email", "alice@fresh.example"), file), code: amb},
		{name: "typed part", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data; name=\"email\"\r\nContent-Type: application/json\r\n\r\n\"victim@stale.example\""), code: amb, detail: detailPartType},
		{name: "quoted-printable part", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data; name=\"email\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nvictim=40stale.example"), code: amb, detail: detailPartType},
		{name: "rfc 2231 name", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data; name=\"x\"; name*=utf-8''email\r\n\r\nvictim@stale.example"), code: reason.MalformedBody},
		{name: "two dispositions", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nvictim@stale.example"), code: reason.MalformedBody},
		{name: "no name", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: form-data\r\n\r\nvictim@stale.example"), code: reason.MalformedBody},
		{name: "not form-data", spec: mp, ctype: ctMultipart, body: multipartBody("Content-Disposition: attachment; name=\"email\"\r\n\r\nvictim@stale.example"), code: reason.MalformedBody},
		{name: "after closing boundary", spec: mp, ctype: ctMultipart, body: multipartBody(field("email", "alice@fresh.example")) + "--XyZ\r\n" + field("email", "victim@stale.example") + "\r\n--XyZ--\r\n", code: reason.MalformedBody, detail: detailTrailing},
		{name: "boundary after bare LF", spec: mp, ctype: ctMultipart, body: multipartBody(field("csrf", "x\n--XyZ\r\n"+field("email", "victim@stale.example")), field("email", "alice@fresh.example")), code: reason.MalformedBody, detail: detailBoundary},
		{name: "LF-only delimiters", spec: mp, ctype: ctMultipart, body: "--XyZ\nContent-Disposition: form-data; name=\"email\"\n\nalice@fresh.example\n--XyZ--\n", want: "alice@fresh.example"},
		{name: "no closing boundary", spec: mp, ctype: ctMultipart, body: "--XyZ\r\n" + field("email", "alice@fresh.example") + "\r\n", code: reason.MalformedBody},
		{name: "no boundary param", spec: mp, ctype: "multipart/form-data", body: multipartBody(field("email", "alice@fresh.example")), code: reason.ContentTypeNotAllowed},
		{name: "missing", spec: mp, ctype: ctMultipart, body: multipartBody(field("csrf", "x")), code: reason.IdentifierMissing},
	})
}

func TestExtractUsername(t *testing.T) {
	_, _, _, _, _, user := testSpecs(t)
	runExtract(t, []extractCase{
		{name: "plain", spec: user, ctype: ctForm, body: "username=Bob.Smith", want: "Bob.Smith"},
		{name: "non-ascii", spec: user, ctype: ctForm, body: "username=b%C4%B1b", code: reason.IdentifierInvalid, detail: UsernameNotASCII},
		{name: "twice", spec: user, ctype: ctForm, body: "username=bob&USERNAME=eve", code: reason.IdentifierAmbiguous},
		{name: "long s key", spec: user, ctype: ctForm, body: "u%C5%BFername=eve", code: reason.IdentifierAmbiguous},
	})
}

// TestLocationKinds: a guard may take an address in one field and a username in another;
// the identifier has the kind of the location it was found at, and still must be the only one.
func TestLocationKinds(t *testing.T) {
	s := mustSpec(t, Rule{Locations: []Location{loc(SourceForm, "email"), {Source: SourceForm, Name: "username", Kind: KindUsername},
		{Source: SourceJSON, Name: "/login", Kind: KindUsername}}})
	if email, username := s.Kinds(); !email || !username {
		t.Errorf("Kinds = %v %v", email, username)
	}
	for _, c := range []struct {
		ctype, body string
		kind        Kind
		code        reason.Code
	}{
		{ctForm, "email=alice%40fresh.example", KindEmail, ""},
		{ctForm, "username=Alice01", KindUsername, ""},
		{ctJSON, `{"login":"Alice01"}`, KindUsername, ""},
		// A username field holding an address is a username, looked up as one, never as an
		// address.
		{ctForm, "username=alice%40fresh.example", KindUsername, ""},
		{ctForm, "email=alice%40fresh.example&username=Alice01", "", reason.IdentifierAmbiguous},
		{ctForm, "USERNAME=Alice01", "", reason.IdentifierAmbiguous},
		{ctForm, "login=Alice01", "", reason.IdentifierAmbiguous}, // the JSON field's name, in a form
		{ctForm, "account_id=42", "", reason.IdentifierMissing},
	} {
		id, p := Extract(s, "POST", c.ctype, "", []byte(c.body))
		if p.Code != c.code || (c.code == "" && id.Kind != c.kind) {
			t.Errorf("%s: %v %+v, want %q %q", c.body, p, id, c.code, c.kind)
		}
	}
	if _, err := NewSpec(Rule{Locations: []Location{{Source: SourceForm, Name: "phone", Kind: "phone"}}}); err == nil || !strings.Contains(err.Error(), "locations[0].kind") {
		t.Errorf("kind phone: %v", err)
	}
	if _, err := NewSpec(Rule{Locations: []Location{loc(SourceForm, "id"), {Source: SourceForm, Name: "id", Kind: KindUsername}}}); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("one field of two kinds: %v", err)
	}
}

func TestNewRecoverySpecErrors(t *testing.T) {
	_, err := NewSpec(Rule{
		Kind:      "phone",
		BodyLimit: -1,
		Methods:   []string{"PO ST"},
		Locations: []Location{
			loc(SourceJSON, "user/email"),
			loc(SourceJSON, "/"),
			loc(SourceJSON, "/a~2"),
			loc(SourceForm, ""),
			loc("header", "X-Email"),
			loc(SourceForm, "email"),
			loc(SourceForm, "email"),
			loc(SourceQuery, "a&b"),
			loc(SourceForm, "[]"),
		},
	})
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"kind:", "body_limit:", "methods[0]:", "locations[0].name:", "locations[1].name:", "locations[2].name:", "locations[3].name:", "locations[4].source:", "locations[6]: duplicate", "locations[7].name:", "locations[8].name:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := NewSpec(Rule{}); err == nil {
		t.Error("no locations accepted")
	}
	if _, err := NewSpec(Rule{BodyLimit: MaxBodyLimit + 1, Locations: []Location{loc(SourceForm, "email")}}); err == nil {
		t.Error("over-large limit accepted")
	}

	s := mustSpec(t, Rule{
		Methods:   []string{"post", "POST", "put"},
		Locations: []Location{loc(SourceForm, "user[email]"), loc(SourceJSON, "/user/email"), loc(SourceQuery, "email")},
	})
	if got := strings.Join(s.Methods(), ","); got != "POST,PUT" {
		t.Errorf("Methods = %s", got)
	}
	if got := strings.Join(s.ContentTypes(), ","); got != mediaForm+","+mediaJSON {
		t.Errorf("ContentTypes = %s", got)
	}
	if email, username := s.Kinds(); !email || username || s.BodyLimit() != DefaultBodyLimit || s.Guards("GET") || !s.Guards("Put") {
		t.Errorf("defaults: %v %v %d", email, username, s.BodyLimit())
	}
	if len(s.Locations()) != 3 {
		t.Errorf("Locations = %v", s.Locations())
	}
	// A Rails-style configured name: exact match only, the bare leaf is ambiguous.
	id, p := Extract(s, "POST", ctForm, "", []byte("user%5Bemail%5D=alice%40fresh.example"))
	if !p.OK() || !id.Location.at(SourceForm, "user[email]") || id.Kind != KindEmail {
		t.Errorf("rails name: %v %+v", p, id)
	}
	if _, p := Extract(s, "POST", ctForm, "", []byte("email=alice%40fresh.example")); p.Code != reason.IdentifierAmbiguous {
		t.Errorf("bare leaf in form: %v", p)
	}
	// A zero spec finds nothing and guards every method.
	var zero Spec
	if _, p := Extract(&zero, "GET", "", "email=a@b.example", nil); p.Code != reason.IdentifierMissing {
		t.Errorf("zero spec: %v", p)
	}
}

func TestProblem(t *testing.T) {
	for _, c := range []struct {
		code   reason.Code
		blocks bool
		status int
	}{
		{"", false, 0},
		{reason.MethodNotGuarded, false, 0},
		{reason.IdentifierMissing, false, 0},
		{reason.BodyTooLarge, true, 413},
		{reason.ContentTypeNotAllowed, true, 415},
		{reason.MalformedQuery, true, 400},
		{reason.MalformedBody, true, 400},
		{reason.IdentifierAmbiguous, true, 400},
		{reason.IdentifierInvalid, true, 400},
	} {
		p := Problem{Code: c.code}
		if p.Blocks() != c.blocks || p.Status() != c.status || p.OK() != (c.code == "") {
			t.Errorf("%q: blocks %v status %d", c.code, p.Blocks(), p.Status())
		}
	}
	if len(ProblemCodes()) != 8 {
		t.Error("ProblemCodes out of date")
	}
	if s := (Problem{Code: reason.IdentifierInvalid, Detail: EmailQuoted}).String(); s != "identifier_invalid (quoted)" {
		t.Error(s)
	}
}

// countingReader is an endless body that counts what was read from it.
type countingReader struct{ n int64 }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	r.n += int64(len(p))
	return len(p), nil
}

// DOS-02: a body over the limit stops at limit+1 bytes, whatever its length.
func TestReadBody(t *testing.T) {
	b, err := ReadBody(strings.NewReader("0123456789"), 10)
	if err != nil || string(b) != "0123456789" {
		t.Fatalf("at limit: %q, %v", b, err)
	}
	if _, err := ReadBody(strings.NewReader("0123456789x"), 10); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("over limit: %v", err)
	}
	r := &countingReader{}
	if _, err := ReadBody(r, DefaultBodyLimit); !errors.Is(err, ErrBodyTooLarge) || r.n > DefaultBodyLimit+1 {
		t.Fatalf("endless body: %v after %d bytes", err, r.n)
	}
	if b, err := ReadBody(strings.NewReader(""), 0); err != nil || len(b) != 0 {
		t.Fatalf("empty: %v", err)
	}
	if _, err := ReadBody(strings.NewReader("x"), 0); !errors.Is(err, ErrBodyTooLarge) {
		t.Fatalf("zero limit: %v", err)
	}
	boom := errors.New("boom")
	if _, err := ReadBody(io.MultiReader(strings.NewReader("ab"), errReader{boom}), 10); !errors.Is(err, boom) {
		t.Fatalf("read error: %v", err)
	}
}

type errReader struct{ err error }

func (r errReader) Read([]byte) (int, error) { return 0, r.err }

func BenchmarkExtractIdentifierForm(b *testing.B) {
	s := mustSpec(b, Rule{Methods: []string{"POST"}, Locations: []Location{loc(SourceForm, "email")}})
	body := []byte("csrf_token=9f8e7d6c5b4a&email=alice.smith%40fresh.example&submit=Reset")
	b.ReportAllocs()
	for b.Loop() {
		if _, p := Extract(s, "POST", ctForm, "", body); !p.OK() {
			b.Fatal(p)
		}
	}
}

func BenchmarkExtractIdentifierJSON(b *testing.B) {
	s := mustSpec(b, Rule{Locations: []Location{loc(SourceJSON, "/email")}})
	body := []byte(`{"csrf":"9f8e7d6c5b4a","email":"alice.smith@fresh.example"}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, p := Extract(s, "POST", ctJSON, "", body); !p.OK() {
			b.Fatal(p)
		}
	}
}

func BenchmarkCanonicalEmail(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := CanonicalEmail("alice.smith@Fresh.Example"); r != "" {
			b.Fatal(r)
		}
	}
}

func BenchmarkCanonicalEmailIDN(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, _, r := CanonicalEmail("victim@BÜCHER-ALT.example"); r != "" {
			b.Fatal(r)
		}
	}
}
