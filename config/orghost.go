package config

import (
	"fmt"
	"strings"
)

// orgHosts checks what signing in on organisation hosts needs. A browser on a host taken by
// org: {from: host} signs in on the sign-in host (the host of oidc.redirect_url, where the
// provider's callback arrives) and has its session handed over to the organisation host
// (session/handoff.go), which only goes to host names a route lists. So such a route, unless
// its pattern covers the sign-in host, needs a known sign-in host and a hosts list.
func (v *validator) orgHosts(c *Config) {
	signIn := ""
	switch {
	case c.OIDC.RedirectURI != nil:
		signIn = strings.ToLower(c.OIDC.RedirectURI.Hostname())
	case c.Server.PublicBase != nil:
		signIn = strings.ToLower(c.Server.PublicBase.Hostname())
	}
	for i := range c.Routes {
		r := &c.Routes[i]
		if r.Public || r.Org == nil || r.Org.From != OrgFromHost || orgHostProblem(r.Org.Host) != "" {
			continue
		}
		p := fmt.Sprintf("routes[%d]", i)
		rest := strings.TrimPrefix(r.Org.Host, "{org}.")
		if signIn == "" {
			v.errorf(p+".org.host", "browsers on organisation hosts sign in on one fixed sign-in host: set server.public_url (or oidc.redirect_url) to it")
			continue
		}
		if label, ok := strings.CutSuffix(signIn, "."+rest); ok && label != "" && !strings.Contains(label, ".") {
			continue // the sign-in host is one of the organisation hosts: no handoff to it
		}
		if len(r.Hosts) == 0 {
			v.errorf(p+".hosts", "must list the organisation hosts, such as %q: sign-in on them is handed over from %s only to host names a route lists", "*."+rest, signIn)
		}
	}
}
