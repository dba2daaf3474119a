package store

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
)

// Every session write that other replicas must hear about is announced on the session channel,
// in the write's own round trip; a last-seen write (TouchSession) is not.
func TestSessionChangesAreAnnounced(t *testing.T) {
	srv := redistest.Shared(t)
	// Pub/sub ignores the database: a prefix of its own keeps other tests' messages out.
	st := newStore(t, config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: "sinvaltest"})
	ctx := t.Context()
	var (
		mu   sync.Mutex
		got  []string
		live = make(chan bool, 16)
	)
	stop := st.WatchSessions(SessionEvents{
		Changed: func(h string) { mu.Lock(); got = append(got, h); mu.Unlock() },
		Live:    func(l bool) { live <- l },
	}, testLogger(t))
	defer stop()
	select {
	case l := <-live:
		if !l {
			t.Fatal("first report is a loss")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription not confirmed")
	}
	wait := func(want ...string) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Second)
		for {
			mu.Lock()
			g := slices.Clone(got)
			mu.Unlock()
			slices.Sort(g)
			if slices.Equal(g, want) {
				mu.Lock()
				got = nil
				mu.Unlock()
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("announced %q, want %q", g, want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	for _, h := range []string{"h1", "h2", "h3"} {
		if err := st.CreateSession(ctx, h, "u1", "iss", "sid-"+h, []byte("{}"), time.Minute, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.TouchSession(ctx, "h1", []byte(`{"t":1}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	if b, _ := st.LoadSession(ctx, "h1"); string(b) != `{"t":1}` {
		t.Errorf("touch did not write: %s", b)
	}
	if err := st.UpdateSession(ctx, "h1", []byte(`{"u":1}`), time.Minute); err != nil {
		t.Fatal(err)
	}
	wait("h1") // the touch before it announced nothing
	if err := st.UpdateSession(ctx, "gone", []byte(`{}`), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("update of a missing session: %v", err)
	}
	if err := st.TouchSession(ctx, "gone", []byte(`{}`), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("touch of a missing session: %v", err)
	}
	wait("gone")
	if err := st.DeleteSession(ctx, "h2", "u1", "iss", "sid-h2"); err != nil {
		t.Fatal(err)
	}
	wait("h2")
	if _, err := st.RevokeSID(ctx, "iss", "sid-h3"); err != nil {
		t.Fatal(err)
	}
	wait("h3")
	if n, err := st.RevokeUser(ctx, "u1"); err != nil || n != 1 {
		t.Fatalf("revoke user: %d %v", n, err)
	}
	wait("h1", "h3") // h3 is still in the user index (RevokeSID leaves it): harmless
	stop()
	if l := <-live; l {
		t.Error("stop did not report the loss")
	}
}
