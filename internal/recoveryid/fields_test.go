package recoveryid

import (
	"slices"
	"testing"
)

// TestFieldValues finds a method-override field however a framework would read it, and refuses
// what it cannot read the one way every parser would.
func TestFieldValues(t *testing.T) {
	multipart := func(name, value string) string {
		return "--XyZ\r\nContent-Disposition: form-data; name=\"" + name + "\"\r\n\r\n" + value + "\r\n--XyZ--\r\n"
	}
	for _, c := range []struct {
		name, ct, query, body string
		want                  []string
		detail                string
	}{
		{name: "none", ct: ctForm, body: "a=1&b=2", want: nil},
		{name: "form", ct: ctForm, body: "a=1&_method=DELETE", want: []string{"DELETE"}},
		{name: "query", query: "_method=put", want: []string{"put"}},
		{name: "query and form", ct: ctForm, query: "_method=PUT", body: "_method=DELETE", want: []string{"PUT", "DELETE"}},
		{name: "upper case name", ct: ctForm, body: "_METHOD=DELETE", want: []string{"DELETE"}},
		{name: "escaped name", ct: ctForm, body: "%5Fm%65thod=DELETE", want: []string{"DELETE"}},
		{name: "php dot", ct: ctForm, body: ".method=DELETE", want: []string{"DELETE"}},
		{name: "bracket", ct: ctForm, body: "_method[]=DELETE", want: []string{"DELETE"}},
		{name: "nested", ct: ctForm, body: "x[_method]=DELETE", want: []string{"DELETE"}},
		{name: "multipart", ct: ctMultipart, body: multipart("_method", "PATCH"), want: []string{"PATCH"}},
		{name: "multipart/mixed", ct: "multipart/mixed; boundary=XyZ", body: multipart("_method", "PUT"), want: []string{"PUT"}},
		{name: "json", ct: ctJSON, body: `{"a":1,"_method":"DELETE"}`, want: []string{"DELETE"}},
		{name: "json+suffix", ct: "application/vnd.api+json", body: `{"_method":"DELETE"}`, want: []string{"DELETE"}},
		{name: "json not string", ct: ctJSON, body: `{"_method":7}`, want: []string{""}},
		{name: "json nested", ct: ctJSON, body: `{"data":{"_Method":"DELETE"}}`, want: []string{"DELETE"}},
		{name: "other media not read", ct: "text/plain", body: "_method=DELETE", want: nil},
		{name: "octet stream not read", ct: "application/octet-stream", body: `{"_method":"DELETE"}`, want: nil},
		{name: "semicolon", ct: ctForm, body: "a=1;_method=DELETE", detail: detailSemicolon},
		{name: "bad escape", ct: ctForm, body: "_method=%zz", detail: detailEscape},
		{name: "charset", ct: ctForm + "; charset=utf-16", body: "x", detail: detailCharset},
		{name: "bad media type", ct: "application/x-www-form-urlencoded; ;;", body: "_method=DELETE", detail: detailMediaType},
		{name: "multipart without boundary", ct: "multipart/form-data", body: multipart("_method", "PATCH"), detail: detailMediaType},
		{name: "multipart trailing", ct: ctMultipart, body: multipart("a", "b") + "junk", detail: detailTrailing},
		{name: "json broken", ct: ctJSON, body: `{"_method":`, detail: detailSyntax},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, detail := FieldValues("_method", c.ct, c.query, []byte(c.body))
			if detail != c.detail || !slices.Equal(got, c.want) {
				t.Errorf("FieldValues = %q, %q; want %q, %q", got, detail, c.want, c.detail)
			}
		})
	}
}
