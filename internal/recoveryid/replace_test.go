package recoveryid

import (
	"bytes"
	"mime/multipart"
	"strings"
	"testing"
)

// TestReplace: the identifier, wherever Extract found it, is replaced by another value and
// nothing else changes; Extract then finds the new value at the same place.
func TestReplace(t *testing.T) {
	const decoy = "nobody-1@portcullis.invalid"
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	_ = mw.WriteField("csrf", "tok")
	_ = mw.WriteField("email", "victim@stale.example")
	_ = mw.WriteField("note", "a+b c")
	_ = mw.Close()
	form, _, formOrQuery, multi, nested, _ := testSpecs(t)
	for _, c := range []struct {
		name              string
		spec              *Spec
		ctype, query      string
		body              string
		wantQuery, wantIn string
	}{
		{"form", form, ctForm, "", "csrfmiddlewaretoken=a%2Bb&email=victim%40stale.example&next=%2Fdone", "", "csrfmiddlewaretoken=a%2Bb&email=nobody-1%40portcullis.invalid&next=%2Fdone"},
		{"query", formOrQuery, "", "lang=en&email=victim@stale.example", "", "lang=en&email=nobody-1%40portcullis.invalid", ""},
		{"json, order kept", nested, ctJSON, "", `{"z":1.50,"user":{"name":"V","email":"victim@stale.example","tags":["<a>"]},"a":null}`, "",
			`{"z":1.50,"user":{"name":"V","email":"nobody-1@portcullis.invalid","tags":["<a>"]},"a":null}`},
		{"multipart", multi, mw.FormDataContentType(), "", mp.String(), "", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, p := Extract(c.spec, "POST", c.ctype, c.query, []byte(c.body))
			if !p.OK() {
				t.Fatalf("extract: %v", p)
			}
			q, b, err := Replace(id, c.ctype, c.query, []byte(c.body), decoy)
			if err != nil {
				t.Fatal(err)
			}
			if c.wantQuery != "" && q != c.wantQuery {
				t.Errorf("query %q", q)
			}
			if c.wantIn != "" && string(b) != c.wantIn {
				t.Errorf("body %s", b)
			}
			if strings.Contains(q+string(b), "victim") {
				t.Errorf("the address is still there: %q %s", q, b)
			}
			again, p := Extract(c.spec, "POST", c.ctype, q, b)
			if !p.OK() || again.Canonical() != decoy || again.Location != id.Location {
				t.Errorf("extract after: %+v %v", again, p)
			}
			if c.name == "multipart" && (!strings.Contains(string(b), "a+b c") || !strings.Contains(string(b), "tok")) {
				t.Errorf("other parts changed: %s", b)
			}
		})
	}
}

// TestReplaceWhateverExtractReads: a multipart boundary a writer cannot reproduce (quoted,
// with "@" or "!") is refused by Extract itself, so a mirrored request never fails to be
// rewritten for one address and not for another.
func TestReplaceWhateverExtractReads(t *testing.T) {
	_, _, _, multi, _, _ := testSpecs(t)
	for _, b := range []string{`"a@b"`, "a!b", `"ends in space "`, strings.Repeat("x", 71)} {
		body := "--" + strings.Trim(b, `"`) + "\r\nContent-Disposition: form-data; name=\"email\"\r\n\r\nvictim@stale.example\r\n--" + strings.Trim(b, `"`) + "--\r\n"
		if _, p := Extract(multi, "POST", "multipart/form-data; boundary="+b, "", []byte(body)); p.OK() {
			t.Errorf("boundary %s: accepted", b)
		}
	}
}
