package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// ownPrefix is Portcullis's reserved path space. Nothing under it is ever forwarded.
const ownPrefix = "/.portcullis/"

// serveOwn answers the proxy's own endpoints. Paths match exactly; anything else under the
// prefix is a 404, never a fall-through to a portal route (AUTHN-03).
func (s *Server) serveOwn(w http.ResponseWriter, r *http.Request, path string, fi *forwardInfo) {
	switch path {
	case ownPrefix + "healthz":
		if !getOrHead(w, r, fi, s) {
			return
		}
		writeJSON(w, r, http.StatusOK, map[string]string{"status": "ok"})
	case ownPrefix + "readyz":
		if !getOrHead(w, r, fi, s) {
			return
		}
		s.serveReady(w, r)
	case ownPrefix + "orgs":
		s.serveOrgs(w, r, s.state.Load(), fi)
	case ownPrefix + "jwks.json":
		if s.opts.Signer == nil {
			s.reject(w, r, fi, http.StatusNotFound, reasonNotFound)
			return
		}
		if !getOrHead(w, r, fi, s) {
			return
		}
		w.Header().Set("Content-Type", "application/jwk-set+json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(s.opts.Signer.JWKS())
	default:
		if h, ok := s.opts.Endpoints[strings.TrimPrefix(path, ownPrefix)]; ok {
			h.ServeHTTP(w, r)
			return
		}
		s.reject(w, r, fi, http.StatusNotFound, reasonNotFound)
	}
}

func getOrHead(w http.ResponseWriter, r *http.Request, fi *forwardInfo, s *Server) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	s.reject(w, r, fi, http.StatusMethodNotAllowed, reasonMethodNotAllowed)
	return false
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
		body.Status = reasonNotReady
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
