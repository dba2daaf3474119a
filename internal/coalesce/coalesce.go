// Package coalesce admits each key at most once per interval: the coalescing of what needs
// doing only now and then per key, such as writing a membership's last use, recording what
// a partner reached, or auditing a refusal repeated by a reloaded page. It imports nothing
// of the project, so every package may use it.
package coalesce

import (
	"sync"
	"time"
)

// Set remembers when each key was last admitted. It is safe for concurrent use.
type Set[K comparable] struct {
	interval time.Duration
	mu       sync.Mutex
	seen     map[K]time.Time
	pruned   time.Time // the last Prune
}

// New returns a set admitting each key at most once per interval.
func New[K comparable](interval time.Duration) *Set[K] {
	return &Set[K]{interval: interval, seen: map[K]time.Time{}}
}

// Interval is the set's interval.
func (s *Set[K]) Interval() time.Duration { return s.interval }

// Admit reports whether k was not admitted within the interval before now, and if so
// remembers now for it. It allocates nothing for a key already seen.
func (s *Set[K]) Admit(k K, now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if last, ok := s.seen[k]; ok && now.Sub(last) < s.interval {
		return false
	}
	s.seen[k] = now
	return true
}

// Forget lets k be admitted again at once (what it was admitted for was dropped).
func (s *Set[K]) Forget(k K) {
	s.mu.Lock()
	delete(s.seen, k)
	s.mu.Unlock()
}

// Prune forgets the keys admitted an interval or more before now: their next Admit is true
// anyway. A background worker calls it every interval, keeping the set to what one interval
// brings.
func (s *Set[K]) Prune(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.prune(now)
}

// Sweep is Prune when the last one is an interval old, for a set that has no worker: called
// before Admit, it keeps the set as small at the cost of one sweep per interval.
func (s *Set[K]) Sweep(now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now.Sub(s.pruned) >= s.interval {
		s.prune(now)
	}
}

func (s *Set[K]) prune(now time.Time) {
	for k, t := range s.seen {
		if now.Sub(t) >= s.interval {
			delete(s.seen, k)
		}
	}
	s.pruned = now
}

// Len is how many keys the set remembers.
func (s *Set[K]) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}
