package config

// ForwardAuth configures the forward-auth endpoint, /.portcullis/auth: an ingress that
// already routes the portal (nginx auth_request, Caddy forward_auth, Traefik forwardAuth)
// asks Portcullis about each request it holds, and Portcullis decides it exactly as it would
// decide the same request as the proxy, answering with the identity headers and the signed
// assertion for the ingress to pass on. The questions are believed only from
// server.trusted_proxies.
type ForwardAuth struct {
	// Enabled serves /.portcullis/auth. Default false.
	Enabled bool `yaml:"enabled"`
	// Listen is an address of its own for the endpoint, such as "127.0.0.1:9091", served
	// with the main listener's TLS (plain HTTP with tls.mode off). The main listener then
	// does not serve it. Default "": the main listener serves it.
	Listen string `yaml:"listen"`
	// EnvoyListen is an address for Envoy's ext_authz gRPC service
	// (envoy.service.auth.v3.Authorization), such as "127.0.0.1:9001": the same decisions for
	// Envoy and the gateways built on it, served with the main listener's TLS (plaintext
	// HTTP/2 with tls.mode off). When set, the main listener does not serve
	// /.portcullis/auth. Default "": not served.
	EnvoyListen string `yaml:"envoy_listen"`
}

// forwardAuth checks the forward_auth section.
func (v *validator) forwardAuth(c *Config) {
	f := &c.ForwardAuth
	if !f.Enabled {
		if f.Listen != "" {
			v.errorf("forward_auth.listen", "is set but forward_auth.enabled is not")
		}
		if f.EnvoyListen != "" {
			v.errorf("forward_auth.envoy_listen", "is set but forward_auth.enabled is not")
		}
		return
	}
	if len(c.Server.TrustedProxies) == 0 {
		v.errorf("forward_auth.enabled", "needs server.trusted_proxies naming the ingress: the request a question describes is believed only from there")
	}
	if f.Listen != "" {
		v.listener("forward_auth.listen", f.Listen)
		if f.Listen == c.Server.Listen {
			v.errorf("forward_auth.listen", "is server.listen; leave it empty to serve the endpoint on the main listener")
		}
	}
	if e := f.EnvoyListen; e != "" {
		v.listener("forward_auth.envoy_listen", e)
		switch e {
		case c.Server.Listen:
			v.errorf("forward_auth.envoy_listen", "is server.listen; the gRPC service needs an address of its own")
		case f.Listen:
			v.errorf("forward_auth.envoy_listen", "is forward_auth.listen; the gRPC service needs an address of its own")
		}
	}
}
