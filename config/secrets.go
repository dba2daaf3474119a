package config

import (
	"errors"
	"fmt"
	"io/fs"
	"reflect"
	"strings"

	yaml "go.yaml.in/yaml/v4"
)

// secretFileSuffix turns a Secret key "x" into the key "x_file" that names a file holding
// the value, so credentials can come from mounted secrets instead of the file itself.
const secretFileSuffix = "_file"

// expandEnv replaces every ${NAME} in s with the value of the environment variable NAME,
// and "$${" with a literal "${". A "$" not followed by "{" is kept as is, so passwords and
// regular expressions with a lone "$" need no escaping. It reports whether anything was
// expanded. Errors name the variable, never a value.
func expandEnv(s string, lookup func(string) (string, bool)) (string, bool, error) {
	if !strings.Contains(s, "${") {
		return s, false, nil
	}
	var b strings.Builder
	expanded := false
	for i := 0; i < len(s); {
		switch {
		case strings.HasPrefix(s[i:], "$${"):
			b.WriteString("${")
			i += 3
		case strings.HasPrefix(s[i:], "${"):
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", false, errors.New(`unterminated "${": write "${NAME}", or "$${" for a literal "${"`)
			}
			name := s[i+2 : i+2+end]
			if !validEnvName(name) {
				return "", false, fmt.Errorf("invalid environment variable name %q in \"${…}\"", name)
			}
			val, ok := lookup(name)
			if !ok {
				return "", false, fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(val)
			expanded = true
			i += 2 + end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), expanded, nil
}

// validEnvName accepts the portable environment variable names: [A-Za-z_][A-Za-z0-9_]*.
func validEnvName(name string) bool {
	if name == "" {
		return false
	}
	for i, c := range []byte(name) {
		switch {
		case c == '_', 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case '0' <= c && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// secretFile reads the Secret at secretPath from the file named by node n (key path kp,
// "…_file"). Only the file name appears in messages, never its content.
func (d *decoder) secretFile(n *yaml.Node, v reflect.Value, kp, secretPath string) {
	site := n
	d.valPos[kp] = nodePos(site)
	d.valPos[secretPath] = nodePos(site)
	if n = resolve(n); n == nil || isNull(n) {
		d.errorAt(nodePos(site), kp, "must name a file")
		return
	}
	name, ok := d.scalar(n, kp, "a file name")
	if !ok {
		return
	}
	if name == "" {
		d.errorAt(nodePos(n), kp, "must name a file")
		return
	}
	if d.secretFiles != nil {
		d.secretFiles[kp] = name
	}
	data, err := d.readFile(name)
	if err != nil {
		d.errorAt(nodePos(n), kp, "cannot read %s: %s", d.show(kp, name), fileReason(err))
		return
	}
	val := strings.TrimRight(string(data), "\r\n")
	if val == "" {
		d.errorAt(nodePos(n), kp, "file %s is empty", d.show(kp, name))
		return
	}
	v.SetString(val)
}

// fileReason is why a file could not be read, without repeating its name.
func fileReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return err.Error()
}
