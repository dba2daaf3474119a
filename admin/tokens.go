package admin

import (
	"slices"

	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// Tokens made through the API are always the caller's own: an operator makes operator tokens
// for themselves, a person personal tokens for themselves, no broader than the credential
// they call with and ending no later than it. Nobody mints a credential that acts as someone
// else (it would let one individual count as two approvers, or act as a colleague); a
// person's first token comes from `portcullis admin token create`, with direct access to
// Redis, recorded as such.

// tokenInput creates an admin API token.
type tokenInput struct {
	Name string `json:"name"`
	// Operator asks for an operator token (operators only); otherwise a personal one.
	Operator bool `json:"operator,omitempty"`
	// Org restricts a personal token to one organisation (required when the calling token is
	// itself restricted: to the same one).
	Org      string `json:"org,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
	// Lifetime is how long the token lives ("90d"); at most a year, and no longer than the
	// calling token.
	Lifetime string `json:"lifetime"`
	Reason   string `json:"reason"`
}

// createdToken is a new token: the only time its secret is shown.
type createdToken struct {
	Token  string      `json:"token"`
	Record store.Token `json:"record"`
}

// listTokens lists every token to operators, one's own to anyone else.
func (c *call) listTokens() (any, error) {
	ts, err := c.s.st.Tokens(c.ctx)
	if err != nil {
		return nil, err
	}
	if !c.p.Operator {
		ts = slices.DeleteFunc(ts, func(t store.Token) bool { return t.Owner != c.p.Name || t.Operator })
	}
	return list[store.Token]{Items: append([]store.Token{}, ts...)}, nil
}

func (c *call) createToken() (any, error) {
	var in tokenInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	life, err := durationInput("lifetime", in.Lifetime)
	if err != nil {
		return nil, err
	}
	switch {
	case in.Operator != c.p.Operator && c.p.Operator:
		return nil, refuse(reason.NotPermitted, "an operator makes operator tokens for themselves; a person's tokens are their own to make")
	case in.Operator && !c.p.Operator:
		return nil, refuse(reason.NotPermitted, "only operators make operator tokens")
	case c.p.org != "" && in.Org != c.p.org:
		return nil, refuse(reason.NotPermitted, "a token restricted to "+c.p.org+" makes tokens restricted to it")
	}
	expires := c.s.now().Add(life)
	if !c.p.expires.IsZero() && expires.After(c.p.expires) {
		return nil, invalid("lifetime: a token ends no later than the token that makes it (" + c.p.expires.UTC().Format("2006-01-02T15:04:05Z") + ")")
	}
	secret, t, err := c.changes().CreateToken(c.ctx, store.Token{Name: in.Name, Owner: c.p.Name, Operator: in.Operator, Org: in.Org,
		ReadOnly: in.ReadOnly, Expires: expires}, c.p.Name, in.Reason)
	if err != nil {
		return nil, err
	}
	t.Hash = ""
	return createdToken{Token: secret, Record: *t}, nil
}

// revokeToken revokes any token for an operator, one's own for anyone else (another's is not
// found).
func (c *call) revokeToken() (any, error) {
	var in decisionInput
	if err := c.body(&in); err != nil {
		return nil, err
	}
	id := c.r.PathValue("id")
	if !c.p.Operator {
		ts, err := c.s.st.Tokens(c.ctx)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(ts, func(t store.Token) bool { return t.ID == id && t.Owner == c.p.Name && !t.Operator }) {
			return nil, refuse(reason.NotFound, "not the caller's token")
		}
	}
	return c.changes().RevokeToken(c.ctx, id, c.p.Name, in.Reason)
}
