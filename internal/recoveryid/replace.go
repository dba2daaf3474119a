package recoveryid

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/url"
	"strconv"
	"strings"
)

// Replace returns the request's query and body with the identifier id (as Extract found it)
// replaced by value, everything else as it was: for a recovery guard that answers a blocked
// request with the portal's own answer for an address nobody has (blocked_response: mirror).
// A form or query keeps every other pair byte for byte; a JSON body is re-encoded with the
// same members (key order and number spelling kept by the decoder, insignificant whitespace
// not); a multipart body is rebuilt with the same boundary, parts and part headers.
func Replace(id Identifier, contentType, rawQuery string, body []byte, value string) (string, []byte, error) {
	switch id.Location.Source {
	case SourceQuery:
		q, err := replacePair(rawQuery, id.Location.Name, value)
		return q, body, err
	case SourceForm:
		b, err := replacePair(string(body), id.Location.Name, value)
		return rawQuery, []byte(b), err
	case SourceJSON:
		b, err := replaceJSON(body, id.Location.Name, value)
		return rawQuery, b, err
	case SourceMultipart:
		b, err := replaceMultipart(contentType, body, id.Location.Name, value)
		return rawQuery, b, err
	}
	return "", nil, errors.New("recoveryid: unknown source " + string(id.Location.Source))
}

// replacePair replaces the value of the one pair named name in an urlencoded string.
func replacePair(s, name, value string) (string, error) {
	pairs := strings.Split(s, "&")
	n := 0
	for i, pair := range pairs {
		k, _, _ := strings.Cut(pair, "=")
		if key, ok := unescapeQuery(k); ok && key == name {
			pairs[i] = k + "=" + url.QueryEscape(value)
			n++
		}
	}
	if n != 1 {
		return "", errors.New("recoveryid: the identifier is not exactly one pair")
	}
	return strings.Join(pairs, "&"), nil
}

// replaceJSON sets the string at pointer to value.
func replaceJSON(body []byte, pointer, value string) ([]byte, error) {
	tokens, msg := parsePointer(pointer)
	if msg != "" {
		return nil, errors.New("recoveryid: " + msg)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var doc ordered
	if err := dec.Decode(&doc); err != nil {
		return nil, err
	}
	if !doc.set(tokens, value) {
		return nil, errors.New("recoveryid: the identifier is not where the pointer says")
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(out.Bytes(), []byte("\n")), nil
}

// ordered is a JSON value decoded with its objects' member order kept.
type ordered struct {
	v       any // json.Number, string, bool, nil, []ordered
	members []member
	object  bool
}

type member struct {
	key string
	val ordered
}

func (o *ordered) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	t, err := dec.Token()
	if err != nil {
		return err
	}
	switch t {
	case json.Delim('{'):
		o.object = true
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return err
			}
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return err
			}
			var v ordered
			if err := v.UnmarshalJSON(raw); err != nil {
				return err
			}
			o.members = append(o.members, member{kt.(string), v})
		}
	case json.Delim('['):
		var items []ordered
		for dec.More() {
			var raw json.RawMessage
			if err := dec.Decode(&raw); err != nil {
				return err
			}
			var v ordered
			if err := v.UnmarshalJSON(raw); err != nil {
				return err
			}
			items = append(items, v)
		}
		if items == nil {
			items = []ordered{}
		}
		o.v = items
	default:
		o.v = t
	}
	return nil
}

func (o ordered) MarshalJSON() ([]byte, error) {
	if !o.object {
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(o.v); err != nil {
			return nil, err
		}
		return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o.members {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := m.val.MarshalJSON()
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// set puts value at the path of tokens, which must lead to a string.
func (o *ordered) set(tokens []string, value string) bool {
	if len(tokens) == 0 {
		if _, ok := o.v.(string); !ok || o.object {
			return false
		}
		o.v = value
		return true
	}
	if o.object {
		for i := range o.members {
			if o.members[i].key == tokens[0] {
				return o.members[i].val.set(tokens[1:], value)
			}
		}
		return false
	}
	items, ok := o.v.([]ordered)
	if !ok {
		return false
	}
	i, err := strconv.Atoi(tokens[0])
	if err != nil || i < 0 || i >= len(items) {
		return false
	}
	return items[i].set(tokens[1:], value)
}

// replaceMultipart rebuilds a multipart/form-data body with the part named name holding value.
func replaceMultipart(contentType string, body []byte, name, value string) ([]byte, error) {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, err
	}
	boundary := params["boundary"]
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	var out bytes.Buffer
	mw := multipart.NewWriter(&out)
	if err := mw.SetBoundary(boundary); err != nil {
		return nil, err
	}
	n := 0
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		content, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		pw, err := mw.CreatePart(p.Header)
		if err != nil {
			return nil, err
		}
		if p.FormName() == name {
			content = []byte(value)
			n++
		}
		if _, err := pw.Write(content); err != nil {
			return nil, err
		}
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	if n != 1 {
		return nil, errors.New("recoveryid: the identifier is not exactly one part")
	}
	return out.Bytes(), nil
}
