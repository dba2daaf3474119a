package session_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portcullis-proxy/portcullis/session"
)

// BenchmarkAdmitWarm measures the session lookup of a signed-in request: cookie parsing, hashing,
// one Redis GET against a real redis-server on loopback, decoding, expiry checks and the context
// value. Warm means within touch_interval, so no write.
func BenchmarkAdmitWarm(b *testing.B) {
	e := newEnv(b, envOpts{})
	br := e.browser()
	br.mustSignIn("alice")
	req := httptest.NewRequest("GET", "https://portal.example.test/app/x", nil)
	req.AddCookie(&http.Cookie{Name: session.CookieName, Value: br.sessionCookie()})
	route := &e.cfg.Routes[1]
	b.Run("serial", func(b *testing.B) {
		w := httptest.NewRecorder()
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := e.m.Admit(w, req, route); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			w := httptest.NewRecorder()
			for pb.Next() {
				if _, ok := e.m.Admit(w, req, route); !ok {
					b.Error("refused")
					return
				}
			}
		})
	})
}
