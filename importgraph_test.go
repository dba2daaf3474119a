package portcullis_test

// This test keeps the package structure of docs/design.md honest, in the manner of Tailscale's and
// Pomerium's import tests: imports flow one way (cmd → proxy → {session, authz} → store → config,
// audit a leaf), only store talks to Redis, and every package says what it is for. It parses
// the tree with go/parser rather than running `go list`, so it needs no toolchain subprocess
// and still works while an unrelated package does not compile.

import (
	"bufio"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// leaves are the packages of pure rules and data that everything may use, config included:
// they import no project package but other leaves, so depending on them can never close a
// cycle.
var leaves = []string{"internal/syntax", "internal/reason", "internal/recoveryid", "internal/invalcache", "internal/apikey", "internal/coalesce", "internal/records"}

const (
	goRedis   = "github.com/redis/go-redis/"
	miniredis = "github.com/alicebob/miniredis/"
)

// pkgInfo is what the rules need to know about one directory's Go files.
type pkgInfo struct {
	dir     string // slash-separated, relative to the module root ("." for the root)
	name    string // package name of the non-test files
	hasCode bool   // has non-test .go files
	doc     string // package doc comment from a non-test file, "" if none
	// imports maps an import path to the non-test files importing it. Test files are not
	// recorded: they may use test helpers and drivers freely.
	imports map[string][]string
}

func TestImportGraph(t *testing.T) {
	module, pkgs := loadTree(t, ".")
	for _, want := range []string{"config", "store", "internal/redistest"} {
		if p := pkgs[want]; p == nil || !p.hasCode {
			t.Fatalf("package %s not found: the tree walk is broken, so the rules would pass vacuously", want)
		}
	}
	for _, problem := range checkGraph(module, pkgs) {
		t.Error(problem)
	}
}

// TestImportGraphRules checks that each rule fires, on a small tree of bad packages.
func TestImportGraphRules(t *testing.T) {
	root := t.TempDir()
	write := func(name, src string) {
		p := filepath.Join(root, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/pc\n\ngo 1.26\n")
	write("config/c.go", "// Package config is fine.\npackage config\n\nimport (\n\t_ \"example.com/pc/store\"\n\t_ \"example.com/pc/internal/syntax\"\n)\n")
	write("internal/syntax/s.go", "// Package syntax is fine.\npackage syntax\n\nimport _ \"example.com/pc/config\"\n")
	write("audit/a.go", "// Package audit is fine.\npackage audit\n\nimport _ \"example.com/pc/config\"\n")
	write("store/s.go", "// Package store is fine.\npackage store\n\nimport (\n\t_ \"example.com/pc/session\"\n\t_ \"github.com/redis/go-redis/v9\"\n)\n")
	write("proxy/p.go", "// Package proxy is fine.\npackage proxy\n\nimport _ \"github.com/redis/go-redis/v9\"\n")
	write("proxy/p_test.go", "package proxy\n\nimport _ \"example.com/pc/internal/redistest\"\n")
	write("session/s.go", "// Package session is fine.\npackage session\n\nimport (\n\t_ \"example.com/pc/proxy\"\n\t_ \"github.com/alicebob/miniredis/v2\"\n\t_ \"example.com/pc/internal/redistest\"\n)\n")
	write("authz/a.go", "package authz\n\nimport _ \"example.com/pc/cmd/portcullis\"\n")
	write("authz/b.go", "// Package authorisation is misnamed.\npackage authz\n")
	write("audit/doc_test.go", "package audit\n")
	write("nodoc/n.go", "package nodoc\n")
	write("admin/a.go", "// Package admin is fine.\npackage admin\n\nimport (\n\t_ \"example.com/pc/proxy\"\n\t_ \"example.com/pc/authz\"\n)\n")
	write("proxy/q.go", "package proxy\n\nimport _ \"example.com/pc/admin\"\n")
	write("console/c.go", "// Package console is fine.\npackage console\n\nimport (\n\t_ \"example.com/pc/proxy\"\n\t_ \"example.com/pc/session\"\n)\n")
	write("proxy/r.go", "package proxy\n\nimport _ \"example.com/pc/console\"\n")
	write("testdata/x/x.go", "package x\n\nimport _ \"github.com/redis/go-redis/v9\"\n")

	module, pkgs := loadTree(t, root)
	got := strings.Join(checkGraph(module, pkgs), "\n")
	for _, want := range []string{
		"config/c.go imports example.com/pc/store: config must import no other project package",
		"internal/syntax/s.go imports example.com/pc/config: internal/syntax is a leaf and must import no project package but leaves",
		"audit/a.go imports example.com/pc/config: audit must import no other project package",
		"store/s.go imports example.com/pc/session: store may import only config, audit and the leaves",
		"proxy/p.go imports github.com/redis/go-redis/v9: proxy must never talk to Redis directly",
		"session/s.go imports example.com/pc/proxy: only cmd imports proxy",
		"session/s.go imports github.com/alicebob/miniredis/v2: only internal/redistest may use miniredis",
		"session/s.go imports example.com/pc/internal/redistest: test helpers belong in _test.go files",
		"authz/a.go imports example.com/pc/cmd/portcullis: nothing imports a command",
		"package authz (authz): doc comment should start",
		"package nodoc (nodoc) has no package doc comment",
		"admin/a.go imports example.com/pc/proxy: admin stands beside proxy and session",
		"proxy/q.go imports example.com/pc/admin: only cmd imports admin",
		"console/c.go imports example.com/pc/proxy: the console reaches the admin API through its interface only",
		"proxy/r.go imports example.com/pc/console: only cmd imports console",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing problem %q", want)
		}
	}
	for _, unwanted := range []string{"store/s.go imports github.com/redis", "p_test.go", "testdata", "package audit", "package config",
		"config/c.go imports example.com/pc/internal/syntax",
		"admin/a.go imports example.com/pc/authz", "console/c.go imports example.com/pc/session"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("false alarm containing %q", unwanted)
		}
	}
	if t.Failed() {
		t.Logf("problems found:\n%s", got)
	}
}

// checkGraph returns every violation of the package rules, one line each, naming the file.
// Rules concern non-test files only: tests may import drivers and helpers freely.
func checkGraph(module string, pkgs map[string]*pkgInfo) []string {
	proj := func(imp string) (rel string, ok bool) {
		if imp == module {
			return ".", true
		}
		return strings.CutPrefix(imp, module+"/")
	}
	under := func(dir string, roots ...string) bool {
		for _, root := range roots {
			if dir == root || strings.HasPrefix(dir, root+"/") {
				return true
			}
		}
		return false
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	for _, p := range sortedPkgs(pkgs) {
		imps := make([]string, 0, len(p.imports))
		for imp := range p.imports {
			imps = append(imps, imp)
		}
		sort.Strings(imps)
		for _, imp := range imps {
			at := strings.Join(p.imports[imp], ", ")
			target, isProj := proj(imp)
			switch {
			// A leaf imports nothing of ours, so that anything, config included, may import it.
			case under(p.dir, leaves...) && isProj && !under(target, leaves...):
				bad("%s imports %s: %s is a leaf and must import no project package but leaves", at, imp, p.dir)
			// config is the bottom of the graph: everything may depend on it, so it may depend
			// on nothing of ours but the leaves (docs/design.md, Packages).
			case under(p.dir, "config") && isProj && !under(target, "config") && !under(target, leaves...):
				bad("%s imports %s: config must import no other project package", at, imp)
			// audit is a leaf used by all; importing anything of ours invites cycles and lets
			// event types depend on policy.
			case under(p.dir, "audit") && isProj && !under(target, "audit"):
				bad("%s imports %s: audit must import no other project package", at, imp)
			// store sits just above config; policy and HTTP live above it.
			case under(p.dir, "store") && isProj && !under(target, "store", "config", "audit") && !under(target, leaves...):
				bad("%s imports %s: store may import only config, audit and the leaves of the project", at, imp)
			// Only store (and the test helper) speak Redis, so key names and scripts stay in
			// one place and nobody bypasses the store's error mapping and fail-closed rules.
			case strings.HasPrefix(imp, goRedis) && !under(p.dir, "store", "internal/redistest"):
				if under(p.dir, "proxy") {
					bad("%s imports %s: proxy must never talk to Redis directly; go through store", at, imp)
				} else {
					bad("%s imports %s: only store talks to Redis", at, imp)
				}
			// The in-process server is for tests (through redistest) and the dev demo only.
			case strings.HasPrefix(imp, miniredis) && p.dir != "internal/redistest" && p.dir != "internal/devredis":
				bad("%s imports %s: only internal/redistest may use miniredis", at, imp)
			case isProj && target == "internal/redistest":
				bad("%s imports %s: test helpers belong in _test.go files", at, imp)
			case isProj && under(target, "cmd"):
				bad("%s imports %s: nothing imports a command", at, imp)
			// Imports flow one way: cmd → proxy → {session, authz} → store → config.
			case isProj && under(target, "proxy") && under(p.dir, "session", "authz", "store", "config", "audit"):
				bad("%s imports %s: only cmd imports proxy (imports flow cmd → proxy → session/authz → store → config)", at, imp)
			// The admin API sits beside proxy: both above authz and store, neither knowing the
			// other, so the API cannot reach around the decision path and the proxy carries no
			// administration code.
			case isProj && under(target, "admin") && !under(p.dir, "admin", "cmd"):
				bad("%s imports %s: only cmd imports admin", at, imp)
			case under(p.dir, "admin") && isProj && under(target, "proxy", "session"):
				bad("%s imports %s: admin stands beside proxy and session, on authz and store", at, imp)
			// The console is a client of the admin API (through an interface, as the person),
			// never of its internals or of the proxy's: it can do nothing the API refuses.
			case under(p.dir, "console") && isProj && under(target, "proxy", "admin"):
				bad("%s imports %s: the console reaches the admin API through its interface only", at, imp)
			case isProj && under(target, "console") && !under(p.dir, "console", "cmd"):
				bad("%s imports %s: only cmd imports console", at, imp)
			}
		}

		// Every package says what it is for (STYLE.md 13); readers and go doc start there.
		if p.hasCode {
			switch {
			case p.doc == "":
				bad("package %s (%s) has no package doc comment; add one (a doc.go is customary)", p.name, p.dir)
			case p.name != "main" && !strings.HasPrefix(p.doc, "Package "+p.name+" "):
				bad("package %s (%s): doc comment should start %q", p.name, p.dir, "Package "+p.name+" ")
			}
		}
	}
	return problems
}

// loadTree parses the imports and package docs of every Go file under root, skipping what the go
// command skips (testdata, vendor, directories starting with "." or "_").
func loadTree(t *testing.T, root string) (module string, pkgs map[string]*pkgInfo) {
	t.Helper()
	module = modulePath(t, filepath.Join(root, "go.mod"))
	pkgs = map[string]*pkgInfo{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if p != root && (name == "testdata" || name == "vendor" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") {
			return nil
		}
		f, err := parser.ParseFile(fset, p, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dir := path.Dir(rel)
		pk := pkgs[dir]
		if pk == nil {
			pk = &pkgInfo{dir: dir, imports: map[string][]string{}}
			pkgs[dir] = pk
		}
		if strings.HasSuffix(name, "_test.go") {
			return nil
		}
		pk.hasCode = true
		pk.name = f.Name.Name
		if pk.doc == "" && f.Doc != nil {
			pk.doc = f.Doc.Text()
		}
		for _, spec := range f.Imports {
			imp, err := strconv.Unquote(spec.Path.Value)
			if err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if !slices.Contains(pk.imports[imp], rel) {
				pk.imports[imp] = append(pk.imports[imp], rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return module, pkgs
}

func modulePath(t *testing.T, gomod string) string {
	t.Helper()
	f, err := os.Open(gomod)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(m), `"`)
		}
	}
	t.Fatalf("%s: no module line", gomod)
	return ""
}

func sortedPkgs(m map[string]*pkgInfo) []*pkgInfo {
	out := make([]*pkgInfo, 0, len(m))
	for _, p := range m {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].dir < out[j].dir })
	return out
}

// TestProxyUsesStoreOnlyForErrors: proxy reads requests, asks authz's interfaces for records
// and renders; it never calls store, builds its values or knows its types. Naming store's
// errors (errors.Is(err, store.ErrNotFound)) is the one use allowed.
func TestProxyUsesStoreOnlyForErrors(t *testing.T) {
	module, _ := loadTree(t, ".")
	uses, err := storeUses("proxy", module)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range uses {
		t.Errorf("%s: proxy may use package store only for its named errors", u)
	}
}

// TestStoreUsesRule checks that storeUses finds what it must.
func TestStoreUsesRule(t *testing.T) {
	dir := t.TempDir()
	src := "package proxy\n\nimport \"example.com/pc/store\"\n\nvar _ = store.ErrNotFound\nvar _ store.Org\nfunc f() { store.NewCache(nil, 0, nil) }\n"
	if err := os.WriteFile(filepath.Join(dir, "p.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "p_test.go"), []byte("package proxy\n\nimport \"example.com/pc/store\"\n\nvar _ store.Org\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	uses, err := storeUses(dir, "example.com/pc")
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(uses, "\n")
	if len(uses) != 2 || !strings.Contains(got, "store.Org") || !strings.Contains(got, "store.NewCache") || strings.Contains(got, "ErrNotFound") {
		t.Errorf("uses:\n%s", got)
	}
}

// storeUses lists the uses of package store other than its Err* names in the non-test Go
// files of dir.
func storeUses(dir, module string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		return nil, err
	}
	var out []string
	fset := token.NewFileSet()
	for _, file := range files {
		if strings.HasSuffix(file, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, file, nil, 0)
		if err != nil {
			return nil, err
		}
		name := ""
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == module+"/store" {
				name = "store"
				if imp.Name != nil {
					name = imp.Name.Name
				}
			}
		}
		if name == "" {
			continue
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if id, ok := sel.X.(*ast.Ident); ok && id.Name == name && !strings.HasPrefix(sel.Sel.Name, "Err") {
				out = append(out, fmt.Sprintf("%s: store.%s", fset.Position(sel.Pos()), sel.Sel.Name))
			}
			return true
		})
	}
	return out, nil
}
