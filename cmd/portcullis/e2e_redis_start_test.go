package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// TestE2EStartsWhileRedisIsDown: a process started while Redis is unreachable (a rolling
// restart during a failover) does not exit: it serves, says it is not ready, refuses what
// needs Redis, and becomes ready by itself once Redis answers. It used to exit at once, so an
// orchestrator crash-looped it.
func TestE2EStartsWhileRedisIsDown(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rs.Stop()
	up := upstream(t, "portal")
	listen := freePort(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "portcullis.yaml")
	writeFile(t, cfg, fmt.Sprintf(`server: {listen: %s, metrics_listen: "off"}
tls: {mode: self_signed}
redis: {address: %s, dial_timeout: 200ms, read_timeout: 200ms, write_timeout: 200ms}
notifications:
  webhooks:
    - {name: ops, url: "https://127.0.0.1:9/hook", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, events: ["*"]}
routes:
  - name: app
    path: /app
    upstream: %s
    public: true
`, listen, rs.Addr, up.URL))
	p := startBinary(t, cfg)
	c := tlsClient()
	ready := func() (int, map[string]string) {
		resp, err := c.Get("https://" + listen + "/.portcullis/readyz")
		if err != nil {
			t.Fatalf("readyz: %v", err)
		}
		defer resp.Body.Close()
		var body struct {
			Checks map[string]string `json:"checks"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.Checks
	}
	if code, checks := ready(); code != http.StatusServiceUnavailable || checks["redis"] == "ok" || checks["assertion_key"] == "ok" {
		t.Fatalf("while Redis is down: readyz %d %v", code, checks)
	}
	if resp, body := doGet(t, c, "https://"+listen+"/app/x"); resp.StatusCode != 200 {
		t.Errorf("a public route while Redis is down: %d %s", resp.StatusCode, body)
	}
	select {
	case err := <-p.done:
		t.Fatalf("exited while Redis was down: %v", err)
	default:
	}

	rs.Restart()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, checks := ready()
		if code == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 30s after Redis came back: %d %v", code, checks)
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.waitLog(t, "assertion key loaded from Redis", 5*time.Second)
}
