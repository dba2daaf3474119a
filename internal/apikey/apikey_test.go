package apikey

import (
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseAndMatch(t *testing.T) {
	id, key := New()
	if got, ok := Parse(key); !ok || got != id || len(id) != 16 || !strings.HasPrefix(key, "pc_"+id+"_") || len(key) != 3+16+1+52 || !ValidID(id) {
		t.Fatalf("new key %q: id %q, parsed %q %v", key, id, got, ok)
	}
	for _, bad := range []string{"", "pc_", key[:len(key)-1], key + "a", strings.ToUpper(key), "pcadm_" + key[3:],
		strings.Replace(key, "_", "-", 2), key[:20] + "1" + key[21:], key[:18] + "_" + key[19:], key[:19] + "a" + key[20:]} {
		if _, ok := Parse(bad); ok {
			t.Errorf("Parse(%q) accepted", bad)
		}
	}
	for _, bad := range []string{"", id[:15], id + "a", strings.ToUpper(id), id[:15] + "1"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q)", bad)
		}
	}
	h := Hash(key)
	if !Match(key, h) {
		t.Error("a key does not match its own hash")
	}
	for _, other := range []string{key[:len(key)-1] + "b", "", key + key, h} {
		if other != key && Match(other, h) {
			t.Errorf("%q matches another key's hash", other)
		}
	}
	if Match(key, h[:63]) || Match(key, "") || Match(key, strings.ToUpper(h)) {
		t.Error("a truncated or re-cased hash matches")
	}
	_, key2 := New()
	if key2 == key || Hash(key2) == h {
		t.Error("two keys drawn alike")
	}
}

// TestMatchAllocatesNothing: the comparison is on the request path.
func TestMatchAllocatesNothing(t *testing.T) {
	_, key := New()
	h := Hash(key)
	if n := testing.AllocsPerRun(100, func() { Match(key, h) }); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = Parse(key) }); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

// TestMatchTiming: how long a wrong key takes to refuse does not depend on how much of it is
// right. Keys are hashed before they are compared and the hashes compared in full, so a key
// right up to its last byte costs what a key wrong from its first does. Measured as the median
// of many interleaved rounds, with a generous margin for a busy machine: it guards against a
// comparison of the keys themselves, or one that stops at the first difference, not against
// nanoseconds.
func TestMatchTiming(t *testing.T) {
	_, key := New()
	stored := Hash(key)
	last := "a"
	if key[len(key)-1] == 'a' {
		last = "b"
	}
	almost := key[:len(key)-1] + last // right but for the last byte
	wrong := "pc_zzzzzzzzzzzzzzzz_" + strings.Repeat("z", 52)
	const rounds, per = 301, 2000
	var ta, tw []float64
	for range rounds {
		start := time.Now()
		for range per {
			Match(almost, stored)
		}
		ta = append(ta, float64(time.Since(start)))
		start = time.Now()
		for range per {
			Match(wrong, stored)
		}
		tw = append(tw, float64(time.Since(start)))
	}
	ma, mw := median(ta), median(tw)
	if r := ma / mw; math.Abs(r-1) > 0.25 {
		t.Errorf("an almost-right key takes %.2f× the time of a wrong one (median %.0f ns against %.0f ns per call)", r, ma/per, mw/per)
	}
	if Match(almost, stored) || Match(wrong, stored) || !Match(key, stored) {
		t.Fatal("Match is wrong")
	}
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	return v[len(v)/2]
}
