package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// Loader reads configurations. Its fields let tests replace the process environment and the
// file system; a nil field means the real one. The zero Loader is ready to use.
type Loader struct {
	// LookupEnv resolves ${NAME} references. Nil: os.LookupEnv.
	LookupEnv func(name string) (string, bool)
	// ReadFile reads the configuration file (Load) and the "…_file" secrets. Nil: os.ReadFile.
	ReadFile func(name string) ([]byte, error)
	// Stat checks that referenced files (CA bundles, certificates) exist. Nil: os.Stat.
	Stat func(name string) (fs.FileInfo, error)
}

// Load reads, decodes, defaults and validates the configuration file at path with the real
// environment and file system. See Loader.Parse for what it returns.
func Load(path string) (*Config, Errors, error) { return Loader{}.Load(path) }

// Parse is Loader.Parse with the real environment and file system.
func Parse(name string, data []byte) (*Config, Errors, error) { return Loader{}.Parse(name, data) }

// Load reads the file at path and parses it (see Parse). A file that cannot be read is an
// error wrapping the fs error.
func (l Loader) Load(path string) (*Config, Errors, error) {
	read := l.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	data, err := read(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read configuration: %w", err)
	}
	return l.Parse(path, data)
}

// Parse decodes data, the content of the file called name (used only in messages and as
// Config.File), applies the defaults and validates the result.
//
// It returns the Config, with every parsed value filled, only when there is no error. The
// warnings are returned in any case. The error, when not nil, is of type Errors and holds
// every problem found, each with its position, in file order.
func (l Loader) Parse(name string, data []byte) (cfg *Config, warnings Errors, err error) {
	env, read, stat := l.LookupEnv, l.ReadFile, l.Stat
	if env == nil {
		env = os.LookupEnv
	}
	if read == nil {
		read = os.ReadFile
	}
	if stat == nil {
		stat = os.Stat
	}
	d := newDecoder(name, env, read)
	c := &Config{File: name}
	v := &validator{file: name, d: d, stat: stat}
	// Validation runs even after decoding errors, so one run reports both kinds; it skips
	// keys that already failed to decode.
	if root := d.parseYAML(data); root != nil {
		d.decode(root, reflect.ValueOf(c).Elem(), "")
		ApplyDefaults(c)
		if !d.failed[""] { // the whole file failed (not a mapping, too large): nothing to check
			v.config(c)
		}
	}
	errs := append(d.errs, v.errs...)
	sortErrors(errs)
	sortErrors(v.warns)
	if len(errs) > 0 {
		return nil, v.warns, errs
	}
	return c, v.warns, nil
}

// yamlLine finds the line in the parser's messages ("yaml: line 3: …").
var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// parseYAML parses the single document in data and returns its root node, or nil after
// recording why there is none. A second document is an error: one file is one configuration.
func (d *decoder) parseYAML(data []byte) (root *yaml.Node) {
	defer func() {
		// The parser is third-party code fed with untrusted bytes; a panic in it must become a
		// message, not take the process down during a reload.
		if r := recover(); r != nil {
			d.errorAt(pos{1, 1}, "", "YAML parser failed: %v", r)
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			d.errorAt(pos{1, 1}, "", "the file is empty; a configuration needs at least tls and routes")
			return nil
		}
		d.syntaxError(err)
		return nil
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		d.errorAt(pos{max(next.Line, 1), max(next.Column, 1)}, "",
			"a second YAML document starts here; a configuration file holds exactly one")
	case !errors.Is(err, io.EOF):
		d.syntaxError(err)
	}
	if len(doc.Content) == 0 {
		d.errorAt(pos{1, 1}, "", "the file is empty; a configuration needs at least tls and routes")
		return nil
	}
	root = doc.Content[0]
	if r := resolve(root); r != nil && isNull(r) {
		d.errorAt(pos{1, 1}, "", "the file is empty; a configuration needs at least tls and routes")
		return nil
	}
	return root
}

// syntaxError records a parser error at the line it names (line 1 when it names none: the
// parser omits "line 1").
func (d *decoder) syntaxError(err error) {
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		if n, err := strconv.Atoi(m[1]); err == nil && n > 0 {
			line = n
		}
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	d.errorAt(pos{line, 1}, "", "YAML syntax error: %s", msg)
}
