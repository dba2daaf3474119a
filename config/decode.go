package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v4"
)

// pos is a 1-based line and column in the file.
type pos struct{ line, col int }

func nodePos(n *yaml.Node) pos { return pos{n.Line, n.Column} }

// decoder turns a yaml.Node tree into the Go types by reflection. It does not stop at the
// first problem: each one is recorded and decoding goes on with the next key, so a file with
// ten mistakes gets ten messages in one run.
type decoder struct {
	file     string
	env      func(string) (string, bool)
	readFile func(string) ([]byte, error)
	errs     Errors

	// valPos and keyPos locate every key path that was present in the file, for validation
	// messages; raw keeps the file's own text of every value that was expanded from the
	// environment, so that messages can quote it instead of the (possibly secret) result.
	valPos map[string]pos
	keyPos map[string]pos
	raw    map[string]string
	// budget is how many more values may be decoded: aliases let a small file expand into
	// a huge tree ("billion laughs"), which must end in an error, not in memory exhaustion.
	budget int
	// failed holds the key paths that already have a decoding error, so validation does not
	// add a second, confusing message about the zero value left behind.
	failed map[string]bool
	// secretFiles are the files secrets were read from (…_file keys) and envNames the
	// variables ${…} expanded, by key path: managed providers' secret references must not
	// reach them (oidc.managed_providers).
	secretFiles map[string]string
	envNames    map[string][]string
}

func newDecoder(file string, env func(string) (string, bool), readFile func(string) ([]byte, error)) *decoder {
	return &decoder{
		file: file, env: env, readFile: readFile,
		valPos: map[string]pos{}, keyPos: map[string]pos{}, secretFiles: map[string]string{}, envNames: map[string][]string{},
		raw: map[string]string{}, failed: map[string]bool{},
		budget: maxValues,
	}
}

func (d *decoder) errorAt(p pos, key, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: p.line, Column: p.col, Key: key, Message: fmt.Sprintf(format, args...)})
	d.failed[key] = true
}

// maxValues bounds the decoded values of one file, far above any real configuration.
const maxValues = 200_000

var (
	durationType = reflect.TypeFor[Duration]()
	secretType   = reflect.TypeFor[Secret]()
)

// join builds a key path: "server" + "listen" = "server.listen".
func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// resolve follows aliases (*name) to the node they stand for. The parser has already
// rejected unknown anchors; the bound guards against an alias chain that loops.
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

// describe names what a node is, for "must be X, got Y" messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a sequence"
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return "null"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		}
		return "a string"
	}
	return "an alias"
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// decode stores node n, found at key path, into v. A null value leaves v as it is: an empty
// key means "not set", so the default applies.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	site := n
	n = resolve(n)
	if n == nil || n.Kind == yaml.AliasNode {
		d.errorAt(nodePos(site), path, "alias chain too long")
		return
	}
	if d.budget--; d.budget < 0 {
		if d.budget == -1 {
			d.errorAt(nodePos(site), path, "the file expands to more than %d values; are aliases (*name) repeated too often?", maxValues)
			d.failed[""] = true // what was decoded is partial: validating it would only add noise
		}
		return
	}
	d.valPos[path] = nodePos(site)
	if isNull(n) {
		return
	}
	t := v.Type()
	switch {
	case t == durationType:
		s, ok := d.scalar(n, path, "a duration")
		if !ok {
			return
		}
		dur, err := parseDuration(s)
		switch {
		case err != nil:
			d.errorAt(nodePos(n), path, "must be a duration such as \"30s\", \"1m30s\" or \"90d\", got %s", d.show(path, s))
		case dur < 0:
			d.errorAt(nodePos(n), path, "must not be negative")
		default:
			v.SetInt(int64(dur))
		}
	case t.Kind() == reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(t.Elem()))
		}
		d.decode(n, v.Elem(), path)
	case t.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.errorAt(nodePos(n), path, "must be a sequence, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		for i, c := range n.Content {
			if d.budget < 0 {
				break
			}
			d.decode(c, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String:
		d.decodeMap(n, v, path)
	case t.Kind() == reflect.String:
		if s, ok := d.scalar(n, path, "a string"); ok {
			v.SetString(s)
		}
	case t.Kind() == reflect.Bool:
		s, ok := d.scalar(n, path, "true or false")
		if !ok {
			return
		}
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.errorAt(nodePos(n), path, "must be true or false, got %s", d.show(path, s))
		}
	case t.Kind() == reflect.Int:
		s, ok := d.scalar(n, path, "an integer")
		if !ok {
			return
		}
		i, err := strconv.ParseInt(strings.ReplaceAll(s, "_", ""), 10, t.Bits())
		if errors.Is(err, strconv.ErrRange) {
			d.errorAt(nodePos(n), path, "is out of range")
			return
		}
		if err != nil {
			d.errorAt(nodePos(n), path, "must be an integer, got %s", d.show(path, s))
			return
		}
		v.SetInt(i)
	case t.Kind() == reflect.Float64:
		s, ok := d.scalar(n, path, "a number")
		if !ok {
			return
		}
		f, err := strconv.ParseFloat(strings.ReplaceAll(s, "_", ""), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			d.errorAt(nodePos(n), path, "must be a number such as 0.25, got %s", d.show(path, s))
			return
		}
		v.SetFloat(f)
	default:
		// A programming error in types.go, reported rather than panicking on user input.
		d.errorAt(nodePos(n), path, "internal error: cannot decode into %s", t)
	}
}

// scalar returns the text of a scalar node after ${VAR} expansion. want says what the key
// expects, for the message when the node is a mapping or a sequence.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n.Kind != yaml.ScalarNode {
		d.errorAt(nodePos(n), path, "must be %s, got %s", want, describe(n))
		return "", false
	}
	s, expanded, err := expandEnv(n.Value, func(name string) (string, bool) {
		if d.envNames != nil {
			d.envNames[path] = append(d.envNames[path], name)
		}
		return d.env(name)
	})
	if err != nil {
		d.errorAt(nodePos(n), path, "%s", err)
		return "", false
	}
	if expanded {
		d.raw[path] = n.Value
	}
	if d.secretFiles != nil && isKeyFile(path) {
		// Private keys and credentials the file names by path (tls.key_file,
		// identity.assertion_key_file, …): as much a secret as a Secret's file.
		d.secretFiles[path] = s
	}
	return s, true
}

// show quotes a value for a message: the file's own text when the value was expanded from
// the environment, so the message cannot leak what the variable holds.
func (d *decoder) show(path, value string) string {
	if raw, ok := d.raw[path]; ok {
		return strconv.Quote(raw)
	}
	return strconv.Quote(value)
}

// field is one YAML key of a struct.
type field struct {
	name   string
	index  int
	secret bool
}

// structFields lists the keys of a struct type in declaration order. Fields tagged
// yaml:"-" or without a yaml tag are computed values, not keys.
func structFields(t reflect.Type) []field {
	var fs []field
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs = append(fs, field{name: name, index: i, secret: f.Type == secretType})
	}
	return fs
}

// extensionPrefix starts top-level keys that Portcullis ignores, so a file can keep YAML
// anchors (x-defaults: &defaults …) for merging into routes, as Compose files do.
const extensionPrefix = "x-"

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode && path == "" {
		d.errorAt(nodePos(n), path, "the file must hold a mapping (tls: …, routes: …), got %s", describe(n))
		return
	}
	if n.Kind != yaml.MappingNode {
		d.errorAt(nodePos(n), path, "must be a mapping, got %s", describe(n))
		return
	}
	fields := structFields(v.Type())
	byName := map[string]field{}
	var allowed []string
	for _, f := range fields {
		byName[f.name] = f
		allowed = append(allowed, f.name)
		if f.secret {
			allowed = append(allowed, f.name+secretFileSuffix)
		}
	}
	given := map[string]*yaml.Node{}
	for _, p := range d.pairs(n, path) {
		key := p.key.Value
		kp := join(path, key)
		d.keyPos[kp] = nodePos(p.key)
		given[key] = p.key
		if f, ok := byName[key]; ok {
			d.decode(p.val, v.Field(f.index), kp)
			continue
		}
		if base, ok := strings.CutSuffix(key, secretFileSuffix); ok {
			if f, ok := byName[base]; ok && f.secret {
				d.secretFile(p.val, v.Field(f.index), kp, join(path, base))
				continue
			}
		}
		if path == "" && strings.HasPrefix(key, extensionPrefix) {
			continue
		}
		d.errorAt(nodePos(p.key), kp, "%s", unknownKey(key, allowed))
	}
	for _, f := range fields {
		if k, ok := given[f.name+secretFileSuffix]; ok && f.secret && given[f.name] != nil {
			d.errorAt(nodePos(k), join(path, f.name+secretFileSuffix), "%s and %s are both given; use one of them", f.name, f.name+secretFileSuffix)
		}
	}
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.errorAt(nodePos(n), path, "must be a mapping, got %s", describe(n))
		return
	}
	t := v.Type()
	m := reflect.MakeMap(t)
	for _, p := range d.pairs(n, path) {
		kp := join(path, p.key.Value)
		d.keyPos[kp] = nodePos(p.key)
		ev := reflect.New(t.Elem()).Elem()
		d.decode(p.val, ev, kp)
		m.SetMapIndex(reflect.ValueOf(p.key.Value).Convert(t.Key()), ev)
	}
	v.Set(m)
}

// pair is one key: value of a mapping.
type pair struct{ key, val *yaml.Node }

// pairs lists a mapping's entries, reporting duplicate and non-string keys, and expands YAML
// merge keys ("<<: *defaults"): merged entries come after the mapping's own and never
// override them.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out []pair
	seen := map[string]*yaml.Node{}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := resolve(n.Content[i]), n.Content[i+1]
		if k == nil || k.Kind != yaml.ScalarNode {
			d.errorAt(nodePos(n.Content[i]), path, "keys must be strings, got %s", describe(n.Content[i]))
			continue
		}
		if k.ShortTag() == "!!merge" {
			merges = append(merges, val)
			continue
		}
		if first, dup := seen[k.Value]; dup {
			d.errorAt(nodePos(k), join(path, k.Value), "duplicate key; first given at line %d", first.Line)
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, val})
	}
	visited := map[*yaml.Node]bool{n: true}
	for _, m := range merges {
		d.merge(m, path, seen, &out, visited)
	}
	return out
}

// merge adds the entries of a merged mapping (or sequence of mappings) that are not yet in
// seen. visited stops merge loops and repeated merges of one anchor.
func (d *decoder) merge(m *yaml.Node, path string, seen map[string]*yaml.Node, out *[]pair, visited map[*yaml.Node]bool) {
	site := m
	m = resolve(m)
	if m == nil {
		return
	}
	switch m.Kind {
	case yaml.SequenceNode:
		for _, c := range m.Content {
			if r := resolve(c); r == nil || r.Kind != yaml.MappingNode {
				d.errorAt(nodePos(c), join(path, "<<"), "a merge (<<) takes a mapping or a sequence of mappings, got a sequence holding %s", describe(c))
				continue
			}
			d.merge(c, path, seen, out, visited)
		}
	case yaml.MappingNode:
		if visited[m] {
			return
		}
		visited[m] = true
		var nested []*yaml.Node
		for i := 0; i+1 < len(m.Content); i += 2 {
			k := resolve(m.Content[i])
			if k == nil || k.Kind != yaml.ScalarNode {
				continue
			}
			if k.ShortTag() == "!!merge" {
				nested = append(nested, m.Content[i+1])
				continue
			}
			if _, ok := seen[k.Value]; ok {
				continue
			}
			seen[k.Value] = k
			*out = append(*out, pair{k, m.Content[i+1]})
		}
		for _, nm := range nested {
			d.merge(nm, path, seen, out, visited)
		}
	default:
		d.errorAt(nodePos(site), join(path, "<<"), "a merge (<<) takes a mapping or a sequence of mappings, got %s", describe(m))
	}
}

// unknownKey says what is wrong with key: the nearest allowed key when it looks like a typo,
// the whole list otherwise.
func unknownKey(key string, allowed []string) string {
	best, bestDist := "", 1<<30
	for _, a := range allowed {
		if dist := editDistance(strings.ToLower(key), a); dist < bestDist {
			best, bestDist = a, dist
		}
	}
	if best != "" && bestDist <= max(1, min(2, len(key)/3)) {
		return fmt.Sprintf("unknown key; did you mean %q?", best)
	}
	return "unknown key; allowed keys: " + strings.Join(allowed, ", ")
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseDuration parses a duration as the configuration writes them: Go's syntax ("90m",
// "1h30m") with whole days in front ("30d", "1d12h").
func ParseDuration(s string) (time.Duration, error) { return parseDuration(s) }

// parseDuration is time.ParseDuration with whole days in front: "90d", "1d12h". Lifecycle
// policies speak in days, and a day is 24 hours here (no calendar, no time zone).
func parseDuration(s string) (time.Duration, error) {
	days, rest, ok := strings.Cut(s, "d")
	if !ok {
		return time.ParseDuration(s)
	}
	n, err := strconv.ParseUint(days, 10, 16)
	if err != nil || days == "" || days[0] == '+' {
		return 0, fmt.Errorf("bad number of days in %q", s)
	}
	d := time.Duration(n) * 24 * time.Hour
	if rest == "" {
		return d, nil
	}
	r, err := time.ParseDuration(rest)
	if err != nil || r < 0 {
		return 0, fmt.Errorf("bad duration after the days in %q", s)
	}
	return d + r, nil
}

// isKeyFile reports whether key path p names a file holding a key or credential.
func isKeyFile(p string) bool {
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		p = p[i+1:]
	}
	if !strings.HasSuffix(p, "_file") {
		return false
	}
	for _, w := range []string{"key", "secret", "password", "token"} {
		if strings.Contains(p, w) {
			return true
		}
	}
	return false
}
