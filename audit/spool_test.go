package audit

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func spoolFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, spoolPrefix+"*.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func waitStored(t *testing.T, rec *Recorder, n int) []Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.Events()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("stored %d of %d", len(rec.Events()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return rec.Events()
}

// TestSpoolSurvivesTheProcess: events queued while the store is down are on disk before
// Append returns; a process that stops with them still queued leaves them in its spool file,
// and the next process started on the directory stores them first, in order, then removes the
// file. Nothing is adopted from a process that is still running.
func TestSpoolSurvivesTheProcess(t *testing.T) {
	dir := t.TempDir()
	f := &flaky{}
	f.down.Store(true)
	r1, err := NewSpooledRetrying(f, SpoolOptions{Dir: dir, Fsync: true}, RetryOptions{Backoff: 10 * time.Millisecond, Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if err := r1.Append(t.Context(), Event{Type: AccessDenied, RequestID: string(rune('a' + i))}); err != nil {
			t.Fatal(err)
		}
	}
	files := spoolFiles(t, dir)
	if len(files) != 1 {
		t.Fatalf("spool files %v", files)
	}
	b, _ := os.ReadFile(files[0])
	if n := strings.Count(string(b), "\n"); n != 5 {
		t.Fatalf("spool file holds %d events before anything is stored, want 5", n)
	}

	// A second process while the first runs: it must not take the first one's events.
	other := &flaky{}
	r2, err := NewSpooledRetrying(other, SpoolOptions{Dir: dir, Fsync: true}, RetryOptions{Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r2.Close()
	if n := len(other.rec.Events()); n != 0 {
		t.Fatalf("a live process's spool was adopted: %d events", n)
	}

	r1.Close() // the store is still down: the events stay in the spool
	if files := spoolFiles(t, dir); len(files) != 1 {
		t.Fatalf("after a close with events queued: spool files %v, want the one with them", files)
	}

	// The next process, with the store back, stores them first and in order.
	next := &flaky{}
	r3, err := NewSpooledRetrying(next, SpoolOptions{Dir: dir, Fsync: true}, RetryOptions{Backoff: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer r3.Close()
	if err := r3.Append(t.Context(), Event{Type: AccessDenied, RequestID: "new"}); err != nil {
		t.Fatal(err)
	}
	got := waitStored(t, &next.rec, 6)
	var order []string
	for _, e := range got {
		order = append(order, e.RequestID)
	}
	// At least once: the first event may have been stored by r1's last attempt... it was not
	// (the store was down), so exactly these, in this order.
	if strings.Join(order, ",") != "a,b,c,d,e,new" {
		t.Fatalf("stored %v; want the adopted events first, in order, then the new one", order)
	}
	waitFor(t, "the spool to empty", func() bool {
		files := spoolFiles(t, dir)
		if len(files) != 1 {
			return false
		}
		fi, err := os.Stat(files[0])
		return err == nil && fi.Size() == 0
	})
}

// TestSpoolAdoptsACrashedProcess: a file left by a process that died mid-write (no close, the
// last line cut) is adopted: its whole events are stored, the cut one is skipped and logged.
func TestSpoolAdoptsACrashedProcess(t *testing.T) {
	dir := t.TempDir()
	left := `{"type":"access.denied","time":"2026-12-01T10:00:00Z","request_id":"x1"}
{"type":"access.denied","time":"2026-12-01T10:00:01Z","request_id":"x2"}
{"type":"access.denied","time":"2026-12-01T10:0`
	if err := os.WriteFile(filepath.Join(dir, spoolPrefix+"00000000000000000001-dead-1-aa.jsonl"), []byte(left), 0o600); err != nil {
		t.Fatal(err)
	}
	var logs strings.Builder
	f := &flaky{}
	r, err := NewSpooledRetrying(f, SpoolOptions{Dir: dir}, RetryOptions{Backoff: 10 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	got := waitStored(t, &f.rec, 2)
	if got[0].RequestID != "x1" || got[1].RequestID != "x2" || !got[0].Time.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
		t.Fatalf("adopted %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dir, spoolPrefix+"00000000000000000001-dead-1-aa.jsonl")); !os.IsNotExist(err) {
		t.Fatalf("the adopted file is still there: %v", err)
	}
	if !strings.Contains(logs.String(), "damaged_lines=1") {
		t.Fatalf("the cut line was not reported: %s", logs.String())
	}
}

// TestSpoolFull: beyond its size the spool drops and counts, and keeps what it has.
func TestSpoolFull(t *testing.T) {
	dir := t.TempDir()
	f := &flaky{}
	f.down.Store(true)
	r, err := NewSpooledRetrying(f, SpoolOptions{Dir: dir, MaxBytes: 300}, RetryOptions{Backoff: time.Hour, Timeout: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_ = r.Append(t.Context(), Event{Type: AccessDenied, RequestID: strings.Repeat("r", 20) + string(rune('a'+i))})
	}
	if r.Dropped() == 0 {
		t.Fatal("a full spool dropped nothing")
	}
	if q := r.Queued(); q+r.Dropped() != 10 || q == 0 {
		t.Fatalf("queued %d, dropped %d: want 10 together", q, r.Dropped())
	}
	f.down.Store(false)
	r.Close() // the last attempt stores what the spool holds
	if n := len(f.rec.Events()); n != 10-r.Dropped() {
		t.Fatalf("stored %d at close, want %d", n, 10-r.Dropped())
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
