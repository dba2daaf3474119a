package main

// `portcullis admin`: the operator's command line over the records in Redis (organisations,
// domains, memberships, invitations, the audit stream).
//
// Every change goes through store.Orgs, the one change path that writes the record, its audit
// event (actor, reason, before/after) and the cache invalidation in one transaction; this file
// only parses, validates and prints. Exit codes: 0 done, 1 refused or failed (a bad flag value,
// a missing --reason, an unknown org, Redis down: the message names the cause), 2 usage (unknown
// command or flag, wrong number of arguments).

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/syntax"
	"github.com/portcullis-proxy/portcullis/providerset"
	"github.com/portcullis-proxy/portcullis/store"
)

const adminUsage = `Usage: portcullis admin <group> <command> [arguments] [flags]

Organisations:
  org create ID --name NAME [--contact EMAIL]
  org show ID
  org list
  org suspend ID --reason WHY
  org activate ID
  org end ID --reason WHY [--contract-end RFC3339] [--merged-into ORG]
  org providers ID [--provider NAME]... --reason WHY   (none: the shared providers)
  org scim-token ID --name NAME [--lifetime D] --reason WHY   a token for the organisation's directory (SCIM)

Managed identity providers (oidc.managed_providers; organisations list them to trust them):
  provider list
  provider put NAME --file PROVIDER.json --reason WHY   add or replace (secrets by reference only)
  provider delete NAME --reason WHY                     one that no organisation lists

Email domains of an organisation:
  domain add ORG DOMAIN
  domain verify ORG DOMAIN
  domain pending ORG DOMAIN
  domain lapse ORG DOMAIN --reason WHY

Memberships (USER is the person's key "issuer|subject", or --issuer ISS --subject SUB):
  member grant ORG (USER | --email ADDRESS) --kind KIND [--role R]... [--purpose P:REASON[:EXPIRES]]...
                        [--expires T] [--review-by T] [--approved-by WHO]
  member invite ORG EMAIL --kind KIND [same flags as grant] [--until T]
  member invitations ORG              invitations waiting for their first sign-in
  member import ORG FILE.csv --reason WHY    invite a portal's existing users (email,kind,roles) at once
  member withdraw ORG EMAIL --reason WHY     take an invitation back
  member change ORG USER [--add-role R]... [--remove-role R]... [--kind KIND]
                         [--expires T|never] [--review-by T|never] [--approved-by WHO]
                         [--add-purpose P:REASON[:EXPIRES]]... [--remove-purpose P]...
  member revoke ORG USER --reason WHY
  member show ORG USER
  member list ORG

People and reviews:
  person offboard USER --reason WHY   revoke every membership and end every session
  person email USER EMAIL --reason WHY       the recovery guard learns whose address it is
  person username USER NAME --reason WHY     ... or whose portal username (kind: username)
  review due [--within DURATION]      memberships whose review is due
  recovery reset ROUTE --email ADDRESS --reason WHY   clear a recovery rate limit (or --username)

Business events (one change each, with one parent audit event; --dry-run lists every change
and makes none; the configuration's lifecycle policy applies):
  event contract-renewed ORG --until T --reason WHY
  event contract-ended ORG --reason WHY
  event merged-into ORG INTO --reason WHY      memberships become requests in INTO
  event role-changed ORG USER [--role R]... --reason WHY
  event offboarded USER [--email E]... --reason WHY   also ends every session
  event domain-lapsed ORG DOMAIN --reason WHY
  event support-moved ORG FROM TO [--person USER]... --reason WHY   FROM's access ends,
                                               TO's people are asked for

Audit stream:
  audit tail [--follow] [--since ID] [--count N]

Machine identities (integrations of an organisation, each answered for by a sponsor who holds a
live membership there) and their API keys (shown once; "Authorization: Bearer <key>"):
  machine create ORG ID --name NAME [--sponsor USER] [--role R]... --expires T --reason WHY
  machine list ORG
  machine revoke ORG ID --reason WHY           its membership and every key end
  machine handover ORG ID --sponsor USER --reason WHY   another person answers for it; its
                                               keys are revoked
  machine bind ORG ID --issuer URL --subject SUB --reason WHY    its client-credentials tokens
                                               from that issuer (client_jwt) are the machine
  machine unbind ORG ID --issuer URL --subject SUB --reason WHY
  key create ORG MACHINE [--expires T] --reason WHY
  key rotate ORG MACHINE KEY [--overlap 1h] [--expires T] --reason WHY
  key revoke ORG MACHINE KEY --reason WHY

Admin API tokens (the API itself makes the later ones):
  token create --name NAME --owner WHO [--operator] [--org ORG] [--read-only] [--lifetime 90d]
  token list
  token revoke ID --reason WHY

Flags of every command, before or after it: --server URL (or PORTCULLIS_ADMIN_SERVER: the admin
API), --token-file FILE (or PORTCULLIS_ADMIN_TOKEN), --ca-file FILE, --insecure-skip-verify (a
loopback server only), --json (machine-readable output); changes also take --reason WHY.
--break-glass writes to Redis directly with --config FILE (default portcullis.yaml) and
--actor WHO (default $USER, else "admin"): for the first operator token and API outages.
Times T are RFC 3339 (2027-01-31T00:00:00Z) or a duration from now (90m, 12h, 30d).

Run "portcullis admin <group> help" for a group's commands, and
"portcullis admin <group> <command> -h" for a command's flags.
`

// cmdAdmin runs `portcullis admin …`.
func cmdAdmin(args []string, stdout, stderr io.Writer) int {
	return runAdmin(context.Background(), args, stdout, stderr)
}

// adminCommand is one `portcullis admin GROUP NAME` command.
type adminCommand struct {
	synopsis string // arguments and flags, after "portcullis admin GROUP NAME"
	// change: the command writes (takes --reason); reasonRequired: --reason must be given.
	change, reasonRequired bool
	run                    func(a *adminRun) int
}

// adminCommands maps "group name" to its command.
var adminCommands = map[string]adminCommand{
	"org create":     {"ID --name NAME [--contact EMAIL]", true, false, adminOrgCreate},
	"org show":       {"ID", false, false, adminOrgShow},
	"org list":       {"", false, false, adminOrgList},
	"org suspend":    {"ID --reason WHY", true, true, adminOrgSuspend},
	"org activate":   {"ID", true, false, adminOrgActivate},
	"org end":        {"ID --reason WHY [--contract-end RFC3339] [--merged-into ORG]", true, true, adminOrgEnd},
	"org providers":  {"ID [--provider NAME]... --reason WHY", true, true, adminOrgProviders},
	"org scim-token": {"ID --name NAME [--lifetime D] --reason WHY", true, true, adminOrgSCIMToken},

	"provider list":   {"", false, false, adminProviderList},
	"provider put":    {"NAME --file PROVIDER.json --reason WHY", true, true, adminProviderPut},
	"provider delete": {"NAME --reason WHY", true, true, adminProviderDelete},

	"domain add":     {"ORG DOMAIN", true, false, adminDomainStatus("")},
	"domain verify":  {"ORG DOMAIN", true, false, adminDomainStatus(store.DomainVerified)},
	"domain pending": {"ORG DOMAIN", true, false, adminDomainStatus(store.DomainPending)},
	"domain lapse":   {"ORG DOMAIN --reason WHY", true, true, adminDomainStatus(store.DomainLapsed)},

	"member grant":       {"ORG USER --kind KIND [flags]", true, false, adminMemberGrant},
	"member invite":      {"ORG EMAIL --kind KIND [flags]", true, false, adminMemberInvite},
	"member invitations": {"ORG", false, false, adminMemberInvitations},
	"member import":      {"ORG FILE.csv --reason WHY", true, true, adminMemberImport},
	"member withdraw":    {"ORG EMAIL --reason WHY", true, true, adminMemberWithdraw},
	"member change":      {"ORG USER [flags]", true, false, adminMemberChange},
	"member revoke":      {"ORG USER --reason WHY", true, true, adminMemberRevoke},
	"member show":        {"ORG USER", false, false, adminMemberShow},
	"member list":        {"ORG", false, false, adminMemberList},

	"person offboard": {"USER --reason WHY", true, true, adminPersonOffboard},
	"person email":    {"USER EMAIL --reason WHY", true, true, adminPersonEmail},
	"person username": {"USER USERNAME --reason WHY", true, true, adminPersonUsername},
	"review due":      {"[--within DURATION]", false, false, adminReviewDue},
	"recovery reset":  {"ROUTE (--email ADDRESS | --username NAME) --reason WHY", true, true, adminRecoveryReset},

	"event contract-renewed": {"ORG --until T --reason WHY [--dry-run]", true, true, adminEvent(store.EventContractRenewed)},
	"event contract-ended":   {"ORG --reason WHY [--dry-run]", true, true, adminEvent(store.EventContractEnded)},
	"event merged-into":      {"ORG INTO --reason WHY [--dry-run]", true, true, adminEvent(store.EventMergedInto)},
	"event role-changed":     {"ORG USER [--role R]... --reason WHY [--dry-run]", true, true, adminEvent(store.EventRoleChanged)},
	"event offboarded":       {"USER [--email E]... --reason WHY [--dry-run]", true, true, adminEvent(store.EventOffboarded)},
	"event domain-lapsed":    {"ORG DOMAIN --reason WHY [--dry-run]", true, true, adminEvent(store.EventDomainLapsed)},
	"event support-moved":    {"ORG FROM TO [--person USER]... [--role R]... [--kind KIND] --reason WHY [--dry-run]", true, true, adminEvent(store.EventSupportMoved)},
	"audit tail":             {"[--follow] [--since ID] [--count N]", false, false, adminAuditTail},

	"machine create":   {"ORG ID --name NAME [--sponsor USER] [--role R]... --expires T --reason WHY", true, true, adminMachineCreate},
	"machine list":     {"ORG", false, false, adminMachineList},
	"machine revoke":   {"ORG ID --reason WHY", true, true, adminMachineRevoke},
	"machine handover": {"ORG ID --sponsor USER --reason WHY", true, true, adminMachineHandOver},
	"machine bind":     {"ORG ID --issuer URL --subject SUB --reason WHY", true, true, adminMachineBind},
	"machine unbind":   {"ORG ID --issuer URL --subject SUB --reason WHY", true, true, adminMachineUnbind},
	"key create":       {"ORG MACHINE [--expires T] --reason WHY", true, true, adminKeyCreate},
	"key rotate":       {"ORG MACHINE KEY [--overlap 1h] [--expires T] --reason WHY", true, true, adminKeyRotate},
	"key revoke":       {"ORG MACHINE KEY --reason WHY", true, true, adminKeyRevoke},

	"token create": {"--name NAME --owner WHO [--operator] [--org ORG] [--read-only] [--lifetime 90d]", true, false, adminTokenCreate},
	"token list":   {"", false, false, adminTokenList},
	"token revoke": {"ID --reason WHY", true, true, adminTokenRevoke},
}

// runAdmin is cmdAdmin with the context given: `audit tail --follow` runs until ctx ends (or
// SIGINT), which is how tests bound it.
func runAdmin(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	global, args, err := leadingGlobalFlags(args)
	if err != nil {
		fmt.Fprintf(stderr, "portcullis admin: %v\n\n%s", err, adminUsage)
		return 2
	}
	switch {
	case len(args) == 0:
		fmt.Fprint(stderr, adminUsage)
		return 2
	case isHelp(args[0]) && len(args) == 1:
		fmt.Fprint(stdout, adminUsage)
		return 0
	case isHelp(args[0]):
		// "admin help org"
		return groupHelp(args[1], stdout, stderr)
	case len(args) == 1:
		// "admin org": not a command; its group's help, as a usage error.
		groupHelp(args[0], stderr, stderr)
		return 2
	case isHelp(args[1]):
		// "admin org help", "admin org -h"
		return groupHelp(args[0], stdout, stderr)
	}
	name := args[0] + " " + args[1]
	c, ok := adminCommands[name]
	if !ok {
		if _, known := adminGroups()[args[0]]; known {
			fmt.Fprintf(stderr, "portcullis admin: unknown command %q\n\n", name)
			groupHelp(args[0], stderr, stderr)
			return 2
		}
		fmt.Fprintf(stderr, "portcullis admin: unknown command %q\n\n%s", name, adminUsage)
		return 2
	}
	a := &adminRun{ctx: ctx, stdout: stdout, stderr: stderr, name: "admin " + name, cmd: c, args: append(global, args[2:]...)}
	a.fs = flag.NewFlagSet(a.name, flag.ContinueOnError)
	a.fs.SetOutput(stderr)
	a.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: portcullis %s %s\n\nFlags:\n", a.name, c.synopsis)
		a.fs.PrintDefaults()
	}
	a.fs.StringVar(&a.server, "server", os.Getenv("PORTCULLIS_ADMIN_SERVER"), "the admin API, such as https://127.0.0.1:9443 (default $PORTCULLIS_ADMIN_SERVER)")
	a.fs.StringVar(&a.tokenFile, "token-file", "", "a file holding the admin API credential (default: $PORTCULLIS_ADMIN_TOKEN)")
	a.fs.StringVar(&a.caFile, "ca-file", "", "PEM certificates to verify the admin API's TLS certificate with (default: the system's)")
	a.fs.BoolVar(&a.insecure, "insecure-skip-verify", false, "do not verify the TLS certificate of a loopback admin API (a self-signed development one)")
	a.fs.BoolVar(&a.breakGlass, "break-glass", false, "bypass the admin API and write to Redis directly, with --config's redis settings (every change is audited as break-glass)")
	a.fs.StringVar(&a.configPath, "config", "portcullis.yaml", "configuration file, for --break-glass (its redis, audit and lifecycle settings are used)")
	a.fs.StringVar(&a.actor, "actor", "", "with --break-glass: who makes the change, recorded in the audit event (default $USER); through the API the actor is the credential's owner")
	a.fs.BoolVar(&a.json, "json", false, "print machine-readable JSON")
	if c.change {
		help := "why: a justification or ticket id, recorded in the audit event"
		if c.reasonRequired {
			help += " (required)"
		}
		a.fs.StringVar(&a.reason, "reason", "", help)
	}
	return c.run(a)
}

func isHelp(s string) bool { return s == "help" || s == "-h" || s == "--help" || s == "-help" }

// leadingGlobalFlags takes the flags of every command (--config, --actor, --json) from before
// the command ("portcullis admin --config F org create …"), for the command's own parse.
// Another flag there is an error: the command's flags depend on the command.
func leadingGlobalFlags(args []string) (global, rest []string, err error) {
	for len(args) > 0 && strings.HasPrefix(args[0], "-") && !isHelp(args[0]) {
		if args[0] == "--" {
			return global, args[1:], nil
		}
		name, _, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		switch name {
		case "json", "break-glass", "insecure-skip-verify":
			global, args = append(global, args[0]), args[1:]
		case "config", "actor", "server", "token-file", "ca-file":
			if hasValue {
				global, args = append(global, args[0]), args[1:]
				continue
			}
			if len(args) < 2 {
				return nil, nil, fmt.Errorf("flag needs an argument: %s", args[0])
			}
			global, args = append(global, args[0], args[1]), args[2:]
		default:
			return nil, nil, fmt.Errorf("%s must come after the command: only the flags of every command (--server, --token-file, --ca-file, --insecure-skip-verify, --break-glass, --config, --actor, --json) may come before it", args[0])
		}
	}
	return global, args, nil
}

// adminGroups maps each group to its commands' names, in order.
func adminGroups() map[string][]string {
	groups := map[string][]string{}
	for name := range adminCommands {
		g, cmd, _ := strings.Cut(name, " ")
		groups[g] = append(groups[g], cmd)
	}
	for _, cmds := range groups {
		slices.Sort(cmds)
	}
	return groups
}

// groupHelp prints the commands of one group with their synopses.
func groupHelp(group string, stdout, stderr io.Writer) int {
	cmds, ok := adminGroups()[group]
	if !ok {
		fmt.Fprintf(stderr, "portcullis admin: unknown group %q\n\n%s", group, adminUsage)
		return 2
	}
	fmt.Fprintf(stdout, "Usage: portcullis admin %s <command> [arguments] [flags]\n\nCommands:\n", group)
	for _, c := range cmds {
		fmt.Fprintf(stdout, "  %s\n", strings.TrimSpace(group+" "+c+" "+adminCommands[group+" "+c].synopsis))
	}
	fmt.Fprintf(stdout, "\nFlags of every command, before or after it: --server URL (or PORTCULLIS_ADMIN_SERVER), --token-file FILE\n"+
		"(or PORTCULLIS_ADMIN_TOKEN), --ca-file FILE, --insecure-skip-verify (a loopback server only), --json; --break-glass\n"+
		"with --config FILE and --actor WHO writes to Redis directly.\n"+
		"Run \"portcullis admin %s <command> -h\" for a command's flags.\n", group)
	return 0
}

// defaultActor is $USER, else "admin".
func defaultActor() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "admin"
}

// adminRun is one invocation of an admin command: its flags, what it found wrong, and the
// store once opened.
type adminRun struct {
	ctx            context.Context
	stdout, stderr io.Writer
	name           string // "admin org create", the prefix of messages
	cmd            adminCommand
	args           []string // after GROUP NAME, until parse
	fs             *flag.FlagSet

	configPath, actor, reason string
	json                      bool
	// How the records are reached: the admin API (server, with its credential and TLS
	// settings), or break-glass straight to Redis.
	server, tokenFile, caFile string
	insecure, breakGlass      bool

	pos      []string // positional arguments, after parse
	problems []string // flag and argument errors, reported together
	now      time.Time

	// be is the backend once opened: the admin API or, with --break-glass, Redis.
	be adminBackend
}

// parse parses the flags (which may come before, between or after the positional arguments)
// and checks the number of positional arguments against names (their names for the message; a
// name ending in "?" is optional, and a.pos holds "" for it when absent). false means a usage
// error, already reported: exit 2.
func (a *adminRun) parse(names ...string) bool {
	pos, err := parseInterspersed(a.fs, a.args)
	if err != nil {
		return false // flag printed the error and the usage
	}
	required := 0
	for _, n := range names {
		if !strings.HasSuffix(n, "?") {
			required++
		}
	}
	if len(pos) < required || len(pos) > len(names) {
		want := "no arguments"
		if len(names) > 0 {
			want = strings.ReplaceAll(strings.Join(names, " "), "?", " (optional)")
		}
		fmt.Fprintf(a.stderr, "portcullis %s: want %s, got %d argument(s)\n", a.name, want, len(pos))
		a.fs.Usage()
		return false
	}
	for len(pos) < len(names) {
		pos = append(pos, "") // optional arguments not given
	}
	a.pos = pos
	a.now = time.Now().UTC()
	serverFlag := false
	a.fs.Visit(func(f *flag.Flag) { serverFlag = serverFlag || f.Name == "server" })
	switch {
	case a.breakGlass && serverFlag:
		a.bad("--break-glass", "and --server: choose one; --break-glass bypasses the admin API")
	case a.breakGlass:
		a.server = "" // $PORTCULLIS_ADMIN_SERVER set for everyday use does not stand in the way during an outage
	case !a.breakGlass && a.actor != "":
		a.bad("--actor", "is for --break-glass: through the admin API the actor is the credential's owner")
	}
	switch {
	case a.breakGlass:
		if a.actor == "" {
			a.actor = defaultActor()
		}
		if strings.TrimSpace(a.actor) == "" || strings.ContainsFunc(a.actor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			a.bad("--actor", "%q: must name who makes the change (no control characters)", a.actor)
		}
	}
	if a.cmd.reasonRequired && strings.TrimSpace(a.reason) == "" {
		a.bad("--reason", "is required for %s: say why (a sentence or a ticket id)", strings.TrimPrefix(a.name, "admin "))
	}
	return true
}

// parseInterspersed parses fs from args, collecting the arguments that are not flags wherever
// they stand; everything after "--" is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// bad records a problem with flag (or argument) what; all are reported by failed.
func (a *adminRun) bad(what, format string, args ...any) {
	a.problems = append(a.problems, what+" "+fmt.Sprintf(format, args...))
}

// failed prints the problems recorded since the last call and reports whether there was any
// (exit 1).
func (a *adminRun) failed() bool {
	for _, p := range a.problems {
		fmt.Fprintf(a.stderr, "portcullis %s: %s\n", a.name, p)
	}
	n := len(a.problems)
	a.problems = nil
	return n > 0
}

// open loads the configuration and connects the store. false means it failed, reported.
func (a *adminRun) open() bool {
	if !a.breakGlass {
		if a.server == "" {
			fmt.Fprintf(a.stderr, "portcullis %s: portcullis admin works through the admin API: give --server URL (or set PORTCULLIS_ADMIN_SERVER)"+
				" and a credential (--token-file FILE or PORTCULLIS_ADMIN_TOKEN).\nWithout the API (the first operator token, an outage), --break-glass"+
				" writes to Redis directly with --config's settings; it is audited as such.\n", a.name)
			return false
		}
		be, err := newAPIBackend(a.server, a.tokenFile, a.caFile, a.insecure)
		if err != nil {
			fmt.Fprintf(a.stderr, "portcullis %s: %v\n", a.name, err)
			return false
		}
		a.be = be
		return true
	}
	cfg, _, err := config.Load(a.configPath)
	if err != nil {
		fmt.Fprintf(a.stderr, "portcullis %s: cannot use configuration %s:\n", a.name, a.configPath)
		printConfigError(a.stderr, err)
		return false
	}
	if !cfg.Redis.Configured() {
		fmt.Fprintf(a.stderr, "portcullis %s: %s sets no redis.address or redis.sentinel_master: the records live in Redis\n", a.name, a.configPath)
		return false
	}
	st, err := store.New(cfg.Redis)
	if err != nil {
		fmt.Fprintf(a.stderr, "portcullis %s: redis: %v\n", a.name, err)
		return false
	}
	host, _ := os.Hostname()
	via := breakGlassVia(host)
	// Loud on purpose: this bypasses the API's authentication, permissions and policy checks.
	fmt.Fprintf(a.stderr, "portcullis %s: BREAK-GLASS: writing to Redis %s directly as %q, not through the admin API; every change is audited as %q\n",
		a.name, st.Addr(), a.actor, via)
	aud := auditStream(st, cfg.Audit)
	// The providers in force: the file's and the managed ones, read once.
	pset := providerset.New(cfg.OIDC, st, nil)
	rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	err = pset.Reload(rctx)
	cancel()
	if err != nil {
		fmt.Fprintf(a.stderr, "portcullis %s: managed providers: %v\n", a.name, err)
		st.Close()
		return false
	}
	a.be = &storeBackend{st: st, orgs: store.NewOrgs(st, aud).Via(via), audit: aud, policy: authz.CompilePolicy(&cfg.Lifecycle),
		providers: pset.Trust().Load(), pset: pset, actor: a.actor, via: via}
	return true
}

// close closes the backend, if open.
func (a *adminRun) close() {
	if a.be != nil {
		a.be.Close()
	}
}

// fail reports a store error and returns exit code 1.
func (a *adminRun) fail(err error) int {
	msg := err.Error()
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, store.ErrUnavailable):
		msg += " (is Redis running, and are the redis settings of " + a.configPath + " right?)"
	case errors.Is(err, store.ErrConflict):
		msg += " (retry, or check who else is changing it)"
	}
	fmt.Fprintf(a.stderr, "portcullis %s: %s\n", a.name, msg)
	return 1
}

// output prints v as indented JSON with --json, else calls human. It returns exit code 0.
func (a *adminRun) output(v any, human func(w io.Writer)) int {
	if a.json {
		enc := json.NewEncoder(a.stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			fmt.Fprintf(a.stderr, "portcullis %s: encode output: %v\n", a.name, err)
			return 1
		}
		return 0
	}
	human(a.stdout)
	return 0
}

// Argument checks. The store validates too; these name the flag in the message.

// checkOrgID checks an organisation id given as what (an argument or a flag).
func (a *adminRun) checkOrgID(what, id string) {
	if !syntax.OrgID(id) {
		a.bad(what, "%q: want an org id, [a-z0-9-]{1,63}", id)
	}
}

// checkToken checks a role or purpose name.
func (a *adminRun) checkToken(what, s string) {
	if !syntax.Name(s) {
		a.bad(what, "%q: want [a-z0-9_-]{1,64}", s)
	}
}

// checkKind checks a membership kind.
func (a *adminRun) checkKind(what, k string) {
	switch k {
	case store.KindEmployee, store.KindPartner, store.KindReseller, store.KindSupport, store.KindService:
	case "":
		a.bad(what, "is required: employee, partner, reseller, support or service")
	default:
		a.bad(what, "%q: want employee, partner, reseller, support or service", k)
	}
}

// userKey returns the person's key from the positional argument arg (may be "") or from
// --issuer/--subject, recording a problem when neither or both are given or the key is
// malformed.
func (a *adminRun) userKey(arg, issuer, subject string) string {
	switch {
	case arg != "" && (issuer != "" || subject != ""):
		a.bad("USER", "%q: give the user key or --issuer and --subject, not both", arg)
		return ""
	case arg == "" && (issuer == "" || subject == ""):
		if issuer == "" {
			a.bad("--issuer", "is required (or give the user key issuer|subject)")
		}
		if subject == "" {
			a.bad("--subject", "is required (or give the user key issuer|subject)")
		}
		return ""
	case arg == "":
		arg = store.UserKey(issuer, subject)
	}
	iss, sub, ok := strings.Cut(arg, "|")
	switch {
	case !ok || iss == "" || sub == "":
		a.bad("USER", "%q: want a user key issuer|subject (the ID token's iss and sub), e.g. https://idp.example.com|248289761001", arg)
	case len(arg) > 1024 || strings.ContainsFunc(arg, func(r rune) bool { return r < 0x20 || r == 0x7f || r == 0xfffd }):
		a.bad("USER", "%q: control characters or invalid UTF-8, or longer than 1024 bytes", arg)
	}
	return arg
}

// Times and durations.

// parseDuration is time.ParseDuration that also accepts whole days: "30d", "1d12h".
func parseDuration(s string) (time.Duration, error) {
	if days, rest, ok := strings.Cut(s, "d"); ok && days != "" && !strings.ContainsAny(days, ".hmsuµn") {
		n, err := strconv.ParseInt(days, 10, 32)
		if err != nil {
			return 0, fmt.Errorf("bad number of days %q", days)
		}
		d := time.Duration(n) * 24 * time.Hour
		if rest == "" {
			return d, nil
		}
		r, err := time.ParseDuration(rest)
		if err != nil || r < 0 || n < 0 {
			return 0, fmt.Errorf("want a duration such as 90m, 12h, 30d or 1d12h")
		}
		return d + r, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("want a duration such as 90m, 12h, 30d or 1d12h")
	}
	return d, nil
}

// parseWhen reads an RFC 3339 time or a duration from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	d, err := parseDuration(s)
	if err != nil {
		return time.Time{}, errors.New("want an RFC 3339 time (2027-01-31T00:00:00Z) or a duration from now (12h, 30d)")
	}
	return now.Add(d), nil
}

// future reads flag value s (RFC 3339 or duration) as a time that must be after now; "" is the
// zero time. With clearable, "never" is the zero time too.
func (a *adminRun) future(flagName, s string, clearable bool) time.Time {
	if s == "" || clearable && s == "never" {
		return time.Time{}
	}
	t, err := parseWhen(s, a.now)
	if err != nil {
		a.bad(flagName, "%q: %v", s, err)
		return time.Time{}
	}
	if !t.After(a.now) {
		a.bad(flagName, "%q: %s is not in the future", s, t.Format(time.RFC3339))
	}
	return t
}

// parsePurpose reads PURPOSE:REASON[:EXPIRES]. EXPIRES is an RFC 3339 time (which contains
// colons) or a duration; it is recognised as the longest suffix after a colon that parses.
func (a *adminRun) parsePurpose(flagName, s string) (store.Grant, bool) {
	purpose, rest, _ := strings.Cut(s, ":")
	g := store.Grant{Purpose: purpose, Reason: rest}
	for i := 0; i < len(rest); i++ {
		if rest[i] != ':' {
			continue
		}
		if t, err := parseWhen(rest[i+1:], a.now); err == nil {
			g.Reason, g.ExpiresAt = rest[:i], t
			if !t.After(a.now) {
				a.bad(flagName, "%q: expiry %s is not in the future", s, t.Format(time.RFC3339))
				return g, false
			}
			break
		}
	}
	ok := true
	if !syntax.Name(purpose) {
		a.bad(flagName, "%q: purpose %q: want [a-z0-9_-]{1,64}, as PURPOSE:REASON[:EXPIRES]", s, purpose)
		ok = false
	}
	if strings.TrimSpace(g.Reason) == "" {
		a.bad(flagName, "%q: a purpose needs its reason or ticket: PURPOSE:REASON[:EXPIRES]", s)
		ok = false
	}
	return g, ok
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

var _ flag.Value = (*stringList)(nil)

// Human output helpers.

// when formats a time for tables: RFC 3339 UTC, "-" for zero.
func when(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// orDash returns s, or "-" when empty.
func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// joinOrDash joins a list with commas, "-" when empty.
func joinOrDash(l []string) string {
	return orDash(strings.Join(l, ","))
}
