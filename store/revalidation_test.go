package store

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRevalidationKeysShareTheFamilySlot(t *testing.T) {
	k := mustKeys(t, "")
	for _, got := range []string{k.revalidation("f}{:"), k.revalidationLease("f}{:")} {
		if hashTag(got) != hashTag(k.sessionFamily("f}{:")) {
			t.Errorf("key %q is not in the family's slot (tag %q)", got, hashTag(got))
		}
	}
}

// One holder at a time; only the holder writes and releases; a holder whose lease ran out
// writes nothing; a record deleted meanwhile (the family ended) is not brought back.
func TestRevalidationLease(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	fam := "fam-" + t.Name()
	if _, err := st.LoadRevalidation(ctx, fam); !errors.Is(err, ErrNotFound) {
		t.Fatalf("load before save: %v", err)
	}
	if err := st.SaveRevalidation(ctx, fam, []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	var won atomic.Int32
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			ok, err := st.LeaseRevalidation(ctx, fam, string(rune('a'+i)), time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				won.Add(1)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d holders at once", won.Load())
	}
	if err := st.FinishRevalidation(ctx, fam, "intruder", []byte("forged"), true); !errors.Is(err, ErrConflict) {
		t.Fatalf("a non-holder finished: %v", err)
	}
	if b, _ := st.LoadRevalidation(ctx, fam); string(b) != "v1" {
		t.Fatalf("record after a non-holder's finish: %q", b)
	}

	// A fresh family with a known holder.
	fam2 := fam + "-2"
	_ = st.SaveRevalidation(ctx, fam2, []byte("v1"), time.Minute)
	if ok, _ := st.LeaseRevalidation(ctx, fam2, "h1", time.Minute); !ok {
		t.Fatal("no lease")
	}
	// Kept (a failed attempt): written, still held.
	if err := st.FinishRevalidation(ctx, fam2, "h1", []byte("v2"), false); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.LeaseRevalidation(ctx, fam2, "h2", time.Minute); ok {
		t.Fatal("a kept lease was taken")
	}
	if err := st.FinishRevalidation(ctx, fam2, "h1", []byte("v3"), true); err != nil {
		t.Fatal(err)
	}
	if b, _ := st.LoadRevalidation(ctx, fam2); string(b) != "v3" {
		t.Fatalf("record %q", b)
	}
	if ttl := st.rdb.PTTL(ctx, st.keys.revalidation(fam2)).Val(); ttl <= 0 {
		t.Fatalf("the record lost its TTL: %v", ttl)
	}
	// Released: the next one may take it. Its lease runs out before it finishes.
	if ok, _ := st.LeaseRevalidation(ctx, fam2, "h2", 50*time.Millisecond); !ok {
		t.Fatal("a released lease was not free")
	}
	deadline := time.Now().Add(5 * time.Second)
	for st.rdb.Exists(ctx, st.keys.revalidationLease(fam2)).Val() == 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // Redis's own expiry; nothing to wait on instead
	}
	if err := st.FinishRevalidation(ctx, fam2, "h2", []byte("late"), true); !errors.Is(err, ErrConflict) {
		t.Fatalf("finish after the lease ran out: %v", err)
	}
	// The family ends while a holder works: its finish brings nothing back.
	_, _ = st.LeaseRevalidation(ctx, fam2, "h3", time.Minute)
	_ = st.rdb.Del(ctx, st.keys.revalidation(fam2)).Err()
	if err := st.FinishRevalidation(ctx, fam2, "h3", []byte("zombie"), true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("finish of an ended family: %v", err)
	}
	if _, err := st.LoadRevalidation(ctx, fam2); !errors.Is(err, ErrNotFound) {
		t.Fatal("an ended family's record came back")
	}
}

// Ending a family deletes its revalidation record and lease with its sessions.
func TestEndFamilyEndsRevalidation(t *testing.T) {
	st, _ := sharedStore(t)
	ctx := ctxT(t, 5*time.Second)
	fam := "fam-" + t.Name()
	_ = st.SaveRevalidation(ctx, fam, []byte("v1"), time.Minute)
	_, _ = st.LeaseRevalidation(ctx, fam, "h", time.Minute)
	if _, err := st.EndFamily(ctx, fam, "user", "iss", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.LoadRevalidation(ctx, fam); !errors.Is(err, ErrNotFound) {
		t.Fatalf("record after EndFamily: %v", err)
	}
	if ok, _ := st.LeaseRevalidation(ctx, fam, "h2", time.Minute); !ok {
		t.Fatal("lease survived EndFamily")
	}
}
