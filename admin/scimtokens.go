package admin

import (
	"slices"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// SCIM tokens: the credential an organisation's directory provisions it with (package scim).
// Each is one organisation's, shown once, hashed at rest, and no admin API credential.
// Rotating is making the next and revoking the previous once the directory uses it. Operators
// and the organisation's own administrators (in their own right, not by delegation) manage
// them.

// scimTokenInput creates a SCIM token.
type scimTokenInput struct {
	Name string `json:"name"`
	// Lifetime is how long the token lives ("180d"); at most a year.
	Lifetime string `json:"lifetime"`
	Reason   string `json:"reason"`
}

func (c *call) listSCIMTokens() (any, error) {
	org := c.r.PathValue("org")
	if err := c.mayAdministerDirectly(org); err != nil {
		return nil, err
	}
	ts, err := c.scimTokens(org)
	if err != nil {
		return nil, err
	}
	return list[store.Token]{Items: append([]store.Token{}, ts...)}, nil
}

// scimTokens are org's SCIM tokens, revoked ones included.
func (c *call) scimTokens(org string) ([]store.Token, error) {
	ts, err := c.s.st.Tokens(c.ctx)
	return slices.DeleteFunc(ts, func(t store.Token) bool { return !t.SCIM || t.Org != org }), err
}

func (c *call) createSCIMToken() (any, error) {
	org := c.r.PathValue("org")
	var in scimTokenInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if err := c.mayAdministerDirectly(org); err != nil {
		return nil, err
	}
	life, err := durationInput("lifetime", in.Lifetime)
	if err != nil {
		return nil, err
	}
	if _, err := c.s.st.Org(c.ctx, org); err != nil {
		return nil, err
	}
	expires := c.s.now().Add(life)
	if !c.p.expires.IsZero() && expires.After(c.p.expires) {
		return nil, invalid("lifetime: a token ends no later than the token that makes it (" + c.p.expires.UTC().Format("2006-01-02T15:04:05Z") + ")")
	}
	// The token is the organisation's directory's, not its maker's (created_by says who):
	// the maker leaving does not silently stop the organisation's deprovisioning.
	secret, t, err := c.changes().CreateToken(c.ctx, store.Token{Name: in.Name, Owner: store.SCIMOwner(org), Org: org, SCIM: true,
		Expires: expires}, c.p.Name, in.Reason)
	if err != nil {
		return nil, err
	}
	t.Hash = ""
	return createdToken{Token: secret, Record: *t}, nil
}

func (c *call) revokeSCIMToken() (any, error) {
	org, id := c.r.PathValue("org"), c.r.PathValue("id")
	var in decisionInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	if err := c.mayAdministerDirectly(org); err != nil {
		return nil, err
	}
	ts, err := c.scimTokens(org)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(ts, func(t store.Token) bool { return t.ID == id }) {
		return nil, refuse(reason.NotFound, "no SCIM token "+id+" of "+org)
	}
	return c.changes().RevokeToken(c.ctx, id, c.p.Name, in.Reason)
}

func (in *scimTokenInput) why() string { return in.Reason }
