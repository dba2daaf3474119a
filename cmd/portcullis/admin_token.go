package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Admin API tokens, made with direct access to Redis: how the first operator token of a new
// installation comes to exist (every later one can be made through the API itself). The
// token is printed once; Redis keeps its hash.

func adminTokenCreate(a *adminRun) int {
	name := a.fs.String("name", "", "what the token is for (required)")
	owner := a.fs.String("owner", "", "the individual it acts as: an operator's name, or a person's issuer|subject (required)")
	operator := a.fs.Bool("operator", false, "give it the operators' authority")
	org := a.fs.String("org", "", "restrict a personal token to one organisation")
	readOnly := a.fs.Bool("read-only", false, "allow it to read only")
	lifetime := a.fs.String("lifetime", "90d", "how long it lives, at most 366d")
	if !a.parse() {
		return 2
	}
	life := a.tokenLifetime(*lifetime)
	if *name == "" {
		a.bad("--name", "is required")
	}
	if *owner == "" {
		a.bad("--owner", "is required")
	} else if !*operator && !strings.Contains(*owner, "|") {
		a.bad("--owner", "a personal token's owner is a person's key, issuer|subject")
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	secret, t, err := a.be.CreateToken(a.ctx, store.Token{Name: *name, Owner: *owner, Operator: *operator,
		Org: *org, ReadOnly: *readOnly, Expires: time.Now().Add(life)}, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(newToken(secret, t), func(w io.Writer) {
		fmt.Fprintf(w, "token %s for %s (expires %s); it is shown only now:\n%s\n", t.ID, t.Owner, t.Expires.Format(time.RFC3339), secret)
	})
}

// tokenLifetime reads --lifetime: a duration of at most a year.
func (a *adminRun) tokenLifetime(lifetime string) time.Duration {
	life, err := config.ParseDuration(lifetime)
	switch {
	case err != nil || life <= 0:
		a.bad("--lifetime", "%q: want a duration such as 90d", lifetime)
	case life > store.MaxTokenLifetime:
		a.bad("--lifetime", "%s: a token lives at most a year (366d)", lifetime)
	}
	return life
}

// createdToken is a new token as the commands print it in JSON: the only time its secret is
// shown (the record without its hash).
type createdToken struct {
	Token  string      `json:"token"`
	Record store.Token `json:"record"`
}

func newToken(secret string, t *store.Token) createdToken {
	r := *t
	r.Hash = ""
	return createdToken{secret, r}
}

func adminTokenList(a *adminRun) int {
	if !a.parse() {
		return 2
	}
	if !a.open() {
		return 1
	}
	defer a.close()
	ts, err := a.be.Tokens(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	return a.output(ts, func(w io.Writer) {
		for _, t := range ts {
			state := "live"
			if !t.Live(time.Now()) {
				state = "ended"
			}
			fmt.Fprintf(w, "%s  %-5s  operator=%-5v  owner=%s  org=%s  expires=%s  %s\n", t.ID, state, t.Operator, t.Owner, t.Org,
				t.Expires.Format(time.RFC3339), t.Name)
		}
	})
}

func adminTokenRevoke(a *adminRun) int {
	if !a.parse("ID") {
		return 2
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	t, err := a.be.RevokeToken(a.ctx, a.pos[0], a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(t, func(w io.Writer) { fmt.Fprintf(w, "token %s revoked\n", t.ID) })
}
