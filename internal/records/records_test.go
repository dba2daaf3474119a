package records

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// sample has the kinds of field the stored records have: strings, booleans, numbers,
// times, bytes (base64), slices, maps, pointers, nested structs, raw messages and fields
// without a tag.
type sample struct {
	User     string            `json:"user"`
	Verified bool              `json:"verified,omitempty"`
	N        int64             `json:"n"`
	F        float64           `json:"f"`
	At       time.Time         `json:"at"`
	Until    *time.Time        `json:"until,omitempty"`
	Key      []byte            `json:"key"`
	Roles    []string          `json:"roles"`
	Labels   map[string]string `json:"labels"`
	Nested   []nested          `json:"nested"`
	Raw      json.RawMessage   `json:"raw"`
	Untagged string
	Skipped  string `json:"-"`
}

type nested struct {
	Org string   `json:"org"`
	AMR []string `json:"amr"`
}

// TestDecodeMatchesEncodingJSON: Decode fills a record exactly as encoding/json does, and
// refuses what it refuses.
func TestDecodeMatchesEncodingJSON(t *testing.T) {
	for _, in := range []string{
		`{"user":"iss|alice","verified":true,"n":42,"f":1.5,"at":"2026-12-08T10:00:00.123456789Z","until":"2026-12-09T10:00:00+01:00",
		  "key":"AAECAw==","roles":["admin","user"],"labels":{"a":"b"},"nested":[{"org":"acme","amr":["otp"]}],"raw":{"x":[1,2]},"Untagged":"u","Skipped":"s"}`,
		`{}`,
		`{"user":null,"roles":null,"labels":null,"nested":null,"until":null,"key":null}`,
		`{"USER":"case-insensitive","Roles":["r"]}`,
		`{"user":"a","user":"b"}`,
		`{"unknown":{"deep":[1,{"x":null}]},"user":"x"}`,
		`{"user":"\u00e9\ud83d\ude00\n\"\\"}`,
		`{"n":9223372036854775807,"f":1e308}`,
		`{"roles":["a",]}`,
		`{"user":"x"`,
		`{"n":"42"}`,
		`{"n":1.5}`,
		`{"n":1e400}`,
		`{"at":"yesterday"}`,
		`{"key":"not base64!"}`,
		`{"user":"\xff"}`,
		`[]`,
		`null`,
		``,
		`{"user":"x"} trailing`,
	} {
		var want, got sample
		werr := json.Unmarshal([]byte(in), &want)
		gerr := Decode([]byte(in), &got)
		if (werr == nil) != (gerr == nil) {
			t.Errorf("%.60s: error %v, encoding/json %v", in, gerr, werr)
			continue
		}
		if werr == nil && !reflect.DeepEqual(got, want) {
			t.Errorf("%.60s:\n got %+v\nwant %+v", in, got, want)
		}
	}
}
