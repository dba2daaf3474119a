package config

import (
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/mail"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/syntax"
)

// validator checks a decoded, defaulted Config and fills its parsed values. It reads nothing
// but the positions the decoder recorded and, through stat, whether referenced files exist.
type validator struct {
	file        string
	d           *decoder
	stat        func(string) (fs.FileInfo, error)
	errs, warns Errors
}

// at is the position of key path p, or of its nearest enclosing key when p is absent (a
// missing required key is reported where its parent mapping is).
func (v *validator) at(p string) pos {
	for {
		if ps, ok := v.d.valPos[p]; ok {
			return ps
		}
		if p == "" {
			return pos{1, 1}
		}
		p = parentPath(p)
	}
}

// suppressed reports whether key path p, or a key enclosing it, already has a decoding
// error: its value is a leftover zero, and a second message about it would only confuse.
func (v *validator) suppressed(p string) bool {
	for {
		if v.d.failed[p] {
			return true
		}
		if p == "" {
			return false
		}
		p = parentPath(p)
	}
}

// parentPath strips the last key or index of a key path: "routes[2].hosts[0]" →
// "routes[2].hosts" → "routes[2]" → "routes" → "".
func parentPath(p string) string {
	if i := strings.LastIndexAny(p, ".["); i >= 0 {
		return p[:i]
	}
	return ""
}

func (v *validator) add(list *Errors, at pos, p, format string, args ...any) {
	if v.suppressed(p) {
		return
	}
	*list = append(*list, Error{File: v.file, Line: at.line, Column: at.col, Key: p, Message: fmt.Sprintf(format, args...)})
}

// errorf reports a problem with the value at key path p.
func (v *validator) errorf(p, format string, args ...any) {
	v.add(&v.errs, v.at(p), p, format, args...)
}

// keyErrorf reports a problem with the key itself (a header name), at the key's position.
func (v *validator) keyErrorf(p, format string, args ...any) {
	at, ok := v.d.keyPos[p]
	if !ok {
		at = v.at(p)
	}
	v.add(&v.errs, at, p, format, args...)
}

func (v *validator) warnf(p, format string, args ...any) {
	v.add(&v.warns, v.at(p), p, format, args...)
}

// show quotes a value for a message, or the file's "${VAR}" text when it came from the
// environment (see decoder.show).
func (v *validator) show(p, value string) string { return v.d.show(p, value) }

// showInt is show for numbers, which read better unquoted.
func (v *validator) showInt(p string, n int) string {
	if raw, ok := v.d.raw[p]; ok {
		return strconv.Quote(raw)
	}
	return strconv.Itoa(n)
}

// config checks the whole file.
func (v *validator) config(c *Config) {
	v.server(&c.Server)
	v.tls(&c.TLS)
	v.log(&c.Log)
	v.redis(&c.Redis)
	v.oidc(c)
	v.managedProviders(c)
	v.session(c)
	v.identity(c)
	v.pages(&c.Pages)
	v.routes(c.Routes)
	v.orgHosts(c)
	v.lifecycle(&c.Lifecycle)
	v.adminAPI(c)
	v.forwardAuth(c)
	v.console(c)
	v.tracing(c)
	v.clientJWT(c)
	v.scim(c)
	v.ssf(c)
	v.notifications(c)
	v.auditSinks(c)
}

func (v *validator) server(s *Server) {
	v.listener("server.listen", s.Listen)
	if s.RedirectListen != "" {
		v.listener("server.redirect_listen", s.RedirectListen)
	}
	if s.MetricsListen != "off" {
		v.listener("server.metrics_listen", s.MetricsListen)
	}
	if s.Pprof {
		host, _, _ := net.SplitHostPort(s.MetricsListen)
		if ip, err := netip.ParseAddr(host); s.MetricsListen == "off" || host != "localhost" && (err != nil || !ip.IsLoopback()) {
			v.errorf("server.pprof", "needs a loopback metrics_listen (such as 127.0.0.1:9090): profiles show request data")
		}
	}
	if s.PublicURL != "" {
		s.PublicBase = v.publicURL("server.public_url", s.PublicURL)
	}
	for i, tp := range s.TrustedProxies {
		p := fmt.Sprintf("server.trusted_proxies[%d]", i)
		if pr, ok := v.prefix(p, tp); ok {
			s.TrustedPrefixes = append(s.TrustedPrefixes, pr)
		}
	}
	v.nonNegative("server.read_header_timeout", s.ReadHeaderTimeout)
	v.nonNegative("server.read_timeout", s.ReadTimeout)
	v.nonNegative("server.write_timeout", s.WriteTimeout)
	v.nonNegative("server.idle_timeout", s.IdleTimeout)
	v.nonNegative("server.shutdown_timeout", s.ShutdownTimeout)
	if s.MaxHeaderBytes < 4096 || s.MaxHeaderBytes > 1<<20 {
		v.errorf("server.max_header_bytes", "must be from 4096 to 1048576, got %s", v.showInt("server.max_header_bytes", s.MaxHeaderBytes))
	}
	v.oneOf("server.path_params", s.PathParams, "reject", "strip")
	if h := s.ClientIPHeader; h != "" {
		switch up := strings.ToUpper(h); {
		case !syntax.Token(h):
			v.errorf("server.client_ip_header", "must be a header name such as \"X-Real-IP\"")
		case strings.HasPrefix(up, "X-FORWARDED-") || up == "FORWARDED" || strings.HasPrefix(up, "X-PORTCULLIS-"):
			v.errorf("server.client_ip_header", "%s is set by Portcullis already; name another header", h)
		}
	}
	if s.BodyInspectionLimit < 1024 || s.BodyInspectionLimit > 64<<20 {
		v.errorf("server.body_inspection_limit", "must be from 1024 to 67108864 bytes, got %s", v.showInt("server.body_inspection_limit", s.BodyInspectionLimit))
	}
	if s.MaxBufferedBody < 1024 || s.MaxBufferedBody > 64<<20 {
		v.errorf("server.max_buffered_body", "must be from 1024 to 67108864 bytes, got %s", v.showInt("server.max_buffered_body", s.MaxBufferedBody))
	}
	v.nonNegative("server.hsts.max_age", s.HSTS.MaxAge)
}

// listener checks a host:port to listen on; an empty host means every interface and port 0
// a port chosen by the system (tests).
func (v *validator) listener(p, addr string) {
	if msg := hostPortProblem(addr, false); msg != "" {
		v.errorf(p, "%s", msg)
	}
}

// hostPortProblem says what is wrong with a host:port, or "" when nothing is.
func hostPortProblem(addr string, needHost bool) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return `must be host:port, such as ":8443" or "127.0.0.1:8443"`
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 || strings.TrimLeft(port, "0123456789") != "" {
		return "port must be a number from 0 to 65535"
	}
	if host == "" && needHost {
		return "host is missing"
	}
	if host != "" && !validDNSName(strings.ToLower(host)) {
		if _, err := netip.ParseAddr(host); err != nil {
			return "host must be a DNS name or an IP address"
		}
	}
	return ""
}

func (v *validator) publicURL(p, raw string) *url.URL {
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Opaque != "":
		v.errorf(p, "must be a URL such as \"https://portal.example.com\"")
	case u.Scheme != "https":
		v.errorf(p, "must use https")
	case u.Host == "" || u.Hostname() == "":
		v.errorf(p, "must have a host")
	case u.User != nil:
		v.errorf(p, "must not contain user information")
	case u.Path != "" && u.Path != "/", u.RawQuery != "" || u.ForceQuery, u.Fragment != "":
		v.errorf(p, "must not have a path, query or fragment: Portcullis owns the whole origin")
	default:
		return u
	}
	return nil
}

// prefix parses a trusted proxy: a CIDR or a single address.
func (v *validator) prefix(p, s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		pr, err := netip.ParsePrefix(s)
		if err != nil {
			v.errorf(p, "must be an IP address or a CIDR such as \"10.0.0.0/8\", got %s", v.show(p, s))
			return netip.Prefix{}, false
		}
		if pr != pr.Masked() {
			v.errorf(p, "has bits set beyond the prefix length; did you mean %s?", v.show(p, pr.Masked().String()))
			return netip.Prefix{}, false
		}
		return pr, true
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		v.errorf(p, "must be an IP address or a CIDR such as \"10.0.0.0/8\", got %s", v.show(p, s))
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

func (v *validator) nonNegative(p string, d Duration) {
	if d < 0 {
		v.errorf(p, "must not be negative")
	}
}

// oneOf checks an enumerated value.
func (v *validator) oneOf(p, s string, allowed ...string) bool {
	if slices.Contains(allowed, s) {
		return true
	}
	v.errorf(p, "must be one of %s; got %s", strings.Join(allowed, ", "), v.show(p, s))
	return false
}

func (v *validator) tls(t *TLS) {
	modes := []string{TLSModeACME, TLSModeFiles, TLSModeSelfSigned, TLSModeOff}
	switch {
	case t.Mode == "":
		v.errorf("tls.mode", "is required: one of %s", strings.Join(modes, ", "))
	case !v.oneOf("tls.mode", t.Mode, modes...):
	}
	v.oneOf("tls.min_version", t.MinVersion, "1.2", "1.3")
	switch t.Mode {
	case TLSModeACME:
		v.acme(&t.ACME)
	case TLSModeFiles:
		for _, f := range []struct{ key, name string }{{"tls.cert_file", t.CertFile}, {"tls.key_file", t.KeyFile}} {
			if f.name == "" {
				v.errorf(f.key, "is required in tls mode files")
			} else {
				v.fileExists(f.key, f.name)
			}
		}
	case TLSModeOff:
		v.warnf("tls.mode", "TLS is off: Portcullis serves plain HTTP, which is only safe behind a TLS-terminating proxy or for development")
	}
	for i, h := range t.SelfSignedHosts {
		p := fmt.Sprintf("tls.self_signed_hosts[%d]", i)
		if _, err := netip.ParseAddr(h); err != nil && !validDNSName(strings.ToLower(h)) {
			v.errorf(p, "must be a DNS name or an IP address, got %s", v.show(p, h))
		}
	}
}

func (v *validator) acme(a *ACME) {
	if len(a.Domains) == 0 {
		v.errorf("tls.acme.domains", "is required in tls mode acme: the names to obtain certificates for")
	}
	for i, dom := range a.Domains {
		p := fmt.Sprintf("tls.acme.domains[%d]", i)
		switch {
		case strings.HasPrefix(dom, "*."):
			v.errorf(p, "wildcard certificates need the DNS-01 challenge, which Portcullis does not offer")
		case !validDNSName(strings.ToLower(dom)):
			v.errorf(p, "must be a DNS name, got %s", v.show(p, dom))
		}
	}
	seen := map[string]bool{}
	for i, ch := range a.Challenges {
		p := fmt.Sprintf("tls.acme.challenges[%d]", i)
		if v.oneOf(p, ch, "http-01", "tls-alpn-01") && seen[ch] {
			v.errorf(p, "%s is listed twice", ch)
		}
		seen[ch] = true
	}
	if u, err := url.Parse(a.CA); err != nil || u.Scheme != "https" || u.Host == "" {
		v.errorf("tls.acme.ca", "must be the https URL of an ACME directory, such as %q", LetsEncryptProduction)
	}
	if a.Email != "" {
		if addr, err := mail.ParseAddress(a.Email); err != nil || addr.Address != a.Email || addr.Name != "" {
			v.errorf("tls.acme.email", "must be an email address such as \"ops@example.com\"")
		}
	}
	if a.CARootFile != "" {
		v.fileExists("tls.acme.ca_root_file", a.CARootFile)
	}
	v.port("tls.acme.alt_http_port", a.AlternateHTTPPort)
	v.port("tls.acme.alt_tls_alpn_port", a.AlternateTLSALPNPort)
}

func (v *validator) port(p string, n int) {
	if n < 0 || n > 65535 {
		v.errorf(p, "must be a port number from 0 to 65535, got %s", v.showInt(p, n))
	}
}

// fileExists checks that a file the server will read at start exists and is not a directory.
func (v *validator) fileExists(p, name string) {
	fi, err := v.stat(name)
	switch {
	case err != nil:
		v.errorf(p, "cannot read %s: %s", v.show(p, name), fileReason(err))
	case fi.IsDir():
		v.errorf(p, "%s is a directory, not a file", v.show(p, name))
	}
}

var slogLevels = map[string]slog.Level{
	"debug": slog.LevelDebug, "info": slog.LevelInfo, "warn": slog.LevelWarn, "error": slog.LevelError,
}

func (v *validator) log(l *Log) {
	if v.oneOf("log.level", l.Level, "debug", "info", "warn", "error") {
		l.SlogLevel = slogLevels[l.Level]
	}
	v.oneOf("log.format", l.Format, "json", "text")
}

func (v *validator) redis(r *Redis) {
	if r.Address != "" {
		if path, ok := strings.CutPrefix(r.Address, "unix:"); ok {
			if !strings.HasPrefix(path, "/") {
				v.errorf("redis.address", "a unix socket must be an absolute path, such as \"unix:/run/redis.sock\"")
			}
		} else if msg := hostPortProblem(r.Address, true); msg != "" {
			v.errorf("redis.address", "%s (or unix:/path/to/socket)", msg)
		}
	}
	switch {
	case r.SentinelMaster != "":
		if r.Address != "" {
			v.errorf("redis.address", "must be empty when redis.sentinel_master is set: the sentinels in redis.addresses name the primary")
		}
		if len(r.Addresses) == 0 {
			v.errorf("redis.sentinel_master", "needs the sentinels' host:port in redis.addresses")
		}
		for i, a := range r.Addresses {
			if msg := hostPortProblem(a, true); msg != "" {
				v.errorf(fmt.Sprintf("redis.addresses[%d]", i), "%s", msg)
			}
		}
	case len(r.Addresses) > 0:
		v.errorf("redis.addresses", "lists sentinels and needs redis.sentinel_master; Redis Cluster is not supported (use one server, or a Sentinel-managed primary)")
	default:
		if r.SentinelUsername != "" {
			v.errorf("redis.sentinel_username", "is used only with redis.sentinel_master")
		}
		if r.SentinelPassword.Reveal() != "" {
			v.errorf("redis.sentinel_password", "is used only with redis.sentinel_master")
		}
	}
	if r.ReplicaAcks < 0 {
		v.errorf("redis.replica_acks", "must not be negative")
	}
	if r.DB < 0 {
		v.errorf("redis.db", "must not be negative")
	}
	// Keys are built as PREFIX:{hash tag}:…; a brace or a space in the prefix would break the
	// hash tag that keeps one lookup on one cluster slot.
	if strings.ContainsAny(r.KeyPrefix, "{} \t\r\n") {
		v.errorf("redis.key_prefix", "must not contain braces or white space")
	}
	v.nonNegative("redis.dial_timeout", r.DialTimeout)
	v.nonNegative("redis.read_timeout", r.ReadTimeout)
	v.nonNegative("redis.write_timeout", r.WriteTimeout)
}

// validDNSName accepts a lower-case DNS name: dot-separated labels of letters, digits and
// inner hyphens, 1 to 63 bytes each, 253 in all, without a trailing dot.
func validDNSName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}
