package proxy

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
