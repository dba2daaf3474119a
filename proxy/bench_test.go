package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// The benchmarks compare the whole Portcullis handler (normalise, match, hygiene, forward)
// with a bare httputil.ReverseProxy against the same upstream, in one run:
//
//	go test -run XXX -bench 'Forward' -benchmem ./proxy
func benchUpstream(b *testing.B) *httptest.Server {
	body := []byte(strings.Repeat("x", 1024))
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write(body)
	}))
	b.Cleanup(up.Close)
	return up
}

func runForwardBench(b *testing.B, h http.Handler, target string) {
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("GET", target, nil)
			req.Host = "portal.example.test"
			req.RemoteAddr = "192.0.2.1:1234"
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != 200 {
				b.Fatalf("status %d", rec.Code)
			}
			_, _ = io.Copy(io.Discard, rec.Body)
		}
	})
}

func BenchmarkForwardBareReverseProxy(b *testing.B) {
	up := benchUpstream(b)
	u, _ := url.Parse(up.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConnsPerHost: 256},
	}
	runForwardBench(b, rp, "/app/some/page?x=1")
}

func BenchmarkForwardPortcullis(b *testing.B) {
	up := benchUpstream(b)
	routes := ""
	// A realistic table of 23 routes; the request matches the third.
	for i := range 19 {
		routes += "  - {name: r" + string(rune('a'+i)) + ", path: /r" + string(rune('a'+i)) + ", upstream: " + up.URL + ", public: true}\n"
	}
	cfg := loadConfig(b, baseConfig(up.URL, routes)+"log: {access_log: false}\n")
	s, err := New(SettingsOf(cfg), Options{})
	if err != nil {
		b.Fatal(err)
	}
	runForwardBench(b, s, "/app/some/page?x=1")
}
