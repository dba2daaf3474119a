package main

// `portcullis admin org …` and `portcullis admin domain …`.

import (
	"errors"
	"fmt"
	"io"
	"net/mail"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/portcullis-proxy/portcullis/scim"
	"github.com/portcullis-proxy/portcullis/store"
)

func adminOrgCreate(a *adminRun) int {
	name := a.fs.String("name", "", "display name (required)")
	contact := a.fs.String("contact", "", "whom members ask for access, shown on denial pages (an email address)")
	contractEnd := a.fs.String("contract-end", "", "when the contract ends: RFC 3339 or a duration from now")
	if !a.parse("ID") {
		return 2
	}
	org := store.Org{ID: a.pos[0], Name: strings.TrimSpace(*name), Contact: *contact}
	a.checkOrgID("ID", org.ID)
	if org.Name == "" {
		a.bad("--name", "is required")
	}
	if *contact != "" {
		if _, err := mail.ParseAddress(*contact); err != nil {
			a.bad("--contact", "%q: want an email address", *contact)
		}
	}
	if *contractEnd != "" {
		t, err := parseWhen(*contractEnd, a.now)
		if err != nil {
			a.bad("--contract-end", "%q: %v", *contractEnd, err)
		}
		org.ContractEnd = t
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	o, err := a.be.CreateOrg(a.ctx, org, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(o, func(w io.Writer) { fmt.Fprintf(w, "created org %s %q (%s)\n", o.ID, o.Name, o.Status) })
}

func adminOrgShow(a *adminRun) int {
	if !a.parse("ID") {
		return 2
	}
	if a.checkOrgID("ID", a.pos[0]); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	o, err := a.be.Org(a.ctx, a.pos[0])
	if err != nil {
		return a.fail(err)
	}
	return a.output(o, func(w io.Writer) { printOrg(w, o) })
}

func adminOrgList(a *adminRun) int {
	if !a.parse() {
		return 2
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	orgs, err := a.be.Orgs(a.ctx)
	if err != nil {
		return a.fail(err)
	}
	if orgs == nil {
		orgs = []store.Org{}
	}
	return a.output(orgs, func(w io.Writer) {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tNAME\tSTATUS\tCONTRACT END\tDOMAINS")
		for _, o := range orgs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.ID, o.Name, orgStatus(&o), when(o.ContractEnd), domainList(o.Domains))
		}
		tw.Flush()
	})
}

func adminOrgSuspend(a *adminRun) int { return adminOrgSetStatus(a, store.OrgSuspended) }

func adminOrgActivate(a *adminRun) int { return adminOrgSetStatus(a, store.OrgActive) }

func adminOrgEnd(a *adminRun) int { return adminOrgSetStatus(a, store.OrgEnded) }

// adminOrgSetStatus serves suspend, activate and end (which alone takes --contract-end and
// --merged-into).
func adminOrgSetStatus(a *adminRun, status string) int {
	var contractEnd, mergedInto *string
	if status == store.OrgEnded {
		contractEnd = a.fs.String("contract-end", "", "when the contract ends or ended: RFC 3339 or a duration from now (default: unchanged)")
		mergedInto = a.fs.String("merged-into", "", "the org that absorbed this one")
	}
	if !a.parse("ID") {
		return 2
	}
	id := a.pos[0]
	a.checkOrgID("ID", id)
	st := store.OrgStatus{Status: status}
	if contractEnd != nil && *contractEnd != "" {
		t, err := parseWhen(*contractEnd, a.now)
		if err != nil {
			a.bad("--contract-end", "%q: %v", *contractEnd, err)
		}
		st.ContractEnd = t
	}
	if mergedInto != nil && *mergedInto != "" {
		st.MergedInto = *mergedInto
		if a.checkOrgID("--merged-into", st.MergedInto); st.MergedInto == id {
			a.bad("--merged-into", "%q: an org cannot be merged into itself", st.MergedInto)
		}
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	o, err := a.be.SetOrgStatus(a.ctx, id, st, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(o, func(w io.Writer) {
		fmt.Fprintf(w, "org %s: %s", o.ID, o.Status)
		if !o.ContractEnd.IsZero() {
			fmt.Fprintf(w, ", contract end %s", when(o.ContractEnd))
		}
		if o.MergedInto != "" {
			fmt.Fprintf(w, ", merged into %s", o.MergedInto)
		}
		fmt.Fprintln(w)
	})
}

// adminOrgProviders replaces the identity providers an organisation trusts.
func adminOrgProviders(a *adminRun) int {
	var names stringList
	a.fs.Var(&names, "provider", "a configured identity provider's name, \"default\" for oidc's own (repeatable; none: the shared providers)")
	if !a.parse("ID") {
		return 2
	}
	id := a.pos[0]
	if a.checkOrgID("ID", id); a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	o, err := a.be.SetProviders(a.ctx, id, names, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(o, func(w io.Writer) {
		fmt.Fprintf(w, "org %s: providers %s\n", o.ID, providerList(o.Providers))
	})
}

// adminOrgSCIMToken makes the token an organisation's directory provisions it with at
// /scim/v2/ORG (the admin API's listener), shown once.
func adminOrgSCIMToken(a *adminRun) int {
	name := a.fs.String("name", "", "what the token is for, such as \"Entra ID provisioning\" (required)")
	lifetime := a.fs.String("lifetime", "180d", "how long it lives, at most 366d")
	if !a.parse("ID") {
		return 2
	}
	id := a.pos[0]
	a.checkOrgID("ID", id)
	life := a.tokenLifetime(*lifetime)
	if strings.TrimSpace(*name) == "" {
		a.bad("--name", "is required")
	}
	if a.failed() || !a.open() {
		return 1
	}
	defer a.close()
	secret, t, err := a.be.CreateSCIMToken(a.ctx, id, *name, life, a.reason)
	if err != nil {
		return a.fail(err)
	}
	return a.output(newToken(secret, t), func(w io.Writer) {
		fmt.Fprintf(w, "SCIM token %s for %s's directory (expires %s); it is shown only now:\n%s\n", t.ID, t.Org, t.Expires.Format(time.RFC3339), secret)
		fmt.Fprintf(w, "the directory's base URL: https://<admin_api.listen>%s%s (revoke: POST /api/v1/orgs/%s/scim/tokens/%s/revoke, or an operator's token revoke %s)\n",
			scim.PathPrefix, t.Org, t.Org, t.ID, t.ID)
	})
}

// providerList shows an organisation's providers, or that it trusts the shared ones.
func providerList(p []string) string {
	if len(p) == 0 {
		return "shared (none listed)"
	}
	return strings.Join(p, ", ")
}

// adminDomainStatus returns the command that adds a domain (status "") or sets its status.
func adminDomainStatus(status string) func(a *adminRun) int {
	return func(a *adminRun) int {
		if !a.parse("ORG", "DOMAIN") {
			return 2
		}
		id, domain := a.pos[0], a.pos[1]
		if a.checkOrgID("ORG", id); a.failed() || !a.open() {
			return 1
		}
		defer a.close()
		o, err := a.be.SetDomain(a.ctx, id, domain, status, a.reason)
		if errors.Is(err, store.ErrInvalid) && !errors.Is(err, store.ErrNotFound) {
			a.bad("DOMAIN", "%q: want a domain name such as example.com (IDNs as xn-- A-labels)", domain)
			a.failed()
			return 1
		}
		if err != nil {
			return a.fail(err)
		}
		return a.output(o, func(w io.Writer) {
			d := strings.TrimSuffix(strings.ToLower(domain), ".")
			for _, x := range o.Domains {
				if x.Name == d {
					fmt.Fprintf(w, "org %s: domain %s %s\n", o.ID, x.Name, x.Status)
				}
			}
		})
	}
}

// printOrg prints one organisation as a block of fields.
func printOrg(w io.Writer, o *store.Org) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "org\t%s\n", o.ID)
	fmt.Fprintf(tw, "name\t%s\n", o.Name)
	fmt.Fprintf(tw, "status\t%s\n", orgStatus(o))
	fmt.Fprintf(tw, "contract end\t%s\n", when(o.ContractEnd))
	fmt.Fprintf(tw, "merged into\t%s\n", orDash(o.MergedInto))
	fmt.Fprintf(tw, "contact\t%s\n", orDash(o.Contact))
	fmt.Fprintf(tw, "providers\t%s\n", providerList(o.Providers))
	if len(o.Domains) == 0 {
		fmt.Fprintf(tw, "domains\t-\n")
	}
	for i, d := range o.Domains {
		label := ""
		if i == 0 {
			label = "domains"
		}
		fmt.Fprintf(tw, "%s\t%s %s since %s\n", label, d.Name, d.Status, when(d.Since))
	}
	fmt.Fprintf(tw, "updated\t%s\n", when(o.Updated))
	tw.Flush()
}

// orgStatus is the stored status, with "merged" noted.
func orgStatus(o *store.Org) string {
	if o.MergedInto != "" {
		return o.Status + " (merged into " + o.MergedInto + ")"
	}
	return o.Status
}

// domainList formats domains as "name(status),…".
func domainList(ds []store.Domain) string {
	parts := make([]string, len(ds))
	for i, d := range ds {
		parts[i] = d.Name + "(" + d.Status + ")"
	}
	return joinOrDash(parts)
}
