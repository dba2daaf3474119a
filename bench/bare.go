package main

// The reference: a bare httputil.ReverseProxy, run as a child process of this command
// (-role bare).

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"net/http/pprof"
	"net/url"
	"sync"
	"time"
)

// runBare is the reference: a bare httputil.ReverseProxy with pooled upstream connections and
// pooled copy buffers (as Portcullis has), so the ratios show what Portcullis adds, not what a
// default ReverseProxy wastes.
func runBare() {
	u, err := url.Parse(*upstream)
	if err != nil {
		log.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
	}
	if *bufPool {
		rp.BufferPool = &bufferPool{}
	}
	cert, err := selfSigned()
	if err != nil {
		log.Fatal(err)
	}
	errc := make(chan error, 3)
	if *bareProf != "" {
		// Its own mux: the profiles must not be reachable through the proxy.
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { errc <- http.ListenAndServe(*bareProf, mux) }()
	}
	go func() { errc <- http.ListenAndServe(*listen, rp) }()
	go func() {
		ln, err := tls.Listen("tcp", *tlsAddr, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}})
		if err != nil {
			errc <- err
			return
		}
		errc <- http.Serve(ln, rp)
	}()
	log.Fatal(<-errc)
}

// bufferPool lends ReverseProxy 32 KiB copy buffers instead of allocating one per request.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) {
	buf = buf[:cap(buf)]
	b.p.Put(&buf)
}

func selfSigned() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
