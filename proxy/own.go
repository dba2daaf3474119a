package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// ownPrefix is Portcullis's reserved path space. Nothing under it is ever forwarded.
const ownPrefix = "/.portcullis/"

// ownBodyLimit bounds the body of a request to an own endpoint: the largest any takes is a
// back-channel logout token (64 KiB).
const ownBodyLimit = 64 << 10

// serveOwn answers the proxy's own endpoints. Paths match exactly; anything else under the
// prefix is a 404, never a fall-through to a portal route (AUTHN-03).
func (ex *exchange) serveOwn() error {
	s, w, r := ex.s, ex.w, ex.r
	if ex.path == forwardAuthPath {
		// Before the body limit: an ingress may send the original request's body along
		// (or its Content-Length), which a question never reads.
		// Not on the main listener when Envoy asks over gRPC: the main listener is then
		// reached through Envoy's route to Portcullis's own pages, without a question, and a
		// client could ask about itself and get its own assertion.
		if fa := ex.st.set.ForwardAuth; !fa.Enabled || fa.Listen != "" || fa.EnvoyListen != "" {
			return reject(reason.NoRoute)
		}
		return ex.forwardAuth()
	}
	if r.ContentLength > ownBodyLimit {
		// No own endpoint takes more; the answer is sent before the body is read, and the
		// rest of the body is drained so the client can read it (linger).
		w.Header().Set("Connection", "close")
		return reject(reason.BodyTooLarge)
	}
	if r.Body != nil && r.ContentLength != 0 {
		r.Body = http.MaxBytesReader(w, r.Body, ownBodyLimit)
	}
	switch ex.path {
	case ownPrefix + "healthz":
		if err := getOrHead(w, r); err != nil {
			return err
		}
		writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
	case ownPrefix + "readyz":
		if err := getOrHead(w, r); err != nil {
			return err
		}
		s.serveReady(w, r)
	case ownPrefix + "orgs":
		return ex.serveOrgs()
	case ownPrefix + "jwks.json":
		if s.opts.Signer == nil {
			return reject(reason.NoRoute)
		}
		if err := getOrHead(w, r); err != nil {
			return err
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(s.opts.Signer.JWKS())
	default:
		name := strings.TrimPrefix(ex.path, ownPrefix)
		h, ok := s.opts.Endpoints[name]
		if i := strings.IndexByte(name, '/'); !ok && i >= 0 {
			// An endpoint keyed "name/" serves the paths under it (the console).
			h, ok = s.opts.Endpoints[name[:i+1]]
		}
		if !ok {
			return reject(reason.NoRoute)
		}
		h.ServeHTTP(w, r)
	}
	return nil
}

func getOrHead(w http.ResponseWriter, r *http.Request) error {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return nil
	}
	w.Header().Set("Allow", "GET, HEAD")
	return reject(reason.MethodNotAllowed)
}

// serveReady runs every readiness check concurrently with a short deadline. Check names and
// results are shown; causes are only logged, because they can name internal addresses.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	type result struct {
		name string
		err  error
	}
	results := make(chan result, len(s.opts.ReadyChecks))
	for name, check := range s.opts.ReadyChecks {
		go func() { results <- result{name, check(ctx)} }()
	}
	checks := map[string]string{"config": "ok"}
	status := http.StatusOK
	for range s.opts.ReadyChecks {
		res := <-results
		if res.err != nil {
			status = http.StatusServiceUnavailable
			checks[res.name] = "failing"
			s.log.Warn("readiness check failed", slog.String("check", res.name), slog.Any("error", res.err))
		} else {
			checks[res.name] = "ok"
		}
	}
	body := struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
	}{Status: "ok", Checks: checks}
	if status != http.StatusOK {
		body.Status = string(reason.NotReady)
	}
	writeJSON(w, r, status, body)
}

func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_ = json.NewEncoder(w).Encode(v)
	}
}
