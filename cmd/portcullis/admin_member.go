package main

// `portcullis admin member …`, `person offboard` and `review due`.

import (
	"encoding/csv"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"os"
	"slices"
	"strings"

	"text/tabwriter"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/store"
)

// accessFlags are the flags that describe the access given by grant and invite.
type accessFlags struct {
	kind, expires, reviewBy, approvedBy string
	roles, purposes                     stringList
}

func (a *adminRun) accessFlags() *accessFlags {
	f := &accessFlags{}
	a.fs.StringVar(&f.kind, "kind", "", "membership kind: employee, partner, reseller, support or service (required)")
	a.fs.Var(&f.roles, "role", "a role, [a-z0-9_-]{1,64} (repeatable)")
	a.fs.Var(&f.purposes, "purpose", "a purpose grant PURPOSE:REASON[:EXPIRES], EXPIRES RFC 3339 or a duration (repeatable)")
	a.fs.StringVar(&f.expires, "expires", "", "when the membership ends: RFC 3339 or a duration from now (default: never)")
	a.fs.StringVar(&f.reviewBy, "review-by", "", "when the membership must have been re-approved: RFC 3339 or a duration")
	a.fs.StringVar(&f.approvedBy, "approved-by", "", "who approved the access")
	return f
}

// membership turns the flags into the membership they describe (Org and User unset),
// recording their problems.
func (f *accessFlags) membership(a *adminRun) store.Membership {
	a.checkKind("--kind", f.kind)
	m := store.Membership{Kind: f.kind, Roles: f.roles, ApprovedBy: f.approvedBy}
	for _, r := range f.roles {
		a.checkToken("--role", r)
	}
	m.Grants = a.grants("--purpose", f.purposes, f.approvedBy)
	m.ExpiresAt = a.future("--expires", f.expires, false)
	m.ReviewBy = a.future("--review-by", f.reviewBy, false)
	return m
}

// grants parses purpose flags, each approved by approvedBy; a purpose given twice is a problem.
func (a *adminRun) grants(flagName string, values []string, approvedBy string) []store.Grant {
	var out []store.Grant
	for _, v := range values {
		g, ok := a.parsePurpose(flagName, v)
		if !ok {
			continue
		}
		if slices.ContainsFunc(out, func(x store.Grant) bool { return x.Purpose == g.Purpose }) {
			a.bad(flagName, "%q: purpose %s given twice", v, g.Purpose)
			continue
		}
		g.ApprovedBy = approvedBy
		out = append(out, g)
	}
	return out
}

// userFlags registers --issuer and --subject, the other way to name a person.
func (a *adminRun) userFlags() (issuer, subject *string) {
	return a.fs.String("issuer", "", "the person's OIDC issuer (with --subject, instead of USER)"),
		a.fs.String("subject", "", "the person's OIDC subject (with --issuer, instead of USER)")
}

// orgUser parses the arguments ORG USER (or ORG with --issuer and --subject, whose flags
// must have been declared with userFlags) and checks the organisation id. It returns false
// on a usage error (exit 2); problems with the values are in a.failed().
func (a *adminRun) orgUser(iss, sub *string) (org, user string, ok bool) {
	if !a.parse("ORG", "USER?") {
		return "", "", false
	}
	org, user = a.pos[0], a.userKey(a.pos[1], *iss, *sub)
	a.checkOrgID("ORG", org)
	return org, user, true
}

func adminMemberGrant(a *adminRun) int {
	f := a.accessFlags()
	email := a.fs.String("email", "", "instead of USER: the verified address the person signed in with (refused when nobody, or more than one person, did)")
	iss, sub := a.userFlags()
	if !a.parse("ORG", "USER?") {
		return 2
	}
	org := a.pos[0]
	a.checkOrgID("ORG", org)
	var user string
	switch {
	case *email != "" && (a.pos[1] != "" || *iss != "" || *sub != ""):
		a.bad("--email", "or USER: give one of them")
	case *email != "":
		if addr, err := mail.ParseAddress(*email); err != nil || addr.Address != *email {
			a.bad("--email", "%q: want a bare email address", *email)
		}
	default:
		user = a.userKey(a.pos[1], *iss, *sub)
	}
	m := f.membership(a)
	m.Org, m.User, m.Email = org, user, *email
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	out, err := a.be.Grant(a.ctx, m, "", a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(out, func(w io.Writer) { printMembers(w, []store.Membership{*out}) })
}

func adminMemberInvite(a *adminRun) int {
	f := a.accessFlags()
	until := a.fs.String("until", "", "when the invitation lapses unused: RFC 3339 or a duration (default 14d)")
	if !a.parse("ORG", "EMAIL") {
		return 2
	}
	org, email := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	if addr, err := mail.ParseAddress(email); err != nil || addr.Address != email {
		a.bad("EMAIL", "%q: want a bare email address, such as alice@example.com", email)
	}
	m := f.membership(a)
	inv := store.Invitation{Org: org, Email: email, Kind: m.Kind, Roles: m.Roles, Grants: m.Grants,
		ExpiresAt: m.ExpiresAt, ReviewBy: m.ReviewBy, ApprovedBy: m.ApprovedBy,
		Until: a.future("--until", *until, false)}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	out, err := a.be.Invite(a.ctx, inv, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(out, func(w io.Writer) {
		fmt.Fprintf(w, "invited %s to %s as %s, roles %s, purposes %s; binds at first sign-in with that verified address until %s\n",
			out.Email, out.Org, out.Kind, joinOrDash(out.Roles), purposeList(out.Grants), when(out.Until))
	})
}

func adminMemberInvitations(a *adminRun) int {
	if !a.parse("ORG") {
		return 2
	}
	org := a.pos[0]
	if a.checkOrgID("ORG", org); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	invs, err := a.be.Invitations(a.ctx, org)
	if err != nil {
		return a.fail(err)
	}
	return a.output(invs, func(w io.Writer) {
		if len(invs) == 0 {
			fmt.Fprintf(w, "no invitations to %s\n", org)
		}
		for _, inv := range invs {
			fmt.Fprintf(w, "%s  %s  roles %s  purposes %s  invited by %s  until %s\n", inv.Email, inv.Kind, joinOrDash(inv.Roles),
				purposeList(inv.Grants), inv.InvitedBy, when(inv.Until))
		}
	})
}

func adminMemberWithdraw(a *adminRun) int {
	if !a.parse("ORG", "EMAIL") {
		return 2
	}
	org, email := a.pos[0], a.pos[1]
	if a.checkOrgID("ORG", org); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	inv, err := a.be.Withdraw(a.ctx, org, email, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(inv, func(w io.Writer) { fmt.Fprintf(w, "withdrew the invitation of %s to %s\n", inv.Email, inv.Org) })
}

func adminMemberChange(a *adminRun) int {
	var addRoles, removeRoles, addPurposes, removePurposes stringList
	a.fs.Var(&addRoles, "add-role", "add a role (repeatable)")
	a.fs.Var(&removeRoles, "remove-role", "remove a role (repeatable)")
	a.fs.Var(&addPurposes, "add-purpose", "add or replace a purpose grant PURPOSE:REASON[:EXPIRES] (repeatable)")
	a.fs.Var(&removePurposes, "remove-purpose", "remove a purpose grant (repeatable)")
	kind := a.fs.String("kind", "", "new membership kind")
	expires := a.fs.String("expires", "", `new end of the membership: RFC 3339, a duration from now, or "never"`)
	reviewBy := a.fs.String("review-by", "", `new review date: RFC 3339, a duration from now, or "never"`)
	approvedBy := a.fs.String("approved-by", "", "who approved the change (also recorded on added purposes)")
	org, user, ok := a.orgUser(a.userFlags())
	if !ok {
		return 2
	}
	set := map[string]bool{}
	a.fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if !slices.ContainsFunc([]string{"add-role", "remove-role", "add-purpose", "remove-purpose", "kind", "expires", "review-by", "approved-by"},
		func(n string) bool { return set[n] }) {
		fmt.Fprintf(a.stderr, "portcullis %s: nothing to change: give --add-role, --remove-role, --kind, --expires, --review-by, --approved-by, --add-purpose or --remove-purpose\n", a.name)
		return 2
	}
	for _, r := range addRoles {
		a.checkToken("--add-role", r)
	}
	for _, r := range removeRoles {
		a.checkToken("--remove-role", r)
	}
	for _, p := range removePurposes {
		a.checkToken("--remove-purpose", p)
	}
	if set["kind"] {
		a.checkKind("--kind", *kind)
	}
	added := a.grants("--add-purpose", addPurposes, *approvedBy)
	exp := a.future("--expires", *expires, true)
	rev := a.future("--review-by", *reviewBy, true)
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	ch := memberChange{AddRoles: addRoles, RemoveRoles: removeRoles, AddPurposes: added, RemovePurposes: removePurposes}
	if set["kind"] {
		ch.Kind = kind
	}
	if set["expires"] {
		ch.ExpiresAt = &exp
	}
	if set["review-by"] {
		ch.ReviewBy = &rev
	}
	if set["approved-by"] {
		ch.ApprovedBy = approvedBy
	}
	out, err := a.be.Change(a.ctx, org, user, ch, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(out, func(w io.Writer) { printMembers(w, []store.Membership{*out}) })
}

func adminMemberRevoke(a *adminRun) int {
	org, user, ok := a.orgUser(a.userFlags())
	if !ok {
		return 2
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	// Read first only to tell the operator whether anything changed (Revoke records nothing for
	// a membership already revoked).
	before, err := a.be.Membership(a.ctx, org, user)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return a.fail(err)
	}
	out, err := a.be.Revoke(a.ctx, org, user, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(out, func(w io.Writer) {
		note := ""
		if before != nil && before.Status == store.MembershipRevoked {
			note = " (it already was; nothing recorded)"
		}
		fmt.Fprintf(w, "membership %s/%s: revoked%s\n", out.Org, out.User, note)
	})
}

func adminMemberShow(a *adminRun) int {
	org, user, ok := a.orgUser(a.userFlags())
	if !ok {
		return 2
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	m, err := a.be.Membership(a.ctx, org, user)
	if err != nil {
		return a.fail(err)
	}
	return a.output(m, func(w io.Writer) { printMembers(w, []store.Membership{*m}) })
}

func adminMemberList(a *adminRun) int {
	if !a.parse("ORG") {
		return 2
	}
	org := a.pos[0]
	if a.checkOrgID("ORG", org); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	ms, err := a.be.Memberships(a.ctx, org)
	if err != nil {
		return a.fail(err)
	}
	if ms == nil {
		ms = []store.Membership{}
	}
	return a.output(ms, func(w io.Writer) { printMembers(w, ms) })
}

// offboardResult is what `person offboard --json` prints.
type offboardResult struct {
	User string `json:"user"`
	// Orgs are the organisations whose membership was revoked, sorted.
	Orgs          []string `json:"orgs"`
	SessionsEnded int      `json:"sessions_ended"`
}

func adminPersonOffboard(a *adminRun) int {
	iss, sub := a.userFlags()
	if !a.parse("USER?") {
		return 2
	}
	user := a.userKey(a.pos[0], *iss, *sub)
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	// The business event: memberships, requests, invitations and tokens in one change, then
	// the sessions (a session the person opens in between finds no membership).
	out, err := a.be.Apply(a.ctx, store.BusinessEvent{Event: store.EventOffboarded, User: user}, a.reason, false)
	if err != nil {
		return a.fail(err)
	}
	res := offboardResult{User: user, Orgs: []string{}, SessionsEnded: out.SessionsEnded}
	for _, c := range out.Changes {
		if c.Type == audit.MembershipRevoked {
			res.Orgs = append(res.Orgs, c.Org)
		}
	}
	n := res.SessionsEnded
	return a.output(res, func(w io.Writer) {
		fmt.Fprintf(w, "offboarded %s: memberships revoked in %s; %d session(s) ended\n", user, joinOrDash(res.Orgs), n)
	})
}

func adminReviewDue(a *adminRun) int {
	within := a.fs.String("within", "0", "also list reviews due within this duration from now (e.g. 30d)")
	if !a.parse() {
		return 2
	}
	d, err := parseDuration(*within)
	if err != nil {
		a.bad("--within", "%q: %v", *within, err)
	} else if d < 0 {
		a.bad("--within", "%q: must not be negative", *within)
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	ms, err := a.be.ReviewDue(a.ctx, a.now, d)
	if err != nil {
		return a.fail(err)
	}
	if ms == nil {
		ms = []store.Membership{}
	}
	return a.output(ms, func(w io.Writer) {
		if len(ms) == 0 {
			fmt.Fprintf(w, "no reviews due before %s\n", when(a.now.Add(d)))
			return
		}
		printMembers(w, ms)
	})
}

// printMembers prints memberships as a table.
func printMembers(w io.Writer, ms []store.Membership) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORG\tUSER\tKIND\tSTATUS\tROLES\tPURPOSES\tEXPIRES\tREVIEW BY\tAPPROVED BY")
	for _, m := range ms {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Org, m.User, m.Kind, m.Status,
			joinOrDash(m.Roles), purposeList(m.Grants), when(m.ExpiresAt), when(m.ReviewBy), orDash(m.ApprovedBy))
	}
	tw.Flush()
}

// purposeList formats grants as "purpose[<until],…".
func purposeList(gs []store.Grant) string {
	parts := make([]string, len(gs))
	for i, g := range gs {
		parts[i] = g.Purpose
		if !g.ExpiresAt.IsZero() {
			parts[i] += "<" + g.ExpiresAt.UTC().Format(time.RFC3339)
		}
	}
	return joinOrDash(parts)
}

// adminMemberImport invites the rows of a CSV file (a portal's existing users) in one change.
// The header names the columns: email and kind are required; roles (separated by spaces or
// ";"), expires, review_by and until (RFC 3339 or a duration from now) are optional.
func adminMemberImport(a *adminRun) int {
	if !a.parse("ORG", "FILE") {
		return 2
	}
	org, file := a.pos[0], a.pos[1]
	a.checkOrgID("ORG", org)
	invs := a.importRows(file, org)
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	out, err := a.be.ImportInvitations(a.ctx, org, invs, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(out, func(w io.Writer) {
		fmt.Fprintf(w, "invited %d address(es) to %s in one change; each binds at its first sign-in with that verified address\n", len(out), org)
	})
}

// importRows reads the invitations of a CSV file, recording every problem with its line.
func (a *adminRun) importRows(file, org string) []store.Invitation {
	f, err := os.Open(file)
	if err != nil {
		a.bad("FILE", "%v", err)
		return nil
	}
	defer f.Close()
	r := csv.NewReader(f)
	r.TrimLeadingSpace = true
	rows, err := r.ReadAll()
	if err != nil {
		a.bad("FILE", "%s: %v", file, err)
		return nil
	}
	if len(rows) < 2 {
		a.bad("FILE", "%s: want a header line (email,kind[,roles,expires,review_by,until]) and at least one row", file)
		return nil
	}
	col := map[string]int{}
	for i, h := range rows[0] {
		col[strings.ToLower(strings.TrimSpace(h))] = i
	}
	for _, need := range []string{"email", "kind"} {
		if _, ok := col[need]; !ok {
			a.bad("FILE", "%s: the header has no %s column", file, need)
			return nil
		}
	}
	get := func(row []string, name string) string {
		if i, ok := col[name]; ok && i < len(row) {
			return strings.TrimSpace(row[i])
		}
		return ""
	}
	var out []store.Invitation
	for n, row := range rows[1:] {
		where := fmt.Sprintf("%s line %d", file, n+2)
		inv := store.Invitation{Org: org, Email: get(row, "email"), Kind: get(row, "kind")}
		if _, err := mail.ParseAddress(inv.Email); err != nil {
			a.bad("FILE", "%s: email %q: want an email address", where, inv.Email)
		}
		a.checkKind(where+": kind", inv.Kind)
		for _, role := range strings.FieldsFunc(get(row, "roles"), func(r rune) bool { return r == ' ' || r == ';' }) {
			a.checkToken(where+": roles", role)
			inv.Roles = append(inv.Roles, role)
		}
		inv.ExpiresAt = a.future(where+": expires", get(row, "expires"), false)
		inv.ReviewBy = a.future(where+": review_by", get(row, "review_by"), false)
		inv.Until = a.future(where+": until", get(row, "until"), false)
		out = append(out, inv)
	}
	return out
}
