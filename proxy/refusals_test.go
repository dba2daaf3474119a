package proxy

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// Run records the refusals counted up to the last request it drained, and none when
// RefusalInterval is zero.
func TestRunRecordsCountedRefusals(t *testing.T) {
	t.Parallel()
	for _, interval := range []time.Duration{time.Hour, 0} {
		up := newEcho(t)
		cfg := loadConfig(t, fmt.Sprintf(`
server: {listen: "127.0.0.1:0", metrics_listen: "off"}
tls: {mode: "off"}
routes:
  - {name: private, path: /, upstream: %q}
`, up.URL))
		rec := &audit.Recorder{}
		s, err := New(SettingsOf(cfg), Options{Audit: rec, RefusalInterval: interval})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		addr := make(chan string, 1)
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx, func(l Listeners) { addr <- l.Main.String() }) }()
		base := "http://" + <-addr
		for range 2 {
			resp, err := http.Get(base + "/x") // no sign-in configured: no_session
			if err != nil {
				t.Fatal(err)
			}
			_ = resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("status %d", resp.StatusCode)
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		evs := rec.Events()
		switch {
		case interval == 0 && len(evs) != 0:
			t.Errorf("recorded with no interval: %+v", evs)
		case interval > 0 && (len(evs) != 1 || evs[0].Type != audit.RefusalsCounted || evs[0].Reason != "no_session" ||
			evs[0].Route != "private" || evs[0].Detail["count"] != "2"):
			t.Errorf("at shutdown: %+v", evs)
		}
	}
}
