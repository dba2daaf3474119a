package problem

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestWriteJSONForAPIClients(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("X-Request-Id", "req-1")
	w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
	Write(w, httptest.NewRequest("GET", "/x", nil), New(http.StatusUnauthorized, "no_session", "Sign in."))
	var got map[string]string
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if w.Code != 401 || got["error"] != "no_session" || got["message"] != "Sign in." || got["request_id"] != "req-1" {
		t.Errorf("%d %v", w.Code, got)
	}
	h := w.Header()
	if h.Get("Content-Type") != "application/json" || h.Get("Cache-Control") != "no-store" ||
		h.Get("X-Content-Type-Options") != "nosniff" || h.Get("WWW-Authenticate") == "" {
		t.Errorf("headers %v", h)
	}
}

func TestWriteHTMLForBrowsersEscapes(t *testing.T) {
	for _, hdr := range []map[string]string{{"Accept": "text/html"}, {"Sec-Fetch-Mode": "navigate"}} {
		r := httptest.NewRequest("GET", "/x", nil)
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		p := New(http.StatusForbidden, "role_missing", `<script>alert(1)</script>`)
		p.Hint = `ask "it" <admin>`
		p.Action, p.ActionText = "javascript:alert(1)", "Go"
		Write(w, r, p)
		body := w.Body.String()
		if w.Code != 403 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("%d %s", w.Code, w.Header().Get("Content-Type"))
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, "<admin>") || strings.Contains(body, `href="javascript:`) {
			t.Errorf("unescaped: %s", body)
		}
		if !strings.Contains(body, "<code>role_missing</code>") || !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("page lacks reason or CSP: %s", body)
		}
	}
}

func TestBadRequestClosesTheConnectionAndHEADHasNoBody(t *testing.T) {
	w := httptest.NewRecorder()
	Write(w, httptest.NewRequest("HEAD", "/x", nil), New(http.StatusBadRequest, "path_traversal", ""))
	if w.Header().Get("Connection") != "close" || w.Body.Len() != 0 {
		t.Errorf("Connection %q, body %q", w.Header().Get("Connection"), w.Body.String())
	}
}
