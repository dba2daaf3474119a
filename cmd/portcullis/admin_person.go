package main

import (
	"fmt"
	"io"

	"github.com/portcullis-proxy/portcullis/audit"
)

// adminPersonEmail tells the recovery guard that EMAIL belongs to USER, as a sign-in would:
// a backfill for people who have not signed in through Portcullis yet, whose recovery
// requests are otherwise refused (no_active_membership).
func adminPersonEmail(a *adminRun) int {
	return adminPersonIndex(a, "EMAIL", audit.PersonEmailRecorded, func(user, value string) error {
		return a.be.RecordPerson(a.ctx, user, value, "", a.reason)
	})
}

// adminPersonUsername records that the portal's USERNAME belongs to USER, for recovery
// guards with kind: username.
func adminPersonUsername(a *adminRun) int {
	return adminPersonIndex(a, "USERNAME", audit.PersonUsernameSet, func(user, value string) error {
		return a.be.RecordPerson(a.ctx, user, "", value, a.reason)
	})
}

func adminPersonIndex(a *adminRun, what string, typ audit.Type, write func(user, value string) error) int {
	if !a.parse("USER", what) {
		return 2
	}
	user := a.userKey(a.pos[0], "", "")
	value := a.pos[1]
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	// The backend records the value (which the guard keeps hashed) and an event naming the
	// person only.
	if err := write(user, value); err != nil {
		return a.fail(err)
	}
	res := struct {
		User string `json:"user"`
		Kind string `json:"recorded"`
	}{user, string(typ)}
	return a.output(res, func(w io.Writer) { fmt.Fprintf(w, "%s: %s recorded\n", user, what) })
}

// adminRecoveryReset clears the recovery rate limit a person ran into on a guarded route.
func adminRecoveryReset(a *adminRun) int {
	email := a.fs.String("email", "", "the address, as the person types it")
	username := a.fs.String("username", "", "or the portal username")
	if !a.parse("ROUTE") {
		return 2
	}
	if (*email == "") == (*username == "") {
		a.bad("--email", "or --username: give one of them")
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	shown, n, err := a.be.ResetRecoveryLimit(a.ctx, a.pos[0], *email, *username, a.reason)
	if err != nil {
		return a.fail(err)
	}
	res := struct {
		Route      string `json:"route"`
		Identifier string `json:"identifier"`
		Cleared    int    `json:"cleared"`
	}{a.pos[0], shown, n}
	return a.output(res, func(w io.Writer) {
		fmt.Fprintf(w, "route %s: recovery limit of %s cleared (%d counter(s))\n", res.Route, shown, n)
	})
}
