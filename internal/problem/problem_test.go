package problem

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

func TestWriteJSONForAPIClients(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("X-Request-Id", "req-1")
	w.Header().Set("WWW-Authenticate", `Bearer realm="portcullis"`)
	Write(w, httptest.NewRequest("GET", "/x", nil), Problem{Status: http.StatusUnauthorized, Reason: "no_session", Message: "Sign in."})
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
		p := Problem{Status: http.StatusForbidden, Reason: "role_missing", Message: `<script>alert(1)</script>`}
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
	Write(w, httptest.NewRequest("HEAD", "/x", nil), New(reason.PathTraversal))
	if w.Header().Get("Connection") != "close" || w.Body.Len() != 0 {
		t.Errorf("Connection %q, body %q", w.Header().Get("Connection"), w.Body.String())
	}
}

// TestEveryCodeRenders: every code of the table renders as its status with its message, in
// JSON and HTML, and a 401 always carries a challenge.
func TestEveryCodeRenders(t *testing.T) {
	for _, spec := range reason.All() {
		for _, html := range []bool{false, true} {
			r := httptest.NewRequest("GET", "/x", nil)
			if html {
				r.Header.Set("Accept", "text/html")
			}
			w := httptest.NewRecorder()
			w.Header().Set("X-Request-Id", "req-7")
			Write(w, r, New(spec.Code))
			if w.Code != spec.Status {
				t.Errorf("%s: status %d, want %d", spec.Code, w.Code, spec.Status)
			}
			if spec.Status == http.StatusUnauthorized && w.Header().Get("WWW-Authenticate") == "" {
				t.Errorf("%s: 401 without WWW-Authenticate", spec.Code)
			}
			body := w.Body.String()
			if html {
				if !strings.Contains(body, "<code>"+string(spec.Code)+"</code>") || !strings.Contains(body, "req-7") {
					t.Errorf("%s: page lacks its code or request id", spec.Code)
				}
				continue
			}
			var got map[string]any
			if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil || got["error"] != string(spec.Code) ||
				got["message"] != spec.Text(reason.Facts{}) || got["request_id"] != "req-7" {
				t.Errorf("%s: JSON %s", spec.Code, body)
			}
		}
	}
}

// TestStepUpChallenge: the RFC 9470 answer, in the header and the JSON body.
func TestStepUpChallenge(t *testing.T) {
	p := New(reason.StepUpRequired)
	p.Challenge = &Challenge{Route: "admin", Org: "acme", ACRValues: "urn:x:mfa urn:x:hwk", AMR: "otp", MaxAge: 300}
	w := httptest.NewRecorder()
	Write(w, httptest.NewRequest("GET", "/admin", nil), p)
	want := `Bearer error="insufficient_user_authentication", error_description="A recent, stronger authentication is required", acr_values="urn:x:mfa urn:x:hwk", max_age=300`
	if got := w.Header().Values("WWW-Authenticate"); w.Code != 401 || len(got) != 1 || got[0] != want {
		t.Errorf("%d %q", w.Code, got)
	}
	var body map[string]any
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil || body["error"] != "step_up_required" || body["max_age"] != float64(300) ||
		body["acr_values"] != "urn:x:mfa urn:x:hwk" || body["amr"] != "otp" || body["route"] != "admin" || body["org"] != "acme" {
		t.Errorf("body %s", w.Body)
	}
	// An amr-only demand has no acr_values.
	p.Challenge = &Challenge{Route: "amr", AMR: "hwk", MaxAge: 90}
	w = httptest.NewRecorder()
	Write(w, httptest.NewRequest("GET", "/amr", nil), p)
	if got := w.Header().Get("WWW-Authenticate"); strings.Contains(got, "acr_values") || !strings.HasSuffix(got, "max_age=90") {
		t.Errorf("amr only: %q", got)
	}
}

// TestFailLogsTheCauseOnly: a handler's refusal is logged with its cause and written without it.
func TestFailLogsTheCauseOnly(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := httptest.NewRecorder()
	err := Outage(reason.StoreUnavailable, "session store unavailable", "load", errors.New("dial tcp 10.0.0.9:6379: connection refused"))
	Fail(log, w, httptest.NewRequest("GET", "/x", nil), err)
	if w.Code != 503 || strings.Contains(w.Body.String(), "10.0.0.9") || !strings.Contains(w.Body.String(), "store_unavailable") {
		t.Errorf("answer %d %s", w.Code, w.Body)
	}
	if l := logs.String(); !strings.Contains(l, "session store unavailable") || !strings.Contains(l, "10.0.0.9") || !strings.Contains(l, "op=load") {
		t.Errorf("log %s", l)
	}
	// Anything else is an internal error, its text logged only.
	logs.Reset()
	w = httptest.NewRecorder()
	Fail(log, w, httptest.NewRequest("GET", "/x", nil), errors.New("secret detail"))
	if w.Code != 500 || strings.Contains(w.Body.String(), "secret detail") || !strings.Contains(logs.String(), "secret detail") {
		t.Errorf("internal: %d %s / %s", w.Code, w.Body, logs.String())
	}
}
