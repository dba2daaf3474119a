package console

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis-proxy/portcullis/internal/problem"
	"github.com/portcullis-proxy/portcullis/internal/reason"
	"github.com/portcullis-proxy/portcullis/store"
)

// operatorHome lists every organisation for an operator, each leading to its pages.
func (ex *exchange) operatorHome() error {
	if err := ex.asOperator(ex.r.URL.Path); err != nil {
		return err
	}
	var orgs items[store.Org]
	if err := ex.call(http.MethodGet, "/orgs", nil, &orgs); err != nil {
		return err
	}
	return ex.render("Operator", "operator", struct{ Orgs []store.Org }{orgs.Items})
}

// eventForm is a business event as the operator fills it in.
type eventForm struct {
	CSRF, Event, Org, User, Until, Into, Roles, Domain, From, To, People, Kind, Why string
	Events                                                                          []string
	Error                                                                           *problem.Problem
	// Outcome is the dry run's list, shown before the operator confirms; Digest sums it
	// up, and comes back with the confirmation; Changed says the list changed since the one
	// the operator confirmed.
	Outcome *eventOutcome
	Digest  string
	Changed bool
}

// digest sums up what a dry run would change, to tell whether the event would still do what
// the operator confirmed (the records may have changed meanwhile).
func (o *eventOutcome) digest() string {
	b, _ := json.Marshal(struct {
		Changes, Skipped []store.Change
		Ends             []store.MemberRef
	}{o.Changes, o.Skipped, o.Ends})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// eventOutcome is what an event does, or would do, as the API states it.
type eventOutcome struct {
	store.Outcome
	SessionsEnded int `json:"sessions_ended"`
}

func (ex *exchange) eventForm() error {
	if err := ex.asOperator(ex.r.URL.Path); err != nil {
		return err
	}
	return ex.render("Business events", "events", eventForm{CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Events: store.BusinessEvents(),
		Event: store.EventContractEnded})
}

// event runs a business event in two steps: its dry run, shown as the list of every change
// it would make; then, confirmed (with the same values), the event itself, shown as what it
// did, provided a new dry run still lists exactly the changes confirmed (else the new list is
// shown to confirm). Nothing changes before the confirmation.
func (ex *exchange) event() error {
	if err := ex.asOperator(Prefix + "operator/events"); err != nil {
		return err
	}
	f := ex.r.PostForm
	d := eventForm{CSRF: ex.c.o.Sessions.CSRFToken(ex.r), Events: store.BusinessEvents(), Event: f.Get("event"),
		Org: strings.TrimSpace(f.Get("org")), User: strings.TrimSpace(f.Get("user")), Until: f.Get("until"), Into: strings.TrimSpace(f.Get("into")),
		Roles: f.Get("roles"), Domain: strings.TrimSpace(f.Get("domain")), From: strings.TrimSpace(f.Get("from")), To: strings.TrimSpace(f.Get("to")),
		People: f.Get("people"), Kind: f.Get("kind"), Why: strings.TrimSpace(f.Get("reason"))}
	in := struct {
		store.BusinessEvent
		DryRun bool   `json:"dry_run,omitempty"`
		Reason string `json:"reason"`
	}{BusinessEvent: store.BusinessEvent{Event: d.Event, Org: d.Org, User: d.User, Into: d.Into, Roles: names(d.Roles), Domain: d.Domain,
		From: d.From, To: d.To, People: strings.Fields(d.People), Kind: d.Kind}, DryRun: f.Get("confirm") != "yes", Reason: d.Why}
	if !slices.Contains(store.BusinessEvents(), d.Event) {
		d.Error = invalidForm("event: choose one")
	} else if until, err := dateInput(d.Until); err != nil {
		d.Error = invalidForm("until: want a date")
	} else {
		in.Until = until
	}
	if d.Error == nil && !in.DryRun {
		// Applied only if it still makes exactly the changes the operator confirmed: the
		// dry run again, compared with the one they saw.
		in.DryRun = true
		var now eventOutcome
		err := ex.call(http.MethodPost, "/events", in, &now)
		var apiErr *apiError
		switch {
		case err == nil && now.digest() != f.Get("digest"):
			d.Outcome, d.Digest, d.Changed = &now, now.digest(), true
			return ex.renderStatus(http.StatusConflict, "Confirm the business event", "events", d)
		case errors.As(err, &apiErr) && (inputRefusal(apiErr.p.Reason) || apiErr.p.Reason == reason.NotFound):
			d.Error = &apiErr.p
		case err != nil:
			return err
		}
		in.DryRun = false
	}
	if d.Error == nil {
		var out eventOutcome
		err := ex.call(http.MethodPost, "/events", in, &out)
		var apiErr *apiError
		switch {
		case err == nil:
			if !in.DryRun {
				return ex.render("Business event applied", "event-done", struct {
					Outcome eventOutcome
					Form    eventForm
				}{out, d})
			}
			d.Outcome, d.Digest = &out, out.digest()
			return ex.render("Confirm the business event", "events", d)
		case errors.As(err, &apiErr) && (inputRefusal(apiErr.p.Reason) || apiErr.p.Reason == reason.NotFound):
			d.Error = &apiErr.p
		default:
			return err
		}
	}
	return ex.renderStatus(d.Error.Status, "Business events", "events", d)
}
