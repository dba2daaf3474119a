package main

// A configuration file written in place, in two steps, must never be applied half-written
// (issue 19, item 1): the first part of a route table is valid YAML that grants more than the
// whole. Through the real binary, under load.

import (
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestE2EReloadNeverAppliesAHalfWrittenFile(t *testing.T) {
	t.Parallel()
	b := newAZBed(t)
	px := b.px[0]
	alice := b.newClient() // role user: /admin needs admin
	alice.signIn(px, "alice")
	if r := alice.api(px, "/admin/acme/x"); r.status != 403 {
		t.Fatalf("alice on /admin before: %d %s", r.status, r.body)
	}
	full, err := os.ReadFile(b.cfgs[0])
	if err != nil {
		t.Fatal(err)
	}
	cut := strings.Index(string(full), "    require: {roles: [admin]}\n")
	if cut < 0 {
		t.Fatal("the admin route's require is not in the configuration")
	}

	// alice asks for /admin/ all along; not one answer may come from the portal.
	var let, asked atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				r, err := alice.try("GET", px.base+"/admin/acme/x", "", nil, azAPI)
				if err == nil {
					asked.Add(1)
					if r.status == 200 {
						let.Add(1)
					}
				}
			}
		}()
	}
	reloads := px.proc.countLog("configuration reloaded")
	for _, gap := range []time.Duration{400 * time.Millisecond, 200 * time.Millisecond} {
		f, err := os.OpenFile(b.cfgs[0], os.O_WRONLY|os.O_TRUNC, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(full[:cut]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(gap) // a slow copy, a tool writing in chunks
		if _, err := f.Write(full[cut:]); err != nil {
			t.Fatal(err)
		}
		f.Close()
		deadline := time.Now().Add(10 * time.Second)
		for px.proc.countLog("configuration reloaded") <= reloads {
			if time.Now().After(deadline) {
				t.Fatalf("the whole file (gap %s) was never reloaded", gap)
			}
			time.Sleep(20 * time.Millisecond)
		}
		reloads = px.proc.countLog("configuration reloaded")
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := let.Load(); n != 0 {
		t.Errorf("%d of %d requests reached /admin/ without the admin role while the file was being written", n, asked.Load())
	}
	if asked.Load() < 20 {
		t.Errorf("only %d requests made: the test did not load the proxy", asked.Load())
	}

	// A complete file that weakens a route is applied, and says so.
	weak := strings.Replace(string(full), "    require: {roles: [admin]}\n", "", 1)
	writeFile(t, b.cfgs[0]+".next", weak)
	if err := os.Rename(b.cfgs[0]+".next", b.cfgs[0]); err != nil {
		t.Fatal(err)
	}
	line := px.proc.waitLog(t, "configuration reload weakens a route", 10*time.Second)
	if line["route"] != "admin" || !strings.Contains(fmtAny(line["changes"]), "roles required: admin → ") {
		t.Errorf("weakening logged as %v", line)
	}
}

func fmtAny(v any) string {
	var b strings.Builder
	if l, ok := v.([]any); ok {
		for _, x := range l {
			b.WriteString(x.(string) + ";")
		}
	}
	return b.String()
}
