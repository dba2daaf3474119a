package audit

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// queue holds the events a Retrying sink has not stored yet, in order.
type queue interface {
	// push adds e at the end; false when the queue is full (e is dropped).
	push(e Event) bool
	// next returns the first event not yet returned, waiting for one until done is closed
	// (false). The event stays queued until stored is called.
	next(done <-chan struct{}) (Event, bool)
	// take is next without waiting: false when there is nothing.
	take() (Event, bool)
	// stored removes the event next or take returned last: it is in the store (or can never be).
	stored()
	// close releases the queue; what is still in it is kept where that is possible (a spool).
	close() error
	// durable reports whether what is left at close survives the process.
	durable() bool
}

// memQueue is the in-memory queue: lost with the process.
type memQueue struct{ c chan Event }

func (q *memQueue) push(e Event) bool {
	select {
	case q.c <- e:
		return true
	default:
		return false
	}
}

func (q *memQueue) next(done <-chan struct{}) (Event, bool) {
	select {
	case <-done:
		return Event{}, false
	case e := <-q.c:
		return e, true
	}
}

func (q *memQueue) take() (Event, bool) {
	select {
	case e := <-q.c:
		return e, true
	default:
		return Event{}, false
	}
}

func (q *memQueue) stored()       {}
func (q *memQueue) close() error  { return nil }
func (q *memQueue) durable() bool { return false }

// spool is the queue on disk: one append-only file of JSON lines per process, in a directory
// (audit.spool_dir). An event is written (and, with fsync, synced) before Append returns, read
// back in order by the retry loop, and the file is emptied whenever everything in it is stored.
// At start a spool adopts the files of processes that ended with events still queued (any
// file in the directory no live process holds locked), so a crash or a restart while the
// store is down loses nothing: those events are stored first, in their order. Delivery is at
// least once: an event stored just before a crash is stored again by the process that adopts
// its file, with the same time and request id.
type spool struct {
	path  string
	f     *os.File
	fsync bool
	max   int64
	log   *slog.Logger

	mu       sync.Mutex
	size     int64 // bytes written
	off      int64 // where the first event not yet stored starts
	inflight int64 // where the event after the one returned last starts; -1: none returned
	signal   chan struct{}
}

// spoolPrefix starts every spool file's name.
const spoolPrefix = "spool-"

// openSpool creates this process's spool file in dir, locked for as long as the process runs,
// and moves into it the events of spool files no live process holds (in the order of their
// names, which begin with their creation time).
func openSpool(dir string, fsync bool, maxBytes int64, log *slog.Logger) (*spool, error) {
	var b [6]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	name := fmt.Sprintf("%s%020d-%s-%d-%s.jsonl", spoolPrefix, nowNano(), sanitize(host), os.Getpid(), hex.EncodeToString(b[:]))
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit spool: %w", err)
	}
	if err := lockFile(f); err != nil {
		f.Close()
		os.Remove(path)
		return nil, fmt.Errorf("audit spool %s: lock: %w", path, err)
	}
	s := &spool{path: path, f: f, fsync: fsync, max: maxBytes, log: log, inflight: -1, signal: make(chan struct{}, 1)}
	if err := s.adopt(dir); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

// adopt copies the events of the other processes' abandoned spool files into this one, then
// removes those files. A damaged line (a write cut by a crash) is skipped and logged.
func (s *spool) adopt(dir string) error {
	names, err := filepath.Glob(filepath.Join(dir, spoolPrefix+"*.jsonl"))
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		if name == s.path {
			continue
		}
		f, err := os.OpenFile(name, os.O_RDWR, 0)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // adopted by another process meanwhile
			}
			return fmt.Errorf("audit spool: adopt %s: %w", name, err)
		}
		if err := lockFile(f); err != nil {
			f.Close() // a live process holds it
			continue
		}
		if fi, err := f.Stat(); err != nil || !stillAt(name, fi) {
			f.Close() // another process adopted and removed it while we opened it
			continue
		}
		adopted, damaged := 0, 0
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), maxSpoolLine)
		for sc.Scan() {
			var e Event
			if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Check() != nil {
				damaged++
				continue
			}
			if !s.push(e) {
				f.Close()
				return fmt.Errorf("audit spool: adopting %s: this spool is full (audit.spool_max_mb)", name)
			}
			adopted++
		}
		if err := sc.Err(); err != nil {
			f.Close()
			return fmt.Errorf("audit spool: adopt %s: %w", name, err)
		}
		// Ours now (and synced): the old file can go.
		if err := os.Remove(name); err != nil && !errors.Is(err, os.ErrNotExist) {
			f.Close()
			return fmt.Errorf("audit spool: adopt %s: %w", name, err)
		}
		f.Close()
		if adopted+damaged > 0 {
			s.log.Warn("audit spool: adopted the events another process left", slog.String("file", name),
				slog.Int("events", adopted), slog.Int("damaged_lines", damaged))
		}
	}
	return nil
}

// stillAt reports whether the file fi is still the one named name.
func stillAt(name string, fi os.FileInfo) bool {
	now, err := os.Stat(name)
	return err == nil && os.SameFile(now, fi)
}

// maxSpoolLine bounds one spooled event: events are small; anything larger is damage.
const maxSpoolLine = 1 << 20

func (s *spool) push(e Event) bool {
	b, err := json.Marshal(e)
	if err != nil || len(b)+1 > maxSpoolLine {
		return false
	}
	b = append(b, '\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.size+int64(len(b)) > s.max {
		return false
	}
	n, err := s.f.WriteAt(b, s.size)
	if err == nil && s.fsync {
		err = s.f.Sync()
	}
	if err != nil {
		// The file may hold part of the line now: cut it off again.
		_ = s.f.Truncate(s.size)
		s.log.Error("audit spool: write failed", slog.String("file", s.path), slog.Any("error", err))
		return false
	}
	s.size += int64(n)
	select {
	case s.signal <- struct{}{}:
	default:
	}
	return true
}

func (s *spool) next(done <-chan struct{}) (Event, bool) {
	for {
		if e, ok := s.take(); ok {
			return e, true
		}
		select {
		case <-done:
			return Event{}, false
		case <-s.signal:
		}
	}
}

func (s *spool) take() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		start := s.off
		if s.inflight >= 0 {
			start = s.inflight
		}
		if start >= s.size {
			return Event{}, false
		}
		line, err := s.readLine(start)
		if err != nil {
			s.log.Error("audit spool: read failed", slog.String("file", s.path), slog.Any("error", err))
			return Event{}, false
		}
		end := start + int64(len(line))
		var e Event
		if err := json.Unmarshal(bytes.TrimSuffix(line, []byte("\n")), &e); err != nil {
			// Written by this process, so only a disk fault gets here: skip the line.
			s.log.Error("audit spool: damaged line skipped", slog.String("file", s.path), slog.Int64("offset", start))
			s.off, s.inflight = end, -1
			continue
		}
		s.inflight = end
		return e, true
	}
}

// readLine reads the line starting at off, newline included.
func (s *spool) readLine(off int64) ([]byte, error) {
	var line []byte
	buf := make([]byte, 4096)
	for {
		n, err := s.f.ReadAt(buf, off+int64(len(line)))
		if i := bytes.IndexByte(buf[:n], '\n'); i >= 0 {
			return append(line, buf[:i+1]...), nil
		}
		line = append(line, buf[:n]...)
		if err == io.EOF || int64(len(line)) >= s.size-off || len(line) > maxSpoolLine {
			return nil, fmt.Errorf("no end of line at offset %d", off)
		}
		if err != nil {
			return nil, err
		}
	}
}

func (s *spool) stored() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inflight < 0 {
		return
	}
	s.off, s.inflight = s.inflight, -1
	if s.off == s.size {
		// Everything is stored: empty the file so it does not grow without end.
		if err := s.f.Truncate(0); err != nil {
			s.log.Error("audit spool: truncate failed", slog.String("file", s.path), slog.Any("error", err))
			return
		}
		if s.fsync {
			_ = s.f.Sync()
		}
		s.off, s.size = 0, 0
	}
}

// close closes the file; an empty spool file is removed, one with events is left for the next
// process to adopt.
func (s *spool) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	left := s.size - s.off
	if left > 0 && s.off > 0 {
		// Keep only what is not stored, so the adopter does not store the rest again.
		if err := s.compact(); err != nil {
			s.log.Error("audit spool: compact failed; the adopting process will store some events twice", slog.Any("error", err))
		}
	}
	err := s.f.Close()
	s.f = nil
	if left == 0 {
		if rerr := os.Remove(s.path); rerr != nil && err == nil {
			err = rerr
		}
	}
	return err
}

// compact rewrites the file with only the events from s.off on.
func (s *spool) compact() error {
	rest := make([]byte, s.size-s.off)
	if _, err := s.f.ReadAt(rest, s.off); err != nil && err != io.EOF {
		return err
	}
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	if _, err := s.f.WriteAt(rest, 0); err != nil {
		return err
	}
	s.off, s.size = 0, int64(len(rest))
	return s.f.Sync()
}

func (s *spool) durable() bool { return true }

// sanitize keeps a host name usable in a file name.
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
			b[i] = '_'
		}
	}
	if len(b) > 64 {
		b = b[:64]
	}
	return string(b)
}

// nowNano is the creation time in a spool file's name; names sort as files were made.
var nowNano = func() int64 { return time.Now().UnixNano() }

// SpoolOptions configure NewSpooledRetrying.
type SpoolOptions struct {
	// Dir holds the spool files; it must exist.
	Dir string
	// Fsync syncs every queued event to disk before Append returns.
	Fsync bool
	// MaxBytes bounds this process's spool file; beyond it events are dropped and counted.
	// Default 1 GiB.
	MaxBytes int64
}

// NewSpooledRetrying is NewRetrying with the queue on disk (see spool): queued events survive
// the process, and a new process stores what an earlier one left in the same directory.
func NewSpooledRetrying(next Sink, so SpoolOptions, o RetryOptions) (*Retrying, error) {
	if so.MaxBytes <= 0 {
		so.MaxBytes = 1 << 30
	}
	o = o.withDefaults()
	sp, err := openSpool(so.Dir, so.Fsync, so.MaxBytes, o.Logger)
	if err != nil {
		return nil, err
	}
	r := newRetrying(next, sp, o)
	sp.mu.Lock()
	queued := sp.size > 0
	sp.mu.Unlock()
	if queued {
		// Adopted events: everything new waits behind them.
		r.backlog.Add(int64(countLines(sp)))
	}
	return r, nil
}

// countLines counts the events in the spool, for the backlog of adopted ones.
func countLines(s *spool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	buf := make([]byte, s.size)
	n, _ := s.f.ReadAt(buf, 0)
	return bytes.Count(buf[:n], []byte("\n"))
}
