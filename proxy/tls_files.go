package proxy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
)

const (
	// certPollInterval is the fallback re-check of the certificate files, for file systems
	// where fsnotify sees nothing (NFS, some FUSE and overlay mounts) or when the watcher
	// failed. A stat of two files every 30 s costs nothing.
	certPollInterval = 30 * time.Second
	// certSettleDelay lets a burst of events (write cert, write key, chmod, rename) end before
	// the pair is read, so a rotation is normally seen once, complete, instead of as a
	// mismatched half-written pair.
	certSettleDelay = 100 * time.Millisecond
)

// newFilesSetup serves the PEM pair at certFile/keyFile and follows it when it changes on
// disk, so a certificate rotated by cert-manager, a cron job or an operator is picked up
// without a restart or a dropped connection. The first load must succeed.
func newFilesSetup(certFile, keyFile string, base *tls.Config, log *slog.Logger) (*tlsSetup, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("tls.mode files needs cert_file and key_file")
	}
	r, err := newCertReloader(certFile, keyFile, log, certPollInterval, true)
	if err != nil {
		return nil, fmt.Errorf("tls.cert_file %s, tls.key_file %s: %w", certFile, keyFile, err)
	}
	conf := base.Clone()
	conf.GetCertificate = r.getCertificate
	return &tlsSetup{Config: conf, HTTPHandler: identityHandler, closers: []func(){r.close}}, nil
}

// certReloader holds the current certificate pair and replaces it when the files change.
// Handshakes read it through an atomic pointer and never wait for a reload.
//
// A replacement that does not load (bad PEM, key not matching the certificate, a
// half-written pair) is logged and ignored: the previous pair keeps being served, because an
// expiring certificate is better than no TLS at all.
type certReloader struct {
	certFile, keyFile string
	log               *slog.Logger

	cur atomic.Pointer[tls.Certificate]

	// mu guards the fields below, which only the watch goroutine and the constructor use.
	mu sync.Mutex
	// certPEM and keyPEM are the bytes of the last attempt, so an event that did not change
	// the contents (chmod, touch, the other file of the directory) reloads nothing and a bad
	// pair is reported once, not at every event.
	certPEM, keyPEM []byte
	// stamp is the size and mtime of both files at the last attempt, for the cheap poll.
	stamp [2]fileStamp

	stop chan struct{}
	done chan struct{}
}

// fileStamp is what the fallback poll compares: enough to notice a rewrite or a rename
// without reading the file.
type fileStamp struct {
	size    int64
	modTime time.Time
}

// newCertReloader loads the pair and starts watching. poll is the fallback re-check
// interval; useFsnotify false leaves only that poll (tests of the fallback use it).
func newCertReloader(certFile, keyFile string, log *slog.Logger, poll time.Duration, useFsnotify bool) (*certReloader, error) {
	r := &certReloader{
		certFile: certFile,
		keyFile:  keyFile,
		log:      log.With(slog.String("cert_file", certFile), slog.String("key_file", keyFile)),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	if _, err := r.reload(); err != nil {
		return nil, err
	}

	var w *fsnotify.Watcher
	if useFsnotify {
		w = r.newWatcher(poll)
	}
	go r.watch(w, poll)
	return r, nil
}

// newWatcher watches the directories of both files, not the files: editors, `mv` and
// Kubernetes secret volumes (which swap a ..data symlink) replace files by rename, and a
// watch on the old inode would go quiet after the first rotation. It returns nil, after a
// warning, when fsnotify is unavailable; the poll then carries on alone.
func (r *certReloader) newWatcher(poll time.Duration) *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		r.log.Warn("cannot watch certificate files; relying on periodic re-check",
			slog.Duration("interval", poll), slog.Any("error", err))
		return nil
	}
	dirs := map[string]bool{filepath.Dir(r.certFile): true, filepath.Dir(r.keyFile): true}
	for d := range dirs {
		if err := w.Add(d); err != nil {
			r.log.Warn("cannot watch certificate directory; relying on periodic re-check",
				slog.String("dir", d), slog.Duration("interval", poll), slog.Any("error", err))
		}
	}
	return w
}

func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return r.cur.Load(), nil
}

// close stops watching and waits for the watch goroutine to end.
func (r *certReloader) close() {
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	<-r.done
}

// watch reloads after fsnotify events (debounced by certSettleDelay) and whenever the poll
// sees a changed size or mtime. w may be nil (no fsnotify); then only the poll runs.
func (r *certReloader) watch(w *fsnotify.Watcher, poll time.Duration) {
	defer close(r.done)
	var events chan fsnotify.Event
	var errs chan error
	if w != nil {
		defer w.Close()
		events, errs = w.Events, w.Errors
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	settle := time.NewTimer(certSettleDelay)
	settle.Stop()

	for {
		select {
		case <-r.stop:
			settle.Stop()
			return
		case _, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any event in the directory may be ours: a Kubernetes rotation renames
			// "..data", never touching the names we watch for.
			settle.Reset(certSettleDelay)
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			r.log.Warn("certificate file watcher error; periodic re-check continues", slog.Any("error", err))
		case <-settle.C:
			r.reloadAndLog()
		case <-ticker.C:
			if r.stampChanged() {
				r.reloadAndLog()
			}
		}
	}
}

func (r *certReloader) reloadAndLog() {
	if _, err := r.reload(); err != nil {
		r.log.Error("certificate files changed but cannot be loaded; still serving the previous certificate",
			slog.Any("error", err))
	}
}

// stampChanged reports whether either file's size or mtime differs from the last attempt.
func (r *certReloader) stampChanged() bool {
	st := statPair(r.certFile, r.keyFile)
	r.mu.Lock()
	defer r.mu.Unlock()
	return st != r.stamp
}

func statPair(certFile, keyFile string) (st [2]fileStamp) {
	for i, f := range []string{certFile, keyFile} {
		// os.Stat follows symlinks, so a Kubernetes ..data swap changes the stamp.
		if fi, err := os.Stat(f); err == nil {
			st[i] = fileStamp{size: fi.Size(), modTime: fi.ModTime()}
		}
	}
	return st
}

// reload reads both files and, when their contents differ from the last attempt, parses
// them and swaps the served certificate. It reports whether a new certificate was installed;
// err is set when the files could not be read or parsed (a changed pair that is invalid is
// an error once; the same invalid bytes again are not re-reported).
func (r *certReloader) reload() (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := statPair(r.certFile, r.keyFile)
	certPEM, err := os.ReadFile(r.certFile)
	if err != nil {
		r.stamp = st
		return false, fmt.Errorf("read cert_file: %w", err)
	}
	keyPEM, err := os.ReadFile(r.keyFile)
	if err != nil {
		r.stamp = st
		return false, fmt.Errorf("read key_file: %w", err)
	}
	r.stamp = st
	if r.certPEM != nil && bytes.Equal(certPEM, r.certPEM) && bytes.Equal(keyPEM, r.keyPEM) {
		return false, nil
	}
	r.certPEM, r.keyPEM = certPEM, keyPEM

	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return false, fmt.Errorf("load certificate pair: %w", err)
	}
	// X509KeyPair fills Leaf (Go 1.23+); it is what handshakes and the log read.
	leaf := cert.Leaf
	attrs := tlsCertAttrs(leaf)
	if now := time.Now(); now.After(leaf.NotAfter) || now.Before(leaf.NotBefore) {
		// Served anyway: refusing would take the site down, and the operator is already
		// told loudly. Browsers will show the error that makes someone renew it.
		r.log.Error("loaded certificate is outside its validity period", attrs...)
	}
	r.cur.Store(&cert)
	r.log.Info("loaded TLS certificate", attrs...)
	return true, nil
}
