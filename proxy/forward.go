package proxy

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// upstream is one route's forwarding machinery, built once per configuration.
type upstream struct {
	target    *url.URL
	basePath  string // target path without a trailing slash ("" for the root)
	baseRaw   string
	proxy     *httputil.ReverseProxy
	transport *http.Transport
}

// transportKey identifies upstream connection settings; routes that share them share a pool.
type transportKey struct {
	scheme, host           string
	dial, respHeader, idle time.Duration
	caFile, serverName     string
	insecure               bool
}

func newTransport(rt config.Route) (*http.Transport, error) {
	t := &http.Transport{
		Proxy: nil, // never send portal traffic through an environment proxy
		DialContext: (&net.Dialer{
			Timeout:   rt.Timeouts.Dial.D(),
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     rt.UpstreamURL.Scheme == "https",
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       rt.Timeouts.IdleConn.D(),
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: rt.Timeouts.ResponseHeader.D(),
		ExpectContinueTimeout: time.Second,
	}
	if rt.UpstreamURL.Scheme == "https" {
		tc := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         rt.UpstreamTLS.ServerName,
			InsecureSkipVerify: rt.UpstreamTLS.InsecureSkipVerify, //nolint:gosec // opt-in, warned about at start
		}
		if rt.UpstreamTLS.CAFile != "" {
			pem, err := os.ReadFile(rt.UpstreamTLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("route %s: read upstream_tls.ca_file: %w", rt.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("route %s: upstream_tls.ca_file %s holds no PEM certificate", rt.Name, rt.UpstreamTLS.CAFile)
			}
			tc.RootCAs = pool
		}
		t.TLSClientConfig = tc
	}
	return t, nil
}

func newUpstream(rt config.Route, tr *http.Transport, s *Server, hstsOn bool, identityCGI []string) *upstream {
	u := &upstream{
		target:    rt.UpstreamURL,
		basePath:  strings.TrimSuffix(rt.UpstreamURL.Path, "/"),
		baseRaw:   strings.TrimSuffix(rt.UpstreamURL.EscapedPath(), "/"),
		transport: tr,
	}
	setHeaders := make(http.Header)
	var delHeaders []string
	for k, v := range rt.RequestHeaders {
		if v == "" {
			delHeaders = append(delHeaders, k)
		} else {
			setHeaders.Set(k, v)
		}
	}
	preserveHost := rt.PreserveHost == nil || *rt.PreserveHost
	name := rt.Name
	u.proxy = &httputil.ReverseProxy{
		Transport: s.tracedTransport(tr),
		// Zero: ReverseProxy already flushes at once for streaming responses (server-sent
		// events, unknown length); flushing every write of ordinary pages costs CPU.
		FlushInterval: 0,
		BufferPool:    copyBuffers,
		Rewrite: func(pr *httputil.ProxyRequest) {
			fi := exchangeOf(pr.In)
			out := pr.Out
			out.URL.Scheme = u.target.Scheme
			out.URL.Host = u.target.Host
			// Forward the normalised path: the request that was matched is the one that is sent.
			out.URL.Path = u.basePath + fi.path
			// RawPath always set, so bytes the client sent (and we matched) are the bytes sent
			// on, not Go's re-escaping of the decoded path.
			out.URL.RawPath = u.baseRaw + fi.escapedPath
			if preserveHost {
				out.Host = pr.In.Host
			} else {
				out.Host = ""
			}
			stripManaged(out.Header, identityCGI, !fi.allowOverride)
			stripOwnCookies(out.Header)
			if fi.admitted {
				if fi.id.machine {
					// The API key is Portcullis's credential, not the portal's.
					delete(out.Header, "Authorization")
				}
				fi.told.set(out.Header)
			}
			// One backing array for the four values (capacity-limited slices, so appending to
			// one never writes into the next).
			fwd := []string{fi.xff, pr.In.Host, fi.proto, fi.requestID}
			out.Header["X-Forwarded-For"] = fwd[0:1:1]
			out.Header["X-Forwarded-Host"] = fwd[1:2:2]
			out.Header["X-Forwarded-Proto"] = fwd[2:3:3]
			out.Header["X-Request-Id"] = fwd[3:4:4]
			if fi.st.clientIPHeader != "" && fi.client.IsValid() {
				out.Header[fi.st.clientIPHeader] = []string{fi.client.String()}
			}
			for _, k := range delHeaders {
				out.Header.Del(k)
			}
			for k, v := range setHeaders {
				out.Header[k] = v
			}
		},
		ModifyResponse: func(resp *http.Response) error {
			if hstsOn {
				// Ours wins; two HSTS headers would be ambiguous to browsers.
				resp.Header.Del("Strict-Transport-Security")
			}
			for k, v := range rt.ResponseHeaders {
				if v == "" {
					resp.Header.Del(k)
				} else {
					resp.Header.Set(k, v)
				}
			}
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			code := reason.UpstreamUnavailable
			var ne net.Error
			switch {
			case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
				// The client went away; nobody is left to read a page.
				s.metrics.upstream.WithLabelValues(name, "client_canceled").Inc()
				w.WriteHeader(499)
				return
			case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
				code = reason.UpstreamTimeout
			}
			s.metrics.upstream.WithLabelValues(name, string(code)).Inc()
			s.log.LogAttrs(r.Context(), slog.LevelWarn, "upstream error",
				slog.String("route", name), slog.String("reason", string(code)),
				slog.String("request_id", exchangeOf(r).requestID), slog.Any("error", err))
			p := problem.New(code)
			p.RequestID = exchangeOf(r).requestID
			problem.Write(w, r, p)
		},
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return u
}

// copyBuffers lends ReverseProxy its body copy buffers. Without a pool it allocates (and the
// runtime zeroes) 32 KiB per request, which was a third of the warm request's time.
var copyBuffers httputil.BufferPool = &bufferPool{}

// bufferPool pools buffers as *[]byte (a slice in an interface would be allocated on every
// Put); the pointers themselves are pooled in hdrs while their buffer is lent out, so a
// steady state allocates nothing.
type bufferPool struct{ p, hdrs sync.Pool }

const copyBufferSize = 32 << 10 // what ReverseProxy allocates itself

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		buf := *v
		*v = nil
		b.hdrs.Put(v)
		return buf
	}
	return make([]byte, copyBufferSize)
}

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return
	}
	v, ok := b.hdrs.Get().(*[]byte)
	if !ok {
		v = new([]byte)
	}
	*v = buf[:copyBufferSize]
	b.p.Put(v)
}
