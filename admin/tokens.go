package admin

import (
	"strings"

	"github.com/portcullis-proxy/portcullis/store"
)

// tokenInput creates an admin API token.
type tokenInput struct {
	Name string `json:"name"`
	// Owner is the individual the token acts as: an operator's name for an operator token,
	// else a person's user key (issuer|subject).
	Owner    string `json:"owner"`
	Operator bool   `json:"operator,omitempty"`
	// Org restricts a personal token to one organisation.
	Org      string `json:"org,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Lifetime is how long the token lives ("90d"); at most a year.
	Lifetime string `json:"lifetime"`
	Reason   string `json:"reason"`
}

// createdToken is a new token: the only time its secret is shown.
type createdToken struct {
	Token  string      `json:"token"`
	Record store.Token `json:"record"`
}

func (c *call) listTokens() (any, error) {
	ts, err := c.s.st.Tokens(c.ctx)
	if err != nil {
		return nil, err
	}
	return list[store.Token]{Items: append([]store.Token{}, ts...)}, nil
}

func (c *call) createToken() (any, error) {
	var in tokenInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if err := needReason(in.Reason); err != nil {
		return nil, err
	}
	life, err := durationInput("lifetime", in.Lifetime)
	if err != nil {
		return nil, err
	}
	if !in.Operator && !strings.Contains(in.Owner, "|") {
		return nil, invalid("owner of a personal token must be a person's key, issuer|subject")
	}
	secret, t, err := c.changes().CreateToken(c.ctx, store.Token{Name: in.Name, Owner: in.Owner, Operator: in.Operator, Org: in.Org,
		ReadOnly: in.ReadOnly, Expires: c.s.now().Add(life)}, c.p.Name)
	if err != nil {
		return nil, err
	}
	t.Hash = ""
	return createdToken{Token: secret, Record: *t}, nil
}

func (c *call) revokeToken() (any, error) {
	var in decisionInput
	if err := c.decode(&in); err != nil {
		return nil, err
	}
	if err := needReason(in.Reason); err != nil {
		return nil, err
	}
	return c.changes().RevokeToken(c.ctx, c.r.PathValue("id"), c.p.Name, in.Reason)
}
