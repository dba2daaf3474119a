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
