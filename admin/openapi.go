package admin

import (
	"encoding"
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"strings"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3gen"

	"github.com/portcullis-proxy/portcullis/internal/problem"
)

// The OpenAPI 3 document is generated from the route table (endpoints) and the Go types of
// each endpoint's body and answer, with kin-openapi: the document is what the code serves by
// construction. TestOpenAPI validates it and keeps testdata/openapi.json, the committed copy,
// equal to it, so a change to the API shows in review.

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// openAPIDocument builds the document of es, as JSON.
func openAPIDocument(es []endpoint) ([]byte, error) {
	doc := &openapi3.T{
		OpenAPI: "3.0.3",
		Info: &openapi3.Info{
			Title:       "Portcullis administration API",
			Version:     "1",
			Description: "Organisations, memberships, access requests and approvals, and the API's own tokens. Every call but this document needs a bearer credential: an admin API token (pcadm_…) or an operator JWT. Every change takes a reason and is recorded in the audit stream with the individual and the credential that made it.",
		},
		Paths: openapi3.NewPaths(),
		Components: &openapi3.Components{
			SecuritySchemes: openapi3.SecuritySchemes{
				"bearer": &openapi3.SecuritySchemeRef{Value: openapi3.NewJWTSecurityScheme().WithDescription(
					"An admin API token (pcadm_<id>_<secret>) or an operator JWT of admin_api.operators.issuer.")},
			},
		},
		Security: openapi3.SecurityRequirements{{"bearer": []string{}}},
	}
	problemSchema, err := schemaOf(problem.Problem{})
	if err != nil {
		return nil, err
	}
	for _, e := range es {
		op := openapi3.NewOperation()
		op.OperationID = operationID(e)
		op.Summary = e.summary
		for _, m := range pathParam.FindAllStringSubmatch(e.path, -1) {
			op.AddParameter(openapi3.NewPathParameter(m[1]).WithSchema(openapi3.NewStringSchema()))
		}
		for _, q := range e.query {
			op.AddParameter(openapi3.NewQueryParameter(q).WithSchema(openapi3.NewStringSchema()))
		}
		if e.csv {
			op.AddParameter(openapi3.NewQueryParameter("format").WithSchema(openapi3.NewStringSchema().WithEnum("json", "csv")))
		}
		if e.in != nil {
			s, err := schemaOf(e.in)
			if err != nil {
				return nil, err
			}
			op.RequestBody = &openapi3.RequestBodyRef{Value: openapi3.NewRequestBody().WithRequired(true).WithJSONSchemaRef(s)}
		}
		out, err := schemaOf(e.out)
		if err != nil {
			return nil, err
		}
		status := e.status
		if status == 0 {
			status = http.StatusOK
		}
		op.Responses = openapi3.NewResponses()
		resp := openapi3.NewResponse().WithDescription(http.StatusText(status)).WithJSONSchemaRef(out)
		if e.csv {
			resp.Content["text/csv"] = openapi3.NewMediaType().WithSchema(openapi3.NewStringSchema())
		}
		op.AddResponse(status, resp)
		op.Responses.Set("default", &openapi3.ResponseRef{Value: openapi3.NewResponse().
			WithDescription("A refusal: error is a reason code (README, Reason codes), message says why.").WithJSONSchemaRef(problemSchema)})
		doc.AddOperation(e.path, e.method, op)
	}
	doc.Paths.Set(basePath+"/openapi.json", &openapi3.PathItem{Get: &openapi3.Operation{
		OperationID: "openapi", Summary: "This document", Security: &openapi3.SecurityRequirements{},
		Responses: openapi3.NewResponses(openapi3.WithStatus(200, &openapi3.ResponseRef{Value: openapi3.NewResponse().WithDescription("The OpenAPI document")})),
	}})
	return json.MarshalIndent(doc, "", "  ")
}

// schemaOf is the JSON schema of v's type, inline. A type that writes itself as text
// (config.Duration: "15m0s") is a string, whatever its kind.
func schemaOf(v any) (*openapi3.SchemaRef, error) {
	return openapi3gen.NewSchemaRefForValue(v, nil, openapi3gen.SchemaCustomizer(func(_ string, t reflect.Type, _ reflect.StructTag, s *openapi3.Schema) error {
		if t.Kind() != reflect.Struct && t.Implements(textMarshaler) {
			*s = *openapi3.NewStringSchema()
		}
		return nil
	}))
}

var textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()

// operationID is a stable name of an endpoint: its method and path, as words.
func operationID(e endpoint) string {
	p := strings.TrimPrefix(e.path, basePath+"/")
	p = pathParam.ReplaceAllString(p, "by-$1")
	words := strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '-' })
	var b strings.Builder
	b.WriteString(strings.ToLower(e.method))
	for _, w := range words {
		b.WriteString(strings.ToUpper(w[:1]) + w[1:])
	}
	return b.String()
}
