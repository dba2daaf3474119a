package recoveryid

import (
	"bytes"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// ErrBodyTooLarge is returned by ReadBody when the body exceeds the limit. The caller answers
// 413 and closes the connection, so unread bytes are never parsed as another request.
var ErrBodyTooLarge = errors.New("request body exceeds the recovery body limit")

// ReadBody reads all of r if it holds at most limit bytes. It never reads more than limit+1
// bytes: with more, it stops and returns ErrBodyTooLarge (and no data), so a chunked body of
// any size costs at most limit+1 bytes. Other read errors are returned wrapped. A negative
// limit is treated as 0.
func ReadBody(r io.Reader, limit int64) ([]byte, error) {
	if limit < 0 {
		limit = 0
	}
	var buf bytes.Buffer
	n, err := buf.ReadFrom(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, errors.Join(errors.New("read recovery body"), err)
	}
	if n > limit {
		return nil, ErrBodyTooLarge
	}
	return buf.Bytes(), nil
}

// Details of reason.IdentifierAmbiguous and the malformed problems. Fixed phrases: they go
// to logs and audit events and never carry request data.
const (
	detailRepeated     = "repeated"      // the identifier appears more than once
	detailOtherName    = "other_name"    // a key related to the identifier outside the locations listed
	detailNotString    = "not_string"    // a JSON value that is not a string
	detailDuplicateKey = "duplicate_key" // two JSON keys equal up to case in one object
	detailFilePart     = "file_part"     // a multipart file named like the identifier
	detailPartType     = "part_type"     // a multipart part with its own non-text type or encoding
	detailSemicolon    = "semicolon"     // a ";" separator some parsers split on and others do not
	detailEscape       = "bad_escape"
	detailKey          = "bad_key" // control character or invalid UTF-8 in a name
	detailSyntax       = "syntax"
	detailEncoding     = "invalid_utf8"
	detailNotObject    = "not_object"
	detailTooDeep      = "too_deep"
	detailTrailing     = "trailing_data"
	detailBoundary     = "boundary_in_data"
	detailMediaType    = "media_type"
	detailCharset      = "charset"
	detailNoType       = "no_content_type"
)

// Extract finds the one identifier of a recovery request, or says why there is
// not exactly one. It is a pure function of its inputs: the method, the Content-Type header
// (the caller refuses a request with more than one; "" when absent), the raw URL query
// (r.URL.RawQuery, not a parsed url.Values, which has already dropped ";" pairs) and the
// body, already read within spec.BodyLimit() (see ReadBody).
//
// Rules, each a way real portals and frameworks disagree with each other:
//
//   - A non-empty body must have a Content-Type whose media type one of the listed locations
//     declares, with no charset or charset utf-8 (or us-ascii). An empty body is not read,
//     whatever its Content-Type.
//   - The query is always read, whether or not a query location is listed: frameworks
//     merge query and body parameters, some preferring the first and some the last.
//   - Any key related to the identifier counts as an occurrence: the listed name in any
//     case (Unicode case mapping included, as .NET and encoding/json fold), with PHP's
//     "."/" " to "_" mangling, or as any bracket or dot segment (`email[]`, `user[email]`,
//     `user.email`). An occurrence that is not exactly a listed location is ambiguous.
//   - The identifier must occur exactly once across everything: twice in a form, in the
//     query and the body, in two multipart parts, anywhere twice in a JSON document.
//   - Forms: a raw ";" anywhere, a bad percent escape, or a name with a control character
//     is malformed. Multipart: a file part or a part with its own Content-Type or
//     Content-Transfer-Encoding under the identifier's name is ambiguous; RFC 2231 (`*=`)
//     parameters, missing names, the boundary string anywhere but in the delimiters, and
//     data after the closing delimiter are malformed.
//   - JSON: one UTF-8 object, nesting at most 32 deep, no control characters in keys, no two
//     keys in one object equal up to case (encoding/json matches case-insensitively, last
//     wins); the value at the pointer must be a string (escapes such as \u0040 are decoded,
//     then checked like any value).
//
// On success the Problem is zero and the Identifier holds the canonical value. An absent
// identifier is reason.IdentifierMissing, which blocks nothing by itself: the caller decides.
// spec must not be nil.
func Extract(spec *Spec, method, contentType, rawQuery string, body []byte) (Identifier, Problem) {
	if !spec.Guards(method) {
		return Identifier{}, Problem{Code: reason.MethodNotGuarded}
	}
	if int64(len(body)) > spec.BodyLimit() {
		return Identifier{}, Problem{Code: reason.BodyTooLarge}
	}
	var media string
	var params map[string]string
	if len(body) > 0 {
		var p Problem
		media, params, p = checkContentType(spec, contentType)
		if !p.OK() {
			return Identifier{}, p
		}
	}

	var f occurrences
	if err := scanURLEncoded(rawQuery, func(k, v string) { f.field(spec, SourceQuery, k, v) }); err != "" {
		return Identifier{}, Problem{Code: reason.MalformedQuery, Detail: err}
	}
	if len(body) > 0 {
		var err string
		switch media {
		case mediaForm:
			err = scanURLEncoded(string(body), func(k, v string) { f.field(spec, SourceForm, k, v) })
		case mediaMultipart:
			err = scanMultipart(spec, body, params["boundary"], &f)
		case mediaJSON:
			err = scanJSON(spec, body, &f)
		}
		if err != "" {
			return Identifier{}, Problem{Code: reason.MalformedBody, Detail: err}
		}
	}

	switch {
	case f.ambiguous != "":
		return Identifier{}, Problem{Code: reason.IdentifierAmbiguous, Detail: f.ambiguous}
	case f.n == 0:
		return Identifier{}, Problem{Code: reason.IdentifierMissing}
	}
	id := Identifier{Kind: f.loc.Kind, Location: f.loc, Raw: trimASCIISpace(f.value)}
	var why string
	if id.Kind == KindEmail {
		id.Local, id.Domain, why = CanonicalEmail(f.value)
	} else {
		why = ValidUsername(f.value)
	}
	if why != "" {
		return Identifier{}, Problem{Code: reason.IdentifierInvalid, Detail: why}
	}
	return id, Problem{}
}

// checkContentType returns the body's media type if a listed location declares it.
func checkContentType(spec *Spec, contentType string) (string, map[string]string, Problem) {
	refuse := func(detail string) (string, map[string]string, Problem) {
		return "", nil, Problem{Code: reason.ContentTypeNotAllowed, Detail: detail}
	}
	if contentType == "" {
		return refuse(detailNoType)
	}
	// ParseMediaType refuses duplicate parameters and a second media type after a comma
	// (two Content-Type headers joined), and lower-cases the type and parameter names.
	media, params, err := mime.ParseMediaType(contentType)
	if err != nil || !slices.Contains(spec.media, media) {
		return refuse(detailMediaType)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
		// A portal honouring another charset (UTF-7, UTF-16, Latin-1) would read other
		// characters than the guard did.
		return refuse(detailCharset)
	}
	if media == mediaMultipart {
		if !validBoundary(params["boundary"]) {
			// RFC 2046's bchars only, as multipart.Writer writes them: a boundary Go's reader
			// takes but a writer refuses (quoted, with "@" or "!") could not be rewritten
			// the one way (mirror), and parsers differ on the exotic ones.
			return refuse(detailMediaType)
		}
	}
	return media, params, Problem{}
}

// occurrences collects every key related to the identifier.
type occurrences struct {
	n         int
	loc       Location
	value     string
	ambiguous string // first reason the request is ambiguous; "" while it is not
	// all holds every value when collect is set (FieldValues); the guard needs only one.
	collect bool
	all     []string
}

func (f *occurrences) setAmbiguous(detail string) {
	if f.ambiguous == "" {
		f.ambiguous = detail
	}
}

// add records one occurrence of a related key; exact says it is at a listed location, and
// then loc carries that location's kind.
func (f *occurrences) add(loc Location, exact bool, value string) {
	f.n++
	switch {
	case f.n > 1:
		f.setAmbiguous(detailRepeated)
	case !exact:
		f.setAmbiguous(detailOtherName)
	}
	f.loc, f.value = loc, value
	if f.collect {
		f.all = append(f.all, value)
	}
}

// field records a form, query or multipart field if its key is related to the identifier,
// and reports whether it was.
func (f *occurrences) field(spec *Spec, src Source, key, value string) bool {
	if !relatedKey(key, spec.leaves) {
		return false
	}
	loc, exact := spec.listed(src, key)
	f.add(loc, exact, value)
	return true
}

// listed returns the spec's non-JSON location src:name, if it is exactly one of them.
func (s *Spec) listed(src Source, name string) (Location, bool) {
	for _, l := range s.locations {
		if l.at(src, name) {
			return l.Location, true
		}
	}
	return Location{Source: src, Name: name}, false
}

// scanURLEncoded calls fn for every name=value pair of a query string or form body, after
// percent-decoding (with "+" as space). It returns a detail phrase when the input cannot be
// read unambiguously: a raw ";" (Go drops such pairs, older servers split on it, PHP keeps it
// in the value), a bad escape, or a name with a control character or invalid UTF-8 (some
// parsers truncate at NUL). A pair without "=" is a name with an empty value: it still
// counts, since PHP and Rails see the key.
func scanURLEncoded(s string, fn func(key, value string)) string {
	if strings.IndexByte(s, ';') >= 0 {
		return detailSemicolon
	}
	for s != "" {
		var pair string
		pair, s, _ = strings.Cut(s, "&")
		if pair == "" {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		var ok bool
		if k, ok = unescapeQuery(k); !ok {
			return detailEscape
		}
		if v, ok = unescapeQuery(v); !ok {
			return detailEscape
		}
		if !cleanName(k) {
			return detailKey
		}
		if k == "" {
			continue
		}
		fn(k, v)
	}
	return ""
}

// unescapeQuery is url.QueryUnescape without allocating when nothing is escaped.
func unescapeQuery(s string) (string, bool) {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s, true
	}
	u, err := url.QueryUnescape(s)
	return u, err == nil
}

// cleanName reports whether a field name is valid UTF-8 without control characters.
func cleanName(k string) bool {
	for _, r := range k {
		if r == utf8.RuneError || unicode.IsControl(r) {
			return false
		}
	}
	return utf8.ValidString(k)
}

// scanMultipart records the related parts of a multipart/form-data body.
func scanMultipart(spec *Spec, body []byte, boundary string, f *occurrences) string {
	// Data after the closing delimiter is ignored by Go but not by every parser; one
	// closing delimiter followed by nothing but line breaks is the only form accepted.
	end := []byte("--" + boundary + "--")
	i := bytes.Index(body, end)
	if i < 0 || len(bytes.Trim(body[i+len(end):], "\r\n")) != 0 {
		return detailTrailing
	}
	// The boundary may appear only as the delimiters Go found. Anywhere else (after a bare
	// LF inside a value, say) a lenient parser may split a part the guard read as one.
	delimiters := bytes.Count(body, end[:len(end)-2])
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for parts := 0; ; parts++ {
		// NextRawPart: NextPart would silently decode quoted-printable, which the portal
		// may not.
		p, err := mr.NextRawPart()
		if err == io.EOF {
			if delimiters != parts+1 {
				return detailBoundary
			}
			return ""
		}
		if err != nil {
			return detailSyntax
		}
		name, file, typed, detail := partHeader(p.Header)
		if detail != "" {
			return detail
		}
		value, err := io.ReadAll(p)
		if err != nil {
			return detailSyntax
		}
		if !f.field(spec, SourceMultipart, name, string(value)) {
			continue
		}
		switch {
		case file:
			f.setAmbiguous(detailFilePart)
		case typed:
			f.setAmbiguous(detailPartType)
		}
	}
}

// partHeader reads a part's form-data disposition: its name, whether it is a file, and
// whether it declares its own type or transfer encoding.
func partHeader(h textproto.MIMEHeader) (name string, file, typed bool, detail string) {
	cd := h.Values("Content-Disposition")
	if len(cd) != 1 || strings.Contains(cd[0], "*=") {
		// Two dispositions, or RFC 2231 extended parameters (name*=), which Go decodes and
		// many portals do not.
		return "", false, false, detailSyntax
	}
	disp, params, err := mime.ParseMediaType(cd[0])
	if err != nil || disp != "form-data" {
		return "", false, false, detailSyntax
	}
	name, ok := params["name"]
	if !ok || !cleanName(name) {
		return "", false, false, detailKey
	}
	_, file = params["filename"]
	if len(h.Values("Content-Transfer-Encoding")) > 0 {
		typed = true
	}
	if ct := h.Values("Content-Type"); len(ct) > 0 {
		mt, ps, err := mime.ParseMediaType(ct[0])
		cs := ps["charset"]
		typed = typed || len(ct) > 1 || err != nil || mt != "text/plain" ||
			(cs != "" && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii"))
	}
	return name, file, typed, ""
}

// fieldLeaf returns the last segment of a configured field name: "email" for
// "user[email]", "user.email" or "email".
func fieldLeaf(name string) string {
	leaf := ""
	forEachSegment(name, func(seg string) bool {
		leaf = seg
		return false
	})
	return leaf
}

// forEachSegment calls fn for each non-empty segment of a key split on "[", "]" and ".",
// with surrounding spaces trimmed, until fn returns true.
func forEachSegment(key string, fn func(seg string) bool) bool {
	for key != "" {
		i := strings.IndexAny(key, "[].")
		seg := key
		if i >= 0 {
			seg, key = key[:i], key[i+1:]
		} else {
			key = ""
		}
		if seg = strings.Trim(seg, " "); seg != "" && fn(seg) {
			return true
		}
	}
	return false
}

// relatedKey reports whether a request key could be read by some portal as one of the
// identifier's leaf names: the whole key compared with case folding and PHP's name mangling,
// or any bracket or dot segment of it compared with case folding.
func relatedKey(key string, leaves []string) bool {
	for _, leaf := range leaves {
		if foldEqual(strings.Trim(key, " "), leaf, true) {
			return true
		}
	}
	return forEachSegment(key, func(seg string) bool {
		for _, leaf := range leaves {
			if foldEqual(seg, leaf, false) {
				return true
			}
		}
		return false
	})
}

// foldEqual compares two names rune by rune after mapping each rune to the lower case of
// its upper case. That is coarser than Unicode simple folding on purpose: it equates "ı"
// and "ſ" with "i" and "s" and the Kelvin sign with "k", as case-insensitive lookups in .NET,
// Java and encoding/json variously do. With php, " ", "." and "[" also equal "_", as PHP
// mangles incoming names.
func foldEqual(a, b string, php bool) bool {
	for a != "" && b != "" {
		ra, na := utf8.DecodeRuneInString(a)
		rb, nb := utf8.DecodeRuneInString(b)
		a, b = a[na:], b[nb:]
		if ra == rb {
			continue
		}
		if foldRune(ra, php) != foldRune(rb, php) {
			return false
		}
	}
	return a == "" && b == ""
}

func foldRune(r rune, php bool) rune {
	if r < utf8.RuneSelf {
		switch {
		case 'A' <= r && r <= 'Z':
			return r + 'a' - 'A'
		case php && (r == ' ' || r == '.' || r == '['):
			return '_'
		}
		return r
	}
	return unicode.ToLower(unicode.ToUpper(r))
}

// FieldValues returns the value of every field related to name, by the rules Extract uses for
// the identifier (any case, PHP's "."/" " mangling, any bracket or dot segment), in the URL
// query and, when the body is a form, any multipart type or JSON (application/json or any
// "+json" or "/json" type, which some frameworks merge into their parameters), in the body.
// A body of another media type is not read: no framework takes parameters from it. A JSON
// value that is not a string is returned as "". detail is non-empty when the query or the
// body cannot be read the one way every parser would (the charset, a ";", a bad escape, a
// malformed part or document): the caller refuses, since a field could hide in it.
//
// The proxy uses it to find method overrides (`_method`); body is read by the caller within
// its own limit (ReadBody).
func FieldValues(name, contentType, rawQuery string, body []byte) (values []string, detail string) {
	spec := &Spec{leaves: []string{name}}
	f := occurrences{collect: true}
	if d := scanURLEncoded(rawQuery, func(k, v string) { f.field(spec, SourceQuery, k, v) }); d != "" {
		return nil, d
	}
	if len(body) > 0 && contentType != "" {
		media, params, err := mime.ParseMediaType(contentType)
		if err != nil {
			return nil, detailMediaType
		}
		isJSON := media == mediaJSON || strings.HasSuffix(media, "+json") || strings.Contains(media, "/json")
		multi := strings.HasPrefix(media, "multipart/")
		if media == mediaForm || multi || isJSON {
			if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
				return nil, detailCharset
			}
		}
		var d string
		switch {
		case media == mediaForm:
			d = scanURLEncoded(string(body), func(k, v string) { f.field(spec, SourceForm, k, v) })
		case multi:
			if b := params["boundary"]; len(b) == 0 || len(b) > 70 {
				d = detailMediaType
			} else {
				d = scanMultipart(spec, body, b, &f)
			}
		case isJSON:
			d = scanJSON(spec, body, &f)
		}
		if d != "" {
			return nil, d
		}
	}
	return f.all, ""
}

// validBoundary reports whether b is a boundary of RFC 2046 §5.1.1: 1 to 70 of
// [0-9A-Za-z'()+_,-./:=?] and space, not ending in a space.
func validBoundary(b string) bool {
	if len(b) == 0 || len(b) > 70 || b[len(b)-1] == ' ' {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || strings.IndexByte("'()+_,-./:=? ", c) >= 0) {
			return false
		}
	}
	return true
}
