package admin

import (
	"context"
	"flag"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

var update = flag.Bool("update", false, "rewrite testdata/openapi.json")

// TestOpenAPI: the served document is valid OpenAPI 3 (kin-openapi's validator), names every
// route of the table with its method, body and answer, and nothing else; and it equals
// testdata/openapi.json, the committed copy, so a change to the API shows in review (go test
// ./admin -run TestOpenAPI -update rewrites it).
func TestOpenAPI(t *testing.T) {
	cfg, _, err := config.Parse("a.yaml", []byte(policyYAML))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Store: (*store.Store)(nil), Orgs: &store.Orgs{}, Audit: (*store.Audit)(nil), Lifecycle: authz.CompilePolicy(&cfg.Lifecycle)})
	if err != nil {
		t.Fatal(err)
	}
	doc, err := openapi3.NewLoader().LoadFromData(s.OpenAPI())
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the document is not valid OpenAPI: %v", err)
	}
	var want []string
	for _, e := range s.endpoints() {
		want = append(want, e.method+" "+e.path)
		op := doc.Paths.Find(e.path).GetOperation(e.method)
		switch {
		case op == nil:
			t.Errorf("%s %s is not in the document", e.method, e.path)
			continue
		case (e.in != nil) != (op.RequestBody != nil):
			t.Errorf("%s %s: body in the document %v, in the code %v", e.method, e.path, op.RequestBody != nil, e.in != nil)
		case op.Responses.Default() == nil:
			t.Errorf("%s %s: no refusal answer", e.method, e.path)
		}
		status := e.status
		if status == 0 {
			status = http.StatusOK
		}
		if op.Responses.Status(status) == nil {
			t.Errorf("%s %s: no %d answer", e.method, e.path, status)
		}
	}
	want = append(want, "GET "+basePath+"/openapi.json")
	var got []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			got = append(got, method+" "+path)
		}
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("document operations %v, routes %v", got, want)
	}
	// The document is served as it is.
	rec := &recorder{header: http.Header{}}
	req, _ := http.NewRequest("GET", basePath+"/openapi.json", nil)
	s.ServeHTTP(rec, req)
	if rec.status != 0 && rec.status != 200 || string(rec.body) != string(s.OpenAPI()) || !strings.HasPrefix(rec.header.Get("Content-Type"), "application/json") {
		t.Errorf("served %d %q", rec.status, rec.header.Get("Content-Type"))
	}

	const golden = "testdata/openapi.json"
	if *update {
		if err := os.WriteFile(golden, append(s.OpenAPI(), '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(committed)) != strings.TrimSpace(string(s.OpenAPI())) {
		t.Errorf("%s differs from the document the code serves: run go test ./admin -run TestOpenAPI -update and review the change", golden)
	}
}

type recorder struct {
	header http.Header
	status int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }
func (r *recorder) WriteHeader(s int)           { r.status = s }
