package config

import (
	"fmt"
	"strings"
)

// SSF configures the Shared Signals receiver (OpenID SSF 1.0, push delivery per RFC 8935 of
// Security Event Tokens, RFC 8417): transmitters, usually identity providers, POST signed
// events about their people to /.portcullis/ssf/events, and Portcullis acts on them at once
// (CAEP session-revoked ends the person's sessions; credential-change and
// assurance-level-change drop their step-up elevations; token-claims-change ends their
// sessions so the next sign-in reads the claims again).
type SSF struct {
	// Transmitters are the transmitters whose events are accepted. Default: none (the
	// endpoint answers 404).
	Transmitters []SSFTransmitter `yaml:"transmitters"`
}

// SSFTransmitter is one trusted transmitter.
type SSFTransmitter struct {
	// Name identifies the transmitter in logs and audit events. Required, unique.
	Name string `yaml:"name"`
	// Issuer is the iss of its events, exactly. Required.
	Issuer string `yaml:"issuer"`
	// JWKSURI is where its signing keys are published (https, or http on loopback).
	// Required.
	JWKSURI string `yaml:"jwks_uri"`
	// Audience is the aud its events must carry: what the stream was configured with.
	// Required.
	Audience string `yaml:"audience"`
	// Provider names the OpenID Provider whose people its subjects are (oidc.providers[].name,
	// or "default"): an event about a subject reaches that provider's person only. Default:
	// the only provider, when there is one.
	Provider string `yaml:"provider"`
	// CARootFile is a PEM bundle trusted for jwks_uri. Default: the system roots.
	CARootFile string `yaml:"ca_root_file"`
}

func (v *validator) ssf(c *Config) {
	names := map[string]bool{}
	for i := range c.SSF.Transmitters {
		t := &c.SSF.Transmitters[i]
		p := fmt.Sprintf("ssf.transmitters[%d]", i)
		switch {
		case t.Name == "":
			v.errorf(p+".name", "is required")
		case names[t.Name]:
			v.errorf(p+".name", "%s names another transmitter already", v.show(p+".name", t.Name))
		}
		names[t.Name] = true
		if t.Issuer == "" {
			v.errorf(p+".issuer", "is required")
		}
		if t.JWKSURI == "" {
			v.errorf(p+".jwks_uri", "is required")
		} else {
			v.endpointURL(p+".jwks_uri", t.JWKSURI)
		}
		if strings.TrimSpace(t.Audience) == "" {
			v.errorf(p+".audience", "is required: an event for another receiver must not be accepted here")
		}
		if t.CARootFile != "" {
			v.fileExists(p+".ca_root_file", t.CARootFile)
		}
		switch {
		case !c.OIDC.Configured():
			v.errorf(p, "needs oidc: the events are about people who sign in")
		case t.Provider == "" && len(c.OIDC.All) == 1:
			t.Provider = c.OIDC.All[0].Name
		case t.Provider == "":
			v.errorf(p+".provider", "is required with several providers: whose people the events are about")
		case c.OIDC.Provider(t.Provider) == nil:
			v.errorf(p+".provider", "%s is not a configured provider", v.show(p+".provider", t.Provider))
		}
	}
}
