package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestBufferPool(t *testing.T) {
	b := copyBuffers.Get()
	if len(b) != copyBufferSize {
		t.Fatalf("Get: %d bytes, want %d", len(b), copyBufferSize)
	}
	copyBuffers.Put(b[:10]) // a resliced buffer comes back whole
	if b2 := copyBuffers.Get(); len(b2) != copyBufferSize {
		t.Fatalf("Get after Put of a resliced buffer: %d bytes", len(b2))
	}
	copyBuffers.Put(make([]byte, 10)) // a foreign buffer is dropped, never lent out short
	for range 4 {
		if b := copyBuffers.Get(); len(b) != copyBufferSize {
			t.Fatalf("Get returned a %d-byte buffer", len(b))
		}
	}
}

// TestBufferPoolAllocatesNothing: lending and returning a buffer, once the pool holds one,
// allocates nothing (a []byte put in an interface would be allocated on every Put).
func TestBufferPoolAllocatesNothing(t *testing.T) {
	p := &bufferPool{}
	p.Put(p.Get())
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n != 0 {
		t.Errorf("Get and Put: %v allocations, want 0", n)
	}
}

// TestPooledBuffersKeepBodiesApart: bodies larger than one buffer, forwarded concurrently,
// arrive intact (a buffer returned to the pool while still in use would mix them).
func TestPooledBuffersKeepBodiesApart(t *testing.T) {
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = make([]byte, 200<<10+i)
		_, _ = rand.Read(bodies[i])
	}
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := int(r.URL.Path[len(r.URL.Path)-1] - '0')
		_, _ = w.Write(bodies[i])
	}))
	t.Cleanup(up.Close)
	tp := newTestProxy(t, loadConfig(t, baseConfig(up.URL, "")), Options{})
	errs := make(chan error, len(bodies))
	for i := range bodies {
		go func() {
			resp, err := http.Get(tp.http.URL + "/app/" + string(rune('0'+i)))
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			got, err := io.ReadAll(resp.Body)
			if err == nil && !bytes.Equal(got, bodies[i]) {
				err = io.ErrUnexpectedEOF
				t.Errorf("body %d: %d bytes, differs from the %d sent", i, len(got), len(bodies[i]))
			}
			errs <- err
		}()
	}
	for range bodies {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
