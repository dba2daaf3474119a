package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/portcullis-proxy/portcullis/store"
)

// eventResult is what `event … --json` prints: the outcome, and the sessions an offboarding
// ended.
type eventResult struct {
	store.Outcome
	SessionsEnded int `json:"sessions_ended,omitempty"`
}

// adminEvent runs the business event name (store.Orgs.Apply) from the command line, within
// the configuration's lifecycle policy.
func adminEvent(name string) func(a *adminRun) int {
	return func(a *adminRun) int {
		dry := a.fs.Bool("dry-run", false, "list every change the event would make, and make none")
		ev := store.BusinessEvent{Event: name}
		var until *string
		var roles, emails, people stringList
		var kind *string
		var iss, sub *string
		var names []string
		switch name {
		case store.EventContractRenewed:
			until = a.fs.String("until", "", "the contract's new end: RFC 3339 or a duration from now (required)")
			names = []string{"ORG"}
		case store.EventContractEnded:
			names = []string{"ORG"}
		case store.EventMergedInto:
			names = []string{"ORG", "INTO"}
		case store.EventRoleChanged:
			a.fs.Var(&roles, "role", "a standing role the person keeps or gets (repeatable; none: no roles)")
			iss, sub = a.userFlags()
			names = []string{"ORG", "USER?"}
		case store.EventOffboarded:
			a.fs.Var(&emails, "email", "a further address of the person whose invitations are withdrawn (repeatable)")
			iss, sub = a.userFlags()
			names = []string{"USER?"}
		case store.EventDomainLapsed:
			names = []string{"ORG", "DOMAIN"}
		case store.EventSupportMoved:
			a.fs.Var(&people, "person", "a person of TO (issuer|subject) who takes the support over: asked for in ORG (repeatable)")
			a.fs.Var(&roles, "role", "a role they are asked for (repeatable; default: the roles FROM's people held)")
			kind = a.fs.String("kind", store.KindPartner, "the kind of membership they are asked for: partner, reseller or support")
			names = []string{"ORG", "FROM", "TO"}
		}
		if !a.parse(names...) {
			return 2
		}
		switch name {
		case store.EventOffboarded:
			ev.User = a.userKey(a.pos[0], *iss, *sub)
			ev.Emails = emails
		default:
			ev.Org = a.pos[0]
			a.checkOrgID("ORG", ev.Org)
		}
		switch name {
		case store.EventContractRenewed:
			if *until == "" {
				a.bad("--until", "is required: the contract's new end")
			} else {
				ev.Until = a.future("--until", *until, false)
			}
		case store.EventMergedInto:
			ev.Into = a.pos[1]
			a.checkOrgID("INTO", ev.Into)
		case store.EventRoleChanged:
			ev.User = a.userKey(a.pos[1], *iss, *sub)
			ev.Roles = roles
		case store.EventDomainLapsed:
			ev.Domain = a.pos[1]
		case store.EventSupportMoved:
			ev.From, ev.To = a.pos[1], a.pos[2]
			a.checkOrgID("FROM", ev.From)
			a.checkOrgID("TO", ev.To)
			ev.People, ev.Roles, ev.Kind = people, roles, *kind
		}
		if a.failed() || !a.open() {
			return 1
		}
		defer a.close()
		out, err := a.be.Apply(a.ctx, ev, a.reason, *dry)
		if err != nil {
			return a.fail(err)
		}
		res := *out
		return a.output(res, func(w io.Writer) { printOutcome(w, &res) })
	}
}

// printOutcome writes an outcome for people: one line per change.
func printOutcome(w io.Writer, res *eventResult) {
	verb := "applied"
	if res.DryRun {
		verb = "dry run, nothing changed"
	}
	fmt.Fprintf(w, "%s (%s): %d change(s), operation %s\n", strings.ReplaceAll(res.Event, "_", " "), verb, len(res.Changes), res.Operation)
	for _, c := range res.Changes {
		fmt.Fprintf(w, "  %-22s %s\n", c.Type, describe(c))
	}
	for _, m := range res.Ends {
		fmt.Fprintf(w, "  %-22s %s in %s\n", "access ends", m.User, m.Org)
	}
	for _, c := range res.Skipped {
		fmt.Fprintf(w, "  %-22s %s\n", "skipped", describe(c))
	}
	if res.SessionsEnded > 0 {
		fmt.Fprintf(w, "  %d session(s) ended\n", res.SessionsEnded)
	}
}

func describe(c store.Change) string {
	var where []string
	for _, s := range []string{c.Org, c.User, c.Object, c.ID} {
		if s != "" {
			where = append(where, s)
		}
	}
	return strings.Join(where, " ") + ": " + c.What
}
