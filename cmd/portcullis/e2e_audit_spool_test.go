package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// TestE2EAuditSpoolSurvivesACrash: with audit.spool_dir, a denial whose event Redis refuses
// (ACL -xadd: everything else still works, so the request is answered) is written to the
// process's spool file; the process is then killed (SIGKILL, no shutdown), and a new process
// started on the same directory stores the event once Redis takes appends again.
func TestE2EAuditSpoolSurvivesACrash(t *testing.T) {
	spool := t.TempDir()
	if err := os.Chmod(spool, 0o700); err != nil { // private, as the README asks
		t.Fatal(err)
	}
	b := newAZBedWith(t, azOptions{extra: func(_ *azBed, i int) string {
		if i != 0 {
			return ""
		}
		return fmt.Sprintf("audit:\n  spool_dir: %s\n", spool)
	}})
	px := b.px[0]
	alice := b.newClient()
	alice.signIn(px, "alice")
	if r := alice.api(px, "/admin/acme/users"); r.status != 403 { // warms the caches
		t.Fatalf("before: %d %s", r.status, r.body)
	}
	rc := b.redis.Client(t)
	if err := rc.Do(t.Context(), "ACL", "SETUSER", "default", "-xadd").Err(); err != nil {
		t.Fatal(err)
	}
	r := alice.api(px, "/admin/acme/users")
	if r.status != 403 || r.reason() != "role_missing" {
		t.Fatalf("while appends fail: %d %s", r.status, r.body)
	}
	id := r.header.Get("X-Request-Id")
	px.proc.waitLog(t, "audit append failed; queued for a retry", 5*time.Second)
	files, _ := filepath.Glob(filepath.Join(spool, "spool-*.jsonl"))
	if len(files) != 1 {
		t.Fatalf("spool files %v", files)
	}
	if raw, _ := os.ReadFile(files[0]); !strings.Contains(string(raw), `"request_id":"`+id+`"`) {
		t.Fatalf("the spool file does not hold the denial %s: %q", id, raw)
	}

	// Crash: no shutdown, no last attempt.
	if err := px.proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-px.proc.done
	if err := rc.Do(t.Context(), "ACL", "SETUSER", "default", "+xadd").Err(); err != nil {
		t.Fatal(err)
	}
	// The event is not in the stream: the dead process never stored it.
	if evs, _, _ := b.aud.Tail(t.Context(), "0", 100000, 0); slices.ContainsFunc(evs, func(e audit.Event) bool { return e.RequestID == id }) {
		t.Fatal("the event reached the stream before any process could store it: the test proves nothing")
	}

	// A new process on the same spool directory stores it.
	p2 := startBinary(t, b.cfgs[0])
	p2.waitLog(t, "audit spool: adopted the events another process left", 10*time.Second)
	deadline := time.Now().Add(15 * time.Second)
	for {
		evs, _, err := b.aud.Tail(t.Context(), "0", 100000, 0)
		if err == nil && slices.ContainsFunc(evs, func(e audit.Event) bool { return e.Type == audit.AccessDenied && e.RequestID == id }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the spooled denial %s never reached the stream", id)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
