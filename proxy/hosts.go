package proxy

import "github.com/portcullis-proxy/portcullis/config"

// ServesHost reports whether a route of the configuration in force names host (a Host header,
// possibly with a port) in its hosts, exactly or by a wildcard. A route without hosts answers
// every Host header a client cares to send, so it does not count: the sign-in handoff
// (session.Options.HostAllowed) posts a one-time code to the host it is asked for, and must
// only ever post it to a name the operator declared as Portcullis's own.
func (s *Server) ServesHost(host string) bool {
	h, ok := canonicalHost(host)
	if !ok {
		return false
	}
	rt := s.state.Load().router
	for i := range rt.routes {
		if r := &rt.routes[i]; !r.anyHost && r.matchHost(h) {
			return true
		}
	}
	return false
}

// HostOrg returns the organisation an organisation host serves: the {org} label of host (a
// Host header, possibly with a port) for the first route naming host whose organisation
// comes from the host (org: {from: host}); "" for any other host. Sign-in on such a host goes
// to its organisation's provider (session.Options.HostOrg).
func (s *Server) HostOrg(host string) string {
	h, ok := canonicalHost(host)
	if !ok {
		return ""
	}
	st := s.state.Load()
	for i := range st.router.routes {
		r := &st.router.routes[i]
		if r.anyHost || !r.matchHost(h) {
			continue
		}
		if pol := &st.policies[i]; pol.resolver.From() == config.OrgFromHost {
			if org, ok := pol.resolver.Resolve(h, "/", nil, false, ""); ok {
				return org
			}
		}
	}
	return ""
}
