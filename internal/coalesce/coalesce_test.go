package coalesce

import (
	"testing"
	"time"
)

func TestSet(t *testing.T) {
	s := New[string](time.Minute)
	t0 := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	if !s.Admit("a", t0) || s.Admit("a", t0.Add(59*time.Second)) || !s.Admit("b", t0) {
		t.Fatal("a key is admitted once per interval, each key on its own")
	}
	if !s.Admit("a", t0.Add(time.Minute)) {
		t.Fatal("a key is admitted again after the interval")
	}
	s.Forget("b")
	if !s.Admit("b", t0.Add(time.Second)) {
		t.Fatal("a forgotten key is admitted at once")
	}
	if n := testing.AllocsPerRun(100, func() { s.Admit("a", t0.Add(90*time.Second)) }); n != 0 {
		t.Errorf("a coalesced Admit allocates %v times", n)
	}
	// a at t0+1m, b at t0+1s: at t0+1m59s, b is forgotten, a kept.
	s.Prune(t0.Add(119 * time.Second))
	if s.Len() != 1 || s.Admit("a", t0.Add(119*time.Second)) {
		t.Errorf("after Prune: %d keys, or a admitted again", s.Len())
	}
	// Sweep prunes only once an interval has passed since the last prune.
	s.Admit("c", t0.Add(120*time.Second))
	s.Sweep(t0.Add(170 * time.Second)) // a is old, but the last prune was 51 s ago
	if s.Len() != 2 {
		t.Errorf("an early Sweep pruned: %d keys left", s.Len())
	}
	s.Sweep(t0.Add(190 * time.Second)) // a and c are old, the last prune 71 s ago
	if s.Len() != 0 {
		t.Errorf("a due Sweep left %d keys", s.Len())
	}
}
