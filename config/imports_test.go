package config

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestNoProjectImports keeps config at the bottom of the import graph: every other package
// depends on it, so it may depend on none of them but the leaves: internal/syntax (the
// lexical rules of names), internal/reason (the reason codes) and internal/recoveryid (the
// recovery guard's identifier syntax), which import no other package of the project
// (importgraph_test.go checks that).
func TestNoProjectImports(t *testing.T) {
	const module = "github.com/portcullis-proxy/portcullis"
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			self := path == module+"/config" && f.Name.Name == "config_test" // examples use the package itself
			leaf := path == module+"/internal/syntax" || path == module+"/internal/reason" || path == module+"/internal/recoveryid"
			if !self && !leaf && (path == module || strings.HasPrefix(path, module+"/")) {
				t.Errorf("%s imports %s", file, path)
			}
		}
	}
}
