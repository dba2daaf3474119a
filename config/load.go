package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"strings"

	yaml "go.yaml.in/yaml/v4"
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

// syntaxError records a parser error where the parser found it: the line and column of the
// offending token (go-yaml v4 reports them; its marks count from 1).
func (d *decoder) syntaxError(err error) {
	var le *yaml.LoadError
	if errors.As(err, &le) {
		at := pos{max(le.Mark.Line, 1), max(le.Mark.Column, 1)}
		msg := le.Message
		switch {
		case le.ContextMsg == "" || le.ContextMark.Line == 0 || le.ContextMark == le.Mark:
		case strings.Contains(le.Message, "end of stream"):
			// Nothing is wrong where the file ends: the construct left open is, where it starts.
			at = pos{le.ContextMark.Line, max(le.ContextMark.Column, 1)}
			msg = fmt.Sprintf("%s %s that starts here and is never closed", le.Message, le.ContextMsg)
		case strings.Contains(le.ContextMsg, "flow") && strings.HasPrefix(le.Message, "did not find expected"):
			// `routes: [oops` and the next line: found where the collection should have gone on.
			msg += fmt.Sprintf(" (%s that starts at line %d, column %d: is it closed?)", le.ContextMsg, le.ContextMark.Line, le.ContextMark.Column)
		default:
			msg += fmt.Sprintf(" (%s that starts at line %d, column %d)", le.ContextMsg, le.ContextMark.Line, le.ContextMark.Column)
		}
		d.errorAt(at, "", "YAML syntax error: %s", msg)
		return
	}
	d.errorAt(pos{1, 1}, "", "YAML syntax error: %s", strings.TrimPrefix(err.Error(), "yaml: "))
}
