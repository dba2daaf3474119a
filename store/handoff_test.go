package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHandoffKeys(t *testing.T) {
	k := mustKeys(t, "")
	for _, tc := range []struct{ got, want, tag string }{
		{k.handoffRequest("a_b"), "pc:{hr:a_b}:handoff", "hr:a_b"},
		{k.handoffCode("a_b"), "pc:{hc:a_b}:handoff", "hc:a_b"},
		{k.sessionFamily("f}{:"), "pc:{f:f%7D%7B%3A}:family", "f:f%7D%7B%3A"},
	} {
		if tc.got != tc.want || hashTag(tc.got) != tc.tag {
			t.Errorf("key %q (tag %q), want %q (tag %q)", tc.got, hashTag(tc.got), tc.want, tc.tag)
		}
	}
}

func TestHandoffRecordsAreSingleUse(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	for _, kind := range []struct {
		name string
		save func(h string, b []byte) error
		take func(h string) ([]byte, error)
	}{
		{"request", func(h string, b []byte) error { return st.SaveHandoff(ctx, h, b, time.Minute) }, func(h string) ([]byte, error) { return st.TakeHandoff(ctx, h) }},
		{"code", func(h string, b []byte) error { return st.SaveHandoffCode(ctx, h, b, time.Minute) }, func(h string) ([]byte, error) { return st.TakeHandoffCode(ctx, h) }},
	} {
		if err := kind.save("h", []byte("rec")); err != nil {
			t.Fatal(err)
		}
		if err := kind.save("h", []byte("other")); err == nil {
			t.Errorf("%s: saved over an existing record", kind.name)
		}
		var wins atomic.Int32
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				b, err := kind.take("h")
				switch {
				case err == nil && string(b) == "rec":
					wins.Add(1)
				case errors.Is(err, ErrNotFound):
				default:
					t.Errorf("%s: take: %q %v", kind.name, b, err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 {
			t.Errorf("%s: %d takes won", kind.name, wins.Load())
		}
	}
	// A request and a code under the same handle are different records.
	if err := st.SaveHandoff(ctx, "same", []byte("r"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := st.TakeHandoffCode(ctx, "same"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a request was taken as a code: %v", err)
	}
	if err := st.SaveHandoff(ctx, "zero", []byte("r"), 0); err == nil {
		t.Error("a record without expiry was saved")
	}
}

func TestEndFamily(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	for _, h := range []string{"p", "c1", "c2", "other"} {
		if err := st.CreateSession(ctx, h, "u", "iss", "sid", []byte("{}"), time.Hour, time.Hour); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.JoinFamily(ctx, "fam", time.Hour, "p", "c1"); err != nil {
		t.Fatal(err)
	}
	if err := st.JoinFamily(ctx, "fam", time.Hour, "p", "c2", "gone"); err != nil {
		t.Fatal(err)
	}
	n, err := st.EndFamily(ctx, "fam", "u", "iss", "sid")
	if err != nil || n != 3 {
		t.Fatalf("EndFamily: %d %v", n, err)
	}
	for _, h := range []string{"p", "c1", "c2"} {
		if _, err := st.LoadSession(ctx, h); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s survived: %v", h, err)
		}
	}
	if _, err := st.LoadSession(ctx, "other"); err != nil {
		t.Errorf("a session outside the family ended: %v", err)
	}
	if n, err := st.EndFamily(ctx, "fam", "u", "iss", "sid"); err != nil || n != 0 {
		t.Errorf("second EndFamily: %d %v", n, err)
	}
	if n, _ := st.RevokeUser(ctx, "u"); n != 1 {
		t.Errorf("user index still names ended sessions: revoked %d", n)
	}
}
