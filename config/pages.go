package config

import (
	"net/mail"
	"net/url"
	"strings"
	"unicode"
)

// pages checks the branding of Portcullis's own pages. Everything here ends up in HTML and in
// a Content-Security-Policy, so only plain values are accepted: the name is text, the links
// are https or same-origin paths.
func (v *validator) pages(p *Pages) {
	if len(p.ProductName) > 80 {
		v.errorf("pages.product_name", "must be at most 80 characters")
	}
	if strings.IndexFunc(p.ProductName, unicode.IsControl) >= 0 {
		v.errorf("pages.product_name", "must not contain control characters")
	}
	if p.LogoURL != "" {
		if msg := pageLinkProblem(p.LogoURL); msg != "" {
			v.errorf("pages.logo_url", "%s", msg)
		}
	}
	if p.SupportURL != "" {
		if msg := pageLinkProblem(p.SupportURL); msg != "" {
			v.errorf("pages.support_url", "%s", msg)
		}
	}
	if e := p.SupportEmail; e != "" {
		a, err := mail.ParseAddress(e)
		if err != nil || a.Name != "" || a.Address != e {
			v.errorf("pages.support_email", "%s is not a plain email address (like help@example.com)", v.show("pages.support_email", e))
		}
	}
}

// pageLinkProblem accepts an absolute https URL without credentials, or a path on the portal's
// own origin ("/x", not "//host/x", which a browser would read as another host).
func pageLinkProblem(raw string) string {
	if strings.ContainsAny(raw, " \\\"'<>`") || strings.IndexFunc(raw, unicode.IsControl) >= 0 {
		return "must not contain spaces, quotes, backslashes, angle brackets or control characters"
	}
	if strings.HasPrefix(raw, "/") {
		if strings.HasPrefix(raw, "//") {
			return `a path must not start with "//" (a browser reads it as another host)`
		}
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return "must be an https URL or a path starting with /"
	}
	if u.User != nil {
		return "must not contain credentials"
	}
	return ""
}
