package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/notify"
	"github.com/portcullis-proxy/portcullis/store"
)

const sinkSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

// sinkReceiver is a webhook sink's receiver: it verifies each delivery's signature and records
// the webhook-ids it was sent.
type sinkReceiver struct {
	*httptest.Server
	mu   sync.Mutex
	ids  map[string]int
	down bool
	bad  int
}

func newSinkReceiver(t *testing.T) *sinkReceiver {
	r := &sinkReceiver{ids: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id, ts := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp")
		want := "v1," + notify.Sign(sinkKey(), id, ts, body)
		r.mu.Lock()
		defer r.mu.Unlock()
		if req.Header.Get("webhook-signature") != want {
			r.bad++
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if r.down {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		r.ids[id]++
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func sinkKey() []byte {
	w := config.Webhook{Secret: config.Secret(sinkSecret)}
	return w.SigningKey()
}

// TestE2EAuditSinksRedisPaused: two processes with a file sink each and a shared webhook sink.
// Redis is frozen (SIGSTOP) while requests keep arriving: denials answered from the caches
// meanwhile, and a change tried meanwhile (which cannot be made, so it has no event). After
// Redis resumes, and while the webhook receiver is down for a while, every event of the
// stream reaches each sink exactly once (by id), the paused denials included.
func TestE2EAuditSinksRedisPaused(t *testing.T) {
	dir := t.TempDir()
	rcv := newSinkReceiver(t)
	writeFile(t, filepath.Join(dir, "sink-secret"), sinkSecret)
	b := newAZBedWith(t, azOptions{extra: func(_ *azBed, i int) string {
		return fmt.Sprintf(`audit:
  sinks:
    - name: file
      type: file
      path: %s
    - name: siem
      type: webhook
      url: %s
      secret_file: %s
`, filepath.Join(dir, fmt.Sprintf("audit-%d.jsonl", i)), rcv.URL, filepath.Join(dir, "sink-secret"))
	}})
	ctx := context.Background()
	erin := b.newClient()
	erin.signIn(b.px[0], "erin")
	if _, err := b.orgs.Revoke(ctx, "acme", b.user("sub-erin"), azActor, "contract ended"); err != nil {
		t.Fatal(err)
	}
	azWaitAll(t, b, erin, "/orgs/acme/x", 403, "membership_revoked") // warms both caches

	var denied []string // request ids of the denials answered while Redis was frozen
	b.redis.Pause()
	paused := time.Now()
	for time.Since(paused) < 800*time.Millisecond {
		for _, px := range b.px {
			r, err := erin.try("GET", px.base+"/orgs/acme/x", "", nil, azAPI)
			if err != nil {
				t.Fatal(err)
			}
			if r.status == 403 && r.reason() == "membership_revoked" {
				denied = append(denied, r.header.Get("X-Request-Id"))
			} else if r.status != 503 {
				t.Fatalf("while Redis is frozen: %d %s", r.status, r.body)
			}
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 700*time.Millisecond)
	if _, err := b.orgs.Grant(cctx, b.aliceMembership(), azActor, "during the freeze"); err == nil {
		t.Fatal("a change was made while Redis was frozen")
	}
	cancel()
	rcv.mu.Lock()
	rcv.down = true // the receiver goes down as Redis comes back
	rcv.mu.Unlock()
	b.redis.Resume()
	t.Logf("%d denials answered from the caches while Redis was frozen", len(denied))
	if len(denied) == 0 {
		t.Fatal("no denial was answered while Redis was frozen: the test proves nothing")
	}
	// More changes and denials after the freeze.
	if _, err := b.orgs.Grant(ctx, store.Membership{Org: "acme", User: b.user("sub-erin"), Kind: store.KindEmployee, Roles: []string{"user"}}, azActor, "back"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the receiver stays down a while
	rcv.mu.Lock()
	rcv.down = false
	rcv.mu.Unlock()

	files := []string{filepath.Join(dir, "audit-0.jsonl"), filepath.Join(dir, "audit-1.jsonl")}
	fileIDs := func() map[string]int {
		m := map[string]int{}
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if os.IsNotExist(err) {
				continue
			}
			if err != nil {
				t.Fatal(err)
			}
			for line := range strings.SplitSeq(strings.TrimSpace(string(raw)), "\n") {
				if line == "" {
					continue
				}
				var e audit.Event
				if err := json.Unmarshal([]byte(line), &e); err != nil {
					t.Fatalf("file sink line %q: %v", line, err)
				}
				m[e.ID]++
			}
		}
		return m
	}
	var all []audit.Event
	deadline := time.Now().Add(40 * time.Second)
	for {
		var err error
		all, _, err = b.aud.Tail(ctx, "0", 100000, 0)
		if err != nil {
			t.Fatal(err)
		}
		// At least once: a denial whose append timed out while Redis was frozen, and which
		// Redis then took, is in the stream twice, with the same request id.
		found := map[string]bool{}
		for _, e := range all {
			if slices.Contains(denied, e.RequestID) && e.Type == audit.AccessDenied {
				found[e.RequestID] = true
			}
		}
		have := len(found)
		f := fileIDs()
		rcv.mu.Lock()
		hooked := len(rcv.ids)
		rcv.mu.Unlock()
		if have == len(denied) && len(f) == len(all) && hooked == len(all) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 40s: %d of %d frozen denials in the stream, %d of %d events in the file sinks, %d in the webhook sink",
				have, len(denied), len(f), len(all), hooked)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive by now
	f := fileIDs()
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, e := range all {
		if f[e.ID] != 1 {
			t.Errorf("file sinks hold %s (%s) %d times", e.ID, e.Type, f[e.ID])
		}
		if rcv.ids[e.ID] != 1 {
			t.Errorf("webhook sink got %s (%s) %d times", e.ID, e.Type, rcv.ids[e.ID])
		}
	}
	if rcv.bad != 0 {
		t.Errorf("%d deliveries failed signature verification", rcv.bad)
	}
	t.Logf("%d events, each once in the file sinks (split over two processes) and once at the webhook", len(all))
}
