package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
)

// Audit sinks (config audit.sinks) receive the whole audit trail. Each has a consumer group,
// sink:NAME, created at the start of the stream, so a new sink is sent every event still held;
// its events are delivered in batches, in stream order, and acknowledged only once the sink
// has them (written and, for a file with fsync batch, synced), so a crash or an outage delays
// them and never loses them; they are retried without end (the stream keeps them: see
// store.Audit.TrimDelivered). Each line or delivery carries the event's stream id, stable
// across retries, for de-duplication.

const kindSink = "audit sink"

// sinkMaxBackoff caps a sink's retry delay: a sink back after an outage is caught up soon.
const sinkMaxBackoff = 30 * time.Second

// Stdout is where stdout sinks write; a variable so tests can capture it.
var Stdout io.Writer = os.Stdout

func (d *Dispatcher) sink(c config.AuditSink) (*target, error) {
	t := &target{kind: kindSink, name: c.Name, group: "sink:" + c.Name, start: "0",
		wants: func(t audit.Type) bool { return t != "" }, maxBackoff: sinkMaxBackoff}
	switch c.Type {
	case config.SinkFile:
		f, err := openRotating(c.Path, int64(c.MaxSizeMB)<<20, c.MaxFiles, c.Fsync != "off")
		if err != nil {
			return nil, fmt.Errorf("audit.sinks %s: %w", c.Name, err)
		}
		t.send = func(_ context.Context, evs []audit.Event) (int, error) { return f.writeEvents(evs) }
		t.close = f.Close
	case config.SinkStdout:
		var mu sync.Mutex
		t.send = func(_ context.Context, evs []audit.Event) (int, error) {
			b, err := jsonLines(evs)
			if err != nil {
				return 0, err
			}
			mu.Lock()
			defer mu.Unlock()
			if _, err := Stdout.Write(b); err != nil {
				return 0, err
			}
			return len(evs), nil
		}
	case config.SinkWebhook:
		client, err := webhookClient("audit.sinks "+c.Name, c.CARootFile, d.o.Timeout)
		if err != nil {
			return nil, err
		}
		key := c.SigningKey()
		t.perEvent = true
		t.send = func(ctx context.Context, evs []audit.Event) (int, error) {
			for i, e := range evs {
				if err := d.post(ctx, client, c.URL, key, e); err != nil {
					return i, err
				}
			}
			return len(evs), nil
		}
	default:
		return nil, fmt.Errorf("audit.sinks %s: unknown type %q", c.Name, c.Type)
	}
	return t, nil
}

// jsonLines encodes evs one JSON object a line.
func jsonLines(evs []audit.Event) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	for _, e := range evs {
		if err := enc.Encode(e); err != nil {
			return nil, fmt.Errorf("encode event %s: %w", e.ID, err)
		}
	}
	return b.Bytes(), nil
}

// rotating is an append-only JSON-lines file rotated by size. It is written by hand rather
// than with lumberjack because an audit sink must fsync before it acknowledges, and
// lumberjack neither syncs nor exposes its file.
type rotating struct {
	path     string
	maxBytes int64
	keep     int
	sync     bool

	mu   sync.Mutex
	f    *os.File
	size int64
}

func openRotating(path string, maxBytes int64, keep int, sync bool) (*rotating, error) {
	r := &rotating{path: path, maxBytes: maxBytes, keep: keep, sync: sync}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *rotating) open() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return err
	}
	r.f, r.size = f, fi.Size()
	return nil
}

// writeEvents appends evs, a whole line each, rotating first when the batch would take the
// file past its size (a batch larger than a whole file goes in one file of its own), and
// syncs before it reports them written.
func (r *rotating) writeEvents(evs []audit.Event) (int, error) {
	b, err := jsonLines(evs)
	if err != nil {
		return 0, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		if err := r.open(); err != nil {
			return 0, err
		}
	}
	if r.size > 0 && r.size+int64(len(b)) > r.maxBytes {
		if err := r.rotate(); err != nil {
			return 0, fmt.Errorf("rotate %s: %w", r.path, err)
		}
	}
	n, err := r.f.Write(b)
	r.size += int64(n)
	if err != nil {
		// A partial line may be on disk; the events are sent again, so a reader sees a
		// broken line and then the events whole (de-duplicate by id).
		return 0, err
	}
	if r.sync {
		if err := r.f.Sync(); err != nil {
			return 0, err
		}
	}
	return len(evs), nil
}

// rotate renames the file PATH.TIMESTAMP, starts a new one and removes the oldest rotated
// files beyond keep.
func (r *rotating) rotate() error {
	if err := r.f.Close(); err != nil {
		return err
	}
	r.f = nil
	name := r.path + "." + time.Now().UTC().Format("20060102T150405.000000000Z")
	if err := os.Rename(r.path, name); err != nil {
		return err
	}
	if err := r.open(); err != nil {
		return err
	}
	old, err := filepath.Glob(r.path + ".*")
	if err != nil {
		return err
	}
	// The timestamps sort as the files were rotated.
	slices.SortFunc(old, strings.Compare)
	for len(old) > r.keep {
		if err := os.Remove(old[0]); err != nil {
			return err
		}
		old = old[1:]
	}
	return nil
}

// Close closes the file.
func (r *rotating) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
