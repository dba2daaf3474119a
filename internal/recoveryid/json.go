package recoveryid

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// jsonFrame is one open object or array while scanning a JSON body.
type jsonFrame struct {
	object  bool
	wantKey bool // object: the next token is a key or "}"
	index   int  // array: index of the next element; object: keys seen
	// keys holds the object's keys, case-folded, to find collisions. Allocated on the
	// second key: most objects on a recovery route have one or two.
	keys  map[string]struct{}
	first string
}

// scanJSON walks a JSON body token by token and records every key related to the
// identifier, with its full path, so that no decoder's reading of the document (first or last
// duplicate, case-sensitive or not, nested or wrapped) can see an identifier the guard did
// not. It returns a detail phrase when the body is not one well-formed UTF-8 object within
// the nesting limit.
func scanJSON(spec *Spec, body []byte, f *occurrences) string {
	// encoding/json would replace invalid UTF-8 by U+FFFD; another decoder might not.
	if !utf8.Valid(body) {
		return detailEncoding
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var (
		stack []jsonFrame
		path  []string
		// pending: the next value belongs to a related key at path.
		pending      bool
		pendingExact bool
		pendingLoc   Location
	)
	// valueDone closes one value: the parent's path element goes, and an object expects
	// its next key.
	valueDone := func() {
		if len(stack) == 0 {
			return
		}
		path = path[:len(path)-1]
		if top := &stack[len(stack)-1]; top.object {
			top.wantKey = true
		}
	}
	started := false
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			if !started || len(stack) > 0 {
				return detailSyntax
			}
			return ""
		}
		if err != nil {
			return detailSyntax
		}
		if started && len(stack) == 0 {
			return detailTrailing // a second top-level value
		}
		if !started {
			started = true
			if d, ok := tok.(json.Delim); !ok || d != '{' {
				return detailNotObject
			}
		}

		if n := len(stack); n > 0 && stack[n-1].object && stack[n-1].wantKey {
			top := &stack[n-1]
			if d, ok := tok.(json.Delim); ok && d == '}' {
				stack = stack[:n-1]
				valueDone()
				continue
			}
			key, ok := tok.(string)
			if !ok {
				return detailSyntax
			}
			if !cleanName(key) {
				// "email\u0000" is "email" to a parser that stops at NUL.
				return detailKey
			}
			if top.collides(key) {
				f.setAmbiguous(detailDuplicateKey)
			}
			top.wantKey = false
			path = append(path, key)
			pending = relatedKey(key, spec.leaves)
			pendingLoc, pendingExact = spec.listedPointer(path)
			pendingExact = pending && pendingExact
			continue
		}

		if d, ok := tok.(json.Delim); ok && (d == ']' || d == '}') {
			// "}" with a value expected is a syntax error the decoder already refused; "]"
			// closes an array.
			stack = stack[:len(stack)-1]
			valueDone()
			continue
		}
		if n := len(stack); n > 0 && !stack[n-1].object {
			path = append(path, strconv.Itoa(stack[n-1].index))
			stack[n-1].index++
		}
		if pending {
			loc := Location{Source: SourceJSON, Name: pointerString(path)}
			if pendingExact {
				loc = pendingLoc
			}
			s, isString := tok.(string)
			f.add(loc, pendingExact, s)
			if !isString {
				f.setAmbiguous(detailNotString)
			}
			pending = false
		}
		if d, ok := tok.(json.Delim); ok {
			if len(stack) >= maxJSONDepth {
				return detailTooDeep
			}
			stack = append(stack, jsonFrame{object: d == '{', wantKey: d == '{'})
			continue
		}
		valueDone()
	}
}

// collides records key in the object and reports whether a key equal to it up to case (as
// foldEqual sees it) was already there.
func (fr *jsonFrame) collides(key string) bool {
	fr.index++ // for an object, index counts its keys
	if fr.index == 1 {
		fr.first = key
		return false
	}
	if fr.keys == nil {
		fr.keys = map[string]struct{}{foldKey(fr.first): {}}
	}
	k := foldKey(key)
	if _, dup := fr.keys[k]; dup {
		return true
	}
	fr.keys[k] = struct{}{}
	return false
}

// foldKey maps every rune as foldEqual does (without PHP mangling), so two keys collide
// exactly when foldEqual says they are equal.
func foldKey(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		b.WriteRune(foldRune(r, false))
	}
	return b.String()
}

// listedPointer returns the JSON location whose pointer is exactly path, if there is one.
func (s *Spec) listedPointer(path []string) (Location, bool) {
	for _, l := range s.locations {
		if l.Source != SourceJSON || len(l.pointer) != len(path) {
			continue
		}
		same := true
		for i := range path {
			if path[i] != l.pointer[i] {
				same = false
				break
			}
		}
		if same {
			return l.Location, true
		}
	}
	return Location{}, false
}

// pointerString renders a path as an RFC 6901 pointer.
func pointerString(path []string) string {
	var b strings.Builder
	for _, t := range path {
		b.WriteByte('/')
		t = strings.ReplaceAll(t, "~", "~0")
		b.WriteString(strings.ReplaceAll(t, "/", "~1"))
	}
	return b.String()
}
