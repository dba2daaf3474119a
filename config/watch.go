package config

import (
	"context"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reports on the returned channel, after a short quiet period, every time the file at
// path may have changed. It watches the directory rather than the file, because editors,
// configuration management and Kubernetes ConfigMaps replace files by renaming over them,
// which ends a watch on the file itself. The channel is closed when ctx ends.
func Watch(ctx context.Context, path string) (<-chan struct{}, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		w.Close()
		return nil, err
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		w.Close()
		return nil, err
	}
	// Kubernetes swaps a "..data" symlink; the file's own name never gets an event then, so
	// any event in the directory that could affect what path resolves to counts.
	out := make(chan struct{}, 1)
	go func() {
		defer w.Close()
		defer close(out)
		const quiet = 150 * time.Millisecond
		var timer *time.Timer
		var fire <-chan time.Time
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if ev.Has(fsnotify.Chmod) && !ev.Has(fsnotify.Write) {
					continue
				}
				if ev.Name != abs && filepath.Base(ev.Name) != "..data" {
					continue
				}
				if timer == nil {
					timer = time.NewTimer(quiet)
				} else {
					timer.Reset(quiet)
				}
				fire = timer.C
			case <-fire:
				fire = nil
				select {
				case out <- struct{}{}:
				default: // one pending notice is enough
				}
			case _, ok := <-w.Errors:
				if !ok {
					return
				}
			}
		}
	}()
	return out, nil
}
