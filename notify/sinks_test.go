package notify

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

func startSinks(t *testing.T, ctx context.Context, sinks []config.AuditSink, aud *store.Audit) *Dispatcher {
	t.Helper()
	d, err := NewWithSinks(nil, sinks, aud, Options{Backoff: 40 * time.Millisecond, Block: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Start(ctx)
	t.Cleanup(d.Close)
	return d
}

// readLines returns the events in the JSON-lines files, failing on a line that is not one.
func readLines(t *testing.T, files ...string) []audit.Event {
	t.Helper()
	var out []audit.Event
	for _, f := range files {
		b, err := os.ReadFile(f)
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			var e audit.Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
				t.Fatalf("%s: line %q: %v", f, sc.Text(), err)
			}
			out = append(out, e)
		}
	}
	return out
}

// lockedBuffer is a stdout two dispatchers may write at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestSinksDeliverEverything: two processes share a file sink (each its own file) and a stdout
// sink. Every event, including those appended before the sinks existed, reaches each sink
// exactly once across the processes, with its stream id, whatever its type.
func TestSinksDeliverEverything(t *testing.T) {
	aud, ctx := setup(t)
	aud = aud.Untrimmed()
	out := &lockedBuffer{}
	old := Stdout
	Stdout = out
	t.Cleanup(func() { Stdout = old })
	for i := range 5 {
		if err := aud.Append(ctx, audit.Event{Type: audit.AccessDenied, Actor: "early", Reason: "e" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	var files []string
	for i := range 2 {
		f := filepath.Join(dir, "audit-"+strconv.Itoa(i)+".jsonl")
		files = append(files, f)
		startSinks(t, ctx, []config.AuditSink{
			{Name: "file", Type: config.SinkFile, Path: f, MaxSizeMB: 1, MaxFiles: 2, Fsync: "batch"},
			{Name: "shipper", Type: config.SinkStdout},
		}, aud)
	}
	types := []audit.Type{audit.AccessDenied, audit.MembershipGranted, audit.SessionEnded, audit.WebhookFailed, audit.RecoveryBlocked}
	for i := range 60 {
		if err := aud.Append(ctx, audit.Event{Type: types[i%len(types)], Actor: "a", Reason: "n" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	all, _, err := aud.Tail(ctx, "0", 1000, 0)
	if err != nil || len(all) != 65 {
		t.Fatalf("stream: %d events, %v", len(all), err)
	}
	count := func(evs []audit.Event) map[string]int {
		m := map[string]int{}
		for _, e := range evs {
			m[e.ID]++
		}
		return m
	}
	waitFor(t, "the file sink", func() bool { return len(readLines(t, files...)) >= 65 })
	waitFor(t, "the stdout sink", func() bool { return strings.Count(out.String(), "\n") >= 65 })
	time.Sleep(200 * time.Millisecond) // anything delivered twice would arrive by now
	var stdout []audit.Event
	for line := range strings.SplitSeq(strings.TrimSpace(out.String()), "\n") {
		var e audit.Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("stdout line %q: %v", line, err)
		}
		stdout = append(stdout, e)
	}
	for name, got := range map[string][]audit.Event{"file": readLines(t, files...), "stdout": stdout} {
		c := count(got)
		for _, e := range all {
			if c[e.ID] != 1 {
				t.Errorf("%s sink: event %s (%s) delivered %d times", name, e.ID, e.Type, c[e.ID])
			}
		}
		if len(got) != len(all) {
			t.Errorf("%s sink: %d lines for %d events", name, len(got), len(all))
		}
		for _, e := range got {
			if e.ID == "" || e.Type == "" || e.Time.IsZero() {
				t.Errorf("%s sink: incomplete line %+v", name, e)
			}
		}
	}
	// Both processes took part in the file sink (each event once in all).
	for _, f := range files {
		if len(readLines(t, f)) == 0 {
			t.Logf("%s received nothing: the other process delivered all", f)
		}
	}
}

// TestSinkFailingDiskKeepsEvents: a file sink that cannot write (/dev/full: every write fails
// with ENOSPC) acknowledges nothing; the events stay pending, are retried, and a trim removes
// none of them.
func TestSinkFailingDiskKeepsEvents(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Skip("no /dev/full on this system")
	}
	aud, ctx := setup(t)
	aud = aud.Untrimmed()
	d := startSinks(t, ctx, []config.AuditSink{{Name: "full", Type: config.SinkFile, Path: "/dev/full", MaxSizeMB: 1, MaxFiles: 1, Fsync: "batch"}}, aud)
	for i := range 20 {
		if err := aud.Append(ctx, audit.Event{Type: audit.AccessDenied, Actor: "a", Reason: "n" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "deliveries to be tried", func() bool {
		st, err := aud.Groups(ctx, d.Groups()...)
		return err == nil && st[0].Pending == 20
	})
	time.Sleep(300 * time.Millisecond) // several retries
	if _, err := aud.TrimDelivered(ctx, 0, d.Groups()...); err != nil {
		t.Fatal(err)
	}
	st, err := aud.Groups(ctx, d.Groups()...)
	if err != nil {
		t.Fatal(err)
	}
	if st[0].Pending != 20 {
		t.Fatalf("group: %+v; want all 20 still pending", st[0])
	}
	evs, _, _ := aud.Tail(ctx, "0", 100, 0)
	if len(evs) != 20 {
		t.Fatalf("the trim removed undelivered events: %d left", len(evs))
	}
	for _, e := range evs {
		if e.Type == audit.WebhookFailed {
			t.Fatalf("a sink gave an event up: %+v", e)
		}
	}
}

// TestSinkWebhookOutage: a webhook sink whose receiver is down for a while is sent every
// event once it is back (none given up, whatever the attempts), and nothing undelivered is
// trimmed meanwhile.
func TestSinkWebhookOutage(t *testing.T) {
	aud, ctx := setup(t)
	aud = aud.Untrimmed()
	rcv := newReceiver(t, secret)
	var down sync.Mutex
	up := false
	rcv.fail = func(string, int) bool { down.Lock(); defer down.Unlock(); return !up }
	d := startSinks(t, ctx, []config.AuditSink{{Name: "siem", Type: config.SinkWebhook, URL: rcv.URL, Secret: secret}}, aud)
	for i := range 30 {
		if err := aud.Append(ctx, audit.Event{Type: audit.AccessDenied, Actor: "a", Reason: "n" + strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "several failed attempts", func() bool {
		rcv.mu.Lock()
		defer rcv.mu.Unlock()
		n := 0
		for _, a := range rcv.attempts {
			n += a
		}
		return n >= 60
	})
	if _, err := aud.TrimDelivered(ctx, 0, d.Groups()...); err != nil {
		t.Fatal(err)
	}
	if evs, _, _ := aud.Tail(ctx, "0", 100, 0); len(evs) != 30 {
		t.Fatalf("%d events left after a trim during the outage, want 30", len(evs))
	}
	down.Lock()
	up = true
	down.Unlock()
	waitFor(t, "every event after the outage", func() bool { return len(rcv.delivered()) == 30 })
	for id, ps := range rcv.delivered() {
		if len(ps) != 1 {
			t.Errorf("%s delivered %d times", id, len(ps))
		}
	}
	evs, _, _ := aud.Tail(ctx, "0", 100, 0)
	for _, e := range evs {
		if e.Type == audit.WebhookFailed {
			t.Fatalf("the sink gave an event up: %+v", e)
		}
	}
}

// TestRotatingFile: the file rotates before a batch would take it past its size, keeps only
// max_files rotated files, and every line of every file is a whole event.
func TestRotatingFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	r, err := openRotating(path, 2000, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var want []string
	for i := range 40 {
		e := audit.Event{ID: "1-" + strconv.Itoa(i), Type: audit.AccessDenied, Actor: "a", Time: time.Now(), Reason: strings.Repeat("x", 100)}
		want = append(want, e.ID)
		if n, err := r.writeEvents([]audit.Event{e}); err != nil || n != 1 {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	files, _ := filepath.Glob(path + "*")
	if len(files) != 3 {
		t.Fatalf("files %v; want the live one and 2 rotated", files)
	}
	for _, f := range files {
		fi, _ := os.Stat(f)
		if fi.Size() > 2000 {
			t.Errorf("%s is %d bytes, over the 2000 limit", f, fi.Size())
		}
	}
	got := readLines(t, append(files[1:], files[0])...) // rotated ones (oldest first), then the live one
	if len(got) == 0 || got[len(got)-1].ID != want[len(want)-1] {
		t.Fatalf("the newest event is not last in the live file: %v", got)
	}
	// Reopening appends to the live file.
	r.Close()
	r2, err := openRotating(path, 2000, 2, true)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	if _, err := r2.writeEvents([]audit.Event{{ID: "2-0", Type: audit.AccessDenied, Actor: "a", Time: time.Now()}}); err != nil {
		t.Fatal(err)
	}
	live := readLines(t, path)
	if live[len(live)-1].ID != "2-0" || len(live) < 2 {
		t.Fatalf("after reopening: %v", live)
	}
}
