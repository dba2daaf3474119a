package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/store"
)

// apiBackend is `portcullis admin` as a client of the admin API: every command is one or two
// calls, made with the operator's or person's credential, so the actor recorded is the
// credential's owner and the server's policy and permissions apply exactly as for any caller.
type apiBackend struct {
	base  string // https://host:port/api/v1
	token string
	hc    *http.Client
}

// apiError is the API's refusal, as the command reports it.
type apiError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("the admin API answered %d", e.Status)
	}
	return e.Message + " (" + e.Code + ")"
}

// newAPIBackend checks the server address and the credential and returns the client. The
// token comes from tokenFile, else $PORTCULLIS_ADMIN_TOKEN. TLS is verified against the
// system's roots, or caFile; insecure skips the verification, and only for a loopback server.
func newAPIBackend(server, tokenFile, caFile string, insecure bool) (*apiBackend, error) {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery {
		return nil, fmt.Errorf("--server %q: want the admin API's address, such as https://127.0.0.1:9443", server)
	}
	token := os.Getenv("PORTCULLIS_ADMIN_TOKEN")
	if tokenFile != "" {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	if token == "" {
		return nil, errors.New("no credential: give --token-file FILE or set PORTCULLIS_ADMIN_TOKEN (an admin API token, or an operator JWT)")
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--ca-file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", caFile)
		}
		tc.RootCAs = pool
	}
	if insecure {
		// An IP literal only: a name, even "localhost", goes through the resolver.
		if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
			return nil, fmt.Errorf("--insecure-skip-verify is for a server on this machine only, named by a loopback address such as 127.0.0.1, not %s", u.Hostname())
		}
		tc.InsecureSkipVerify = true //nolint:gosec // loopback only, asked for explicitly
	}
	return &apiBackend{base: strings.TrimSuffix(u.String(), "/") + "/api/v1", token: token,
		hc: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, Proxy: http.ProxyFromEnvironment},
			// Never follow a redirect: the credential would go along (net/http keeps it for
			// the same host on any port or scheme). The API does not redirect.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (b *apiBackend) Close() { b.hc.CloseIdleConnections() }

// call sends in (nil: no body) and decodes the answer into out (nil: discarded).
func (b *apiBackend) call(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		j, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin API %s: %w", b.base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin API %s: %w", b.base, err)
	}
	if resp.StatusCode/100 != 2 {
		e := &apiError{Status: resp.StatusCode}
		_ = json.Unmarshal(raw, e)
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("admin API %s %s: unexpected answer: %w", method, path, err)
	}
	return nil
}

type items[T any] struct {
	Items []T `json:"items"`
}

func orgPath(org string) string { return "/orgs/" + url.PathEscape(org) }

func (b *apiBackend) CreateOrg(ctx context.Context, org store.Org, reason string) (*store.Org, error) {
	var out store.Org
	in := map[string]any{"id": org.ID, "name": org.Name, "contact": org.Contact, "reason": reason}
	if !org.ContractEnd.IsZero() {
		in["contract_end"] = org.ContractEnd
	}
	return &out, b.call(ctx, "POST", "/orgs", in, &out)
}

func (b *apiBackend) Org(ctx context.Context, id string) (*store.Org, error) {
	var out store.Org
	return &out, b.call(ctx, "GET", orgPath(id), nil, &out)
}

func (b *apiBackend) Orgs(ctx context.Context) ([]store.Org, error) {
	var out items[store.Org]
	return out.Items, b.call(ctx, "GET", "/orgs", nil, &out)
}

func (b *apiBackend) SetOrgStatus(ctx context.Context, id string, st store.OrgStatus, reason string) (*store.Org, error) {
	var out store.Org
	in := map[string]any{"status": st.Status, "merged_into": st.MergedInto, "reason": reason}
	if !st.ContractEnd.IsZero() {
		in["contract_end"] = st.ContractEnd
	}
	return &out, b.call(ctx, "POST", orgPath(id)+"/status", in, &out)
}

func (b *apiBackend) SetDomain(ctx context.Context, org, domain, status, reason string) (*store.Org, error) {
	var out store.Org
	return &out, b.call(ctx, "POST", orgPath(org)+"/domains", map[string]any{"domain": domain, "status": status, "reason": reason}, &out)
}

func (b *apiBackend) SetProviders(ctx context.Context, org string, providers []string, reason string) (*store.Org, error) {
	var out store.Org
	if providers == nil {
		providers = []string{}
	}
	return &out, b.call(ctx, "PUT", orgPath(org)+"/providers", map[string]any{"providers": providers, "reason": reason}, &out)
}

// purposesBody is purpose grants as the API takes them (nil for none).
func purposesBody(grants []store.Grant) []map[string]any {
	var ps []map[string]any
	for _, g := range grants {
		p := map[string]any{"purpose": g.Purpose, "reason": g.Reason}
		if !g.ExpiresAt.IsZero() {
			p["expires_at"] = g.ExpiresAt
		}
		ps = append(ps, p)
	}
	return ps
}

// accessBody is the access part of a grant or an invitation, as the API takes it.
func accessBody(kind string, roles []string, grants []store.Grant, expires, reviewBy time.Time, ticket, reason string) map[string]any {
	in := map[string]any{"kind": kind, "roles": roles, "ticket": ticket, "reason": reason}
	if ps := purposesBody(grants); ps != nil {
		in["purposes"] = ps
	}
	if !expires.IsZero() {
		in["expires_at"] = expires
	}
	if !reviewBy.IsZero() {
		in["review_by"] = reviewBy
	}
	return in
}

func (b *apiBackend) Grant(ctx context.Context, m store.Membership, ticket, reason string) (*store.Membership, error) {
	in := accessBody(m.Kind, m.Roles, m.Grants, m.ExpiresAt, m.ReviewBy, ticket, reason)
	if m.User != "" {
		in["user"] = m.User
	} else {
		in["email"] = m.Email
	}
	var out store.Membership
	return &out, b.call(ctx, "POST", orgPath(m.Org)+"/members", in, &out)
}

func (b *apiBackend) Invite(ctx context.Context, inv store.Invitation, reason string) (*store.Invitation, error) {
	in := accessBody(inv.Kind, inv.Roles, inv.Grants, inv.ExpiresAt, inv.ReviewBy, "", reason)
	in["email"] = inv.Email
	if !inv.Until.IsZero() {
		in["until"] = inv.Until
	}
	var out store.Invitation
	return &out, b.call(ctx, "POST", orgPath(inv.Org)+"/invitations", in, &out)
}

func (b *apiBackend) Invitations(ctx context.Context, org string) ([]store.Invitation, error) {
	var out items[store.Invitation]
	return out.Items, b.call(ctx, "GET", orgPath(org)+"/invitations", nil, &out)
}

func (b *apiBackend) ImportInvitations(ctx context.Context, org string, invs []store.Invitation, reason string) ([]store.Invitation, error) {
	rows := make([]map[string]any, 0, len(invs))
	for _, inv := range invs {
		row := accessBody(inv.Kind, inv.Roles, inv.Grants, inv.ExpiresAt, inv.ReviewBy, "", "")
		delete(row, "reason")
		row["email"] = inv.Email
		if !inv.Until.IsZero() {
			row["until"] = inv.Until
		}
		rows = append(rows, row)
	}
	var out struct {
		Invitations []store.Invitation `json:"invitations"`
	}
	return out.Invitations, b.call(ctx, "POST", orgPath(org)+"/invitations/import", map[string]any{"invitations": rows, "reason": reason}, &out)
}

func (b *apiBackend) Withdraw(ctx context.Context, org, email, reason string) (*store.Invitation, error) {
	var out store.Invitation
	return &out, b.call(ctx, "POST", orgPath(org)+"/invitations/withdraw", map[string]any{"email": email, "reason": reason}, &out)
}

func (b *apiBackend) Change(ctx context.Context, org, user string, ch memberChange, reason string) (*store.Membership, error) {
	if ch.ApprovedBy != nil {
		return nil, errors.New("--approved-by: through the admin API the approver is the credential's owner")
	}
	in := map[string]any{"user": user, "add_roles": ch.AddRoles, "remove_roles": ch.RemoveRoles, "remove_purposes": ch.RemovePurposes, "reason": reason}
	in["add_purposes"] = purposesBody(ch.AddPurposes)
	if ch.Kind != nil {
		in["kind"] = *ch.Kind
	}
	when := func(t *time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format(time.RFC3339)
	}
	if ch.ExpiresAt != nil {
		in["expires_at"] = when(ch.ExpiresAt)
	}
	if ch.ReviewBy != nil {
		in["review_by"] = when(ch.ReviewBy)
	}
	var out store.Membership
	return &out, b.call(ctx, "POST", orgPath(org)+"/members/change", in, &out)
}

func (b *apiBackend) Membership(ctx context.Context, org, user string) (*store.Membership, error) {
	ms, err := b.Memberships(ctx, org)
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if ms[i].User == user {
			return &ms[i], nil
		}
	}
	return nil, fmt.Errorf("membership %s/%s: %w", org, user, store.ErrNotFound)
}

func (b *apiBackend) Memberships(ctx context.Context, org string) ([]store.Membership, error) {
	var out items[store.Membership]
	return out.Items, b.call(ctx, "GET", orgPath(org)+"/members", nil, &out)
}

func (b *apiBackend) Revoke(ctx context.Context, org, user, reason string) (*store.Membership, error) {
	var out store.Membership
	return &out, b.call(ctx, "POST", orgPath(org)+"/members/revoke", map[string]any{"user": user, "reason": reason}, &out)
}

func (b *apiBackend) ReviewDue(ctx context.Context, _ time.Time, within time.Duration) ([]store.Membership, error) {
	var out items[store.Membership]
	return out.Items, b.call(ctx, "GET", "/reviews/due?within="+url.QueryEscape(max(within, time.Second).String()), nil, &out)
}

func (b *apiBackend) Apply(ctx context.Context, ev store.BusinessEvent, reason string, dryRun bool) (*eventResult, error) {
	j, err := json.Marshal(ev)
	if err != nil {
		return nil, err
	}
	var in map[string]any
	if err := json.Unmarshal(j, &in); err != nil {
		return nil, err
	}
	in["reason"], in["dry_run"] = reason, dryRun
	var out eventResult
	return &out, b.call(ctx, "POST", "/events", in, &out)
}

func (b *apiBackend) RecordPerson(ctx context.Context, user, email, username, reason string) error {
	return b.call(ctx, "POST", "/people/index", map[string]any{"user": user, "email": email, "username": username, "reason": reason}, nil)
}

func (b *apiBackend) Tail(ctx context.Context, after string, count int, block time.Duration) ([]audit.Event, string, error) {
	q := url.Values{"since": {after}, "count": {strconv.Itoa(min(count, 1000))}}
	if block > 0 {
		q.Set("wait", strconv.Itoa(max(int(block/time.Second), 1)))
	}
	var out struct {
		Items []audit.Event `json:"items"`
		Next  string        `json:"next"`
	}
	return out.Items, out.Next, b.call(ctx, "GET", "/audit?"+q.Encode(), nil, &out)
}

func (b *apiBackend) CreateToken(ctx context.Context, t store.Token, reason string) (string, *store.Token, error) {
	// Through the API everyone makes tokens of their own only: an --owner naming someone else
	// would be silently ignored, so it is refused.
	var me struct {
		Name string `json:"name"`
	}
	if err := b.call(ctx, "GET", "/whoami", nil, &me); err != nil {
		return "", nil, err
	}
	if t.Owner != "" && t.Owner != me.Name {
		return "", nil, fmt.Errorf("--owner %q: through the admin API a token is made for its caller (%s); use --break-glass to make one for someone else", t.Owner, me.Name)
	}
	life := time.Until(t.Expires).Truncate(time.Minute)
	in := map[string]any{"name": t.Name, "operator": t.Operator, "org": t.Org, "read_only": t.ReadOnly,
		"lifetime": strconv.FormatInt(int64(life/time.Minute), 10) + "m", "reason": reason}
	var out struct {
		Token  string      `json:"token"`
		Record store.Token `json:"record"`
	}
	if err := b.call(ctx, "POST", "/tokens", in, &out); err != nil {
		return "", nil, err
	}
	return out.Token, &out.Record, nil
}

func (b *apiBackend) CreateSCIMToken(ctx context.Context, org, name string, life time.Duration, reason string) (string, *store.Token, error) {
	in := map[string]any{"name": name, "lifetime": strconv.FormatInt(int64(life/time.Minute), 10) + "m", "reason": reason}
	var out struct {
		Token  string      `json:"token"`
		Record store.Token `json:"record"`
	}
	if err := b.call(ctx, "POST", orgPath(org)+"/scim/tokens", in, &out); err != nil {
		return "", nil, err
	}
	return out.Token, &out.Record, nil
}

func (b *apiBackend) Tokens(ctx context.Context) ([]store.Token, error) {
	var out items[store.Token]
	return out.Items, b.call(ctx, "GET", "/tokens", nil, &out)
}

func (b *apiBackend) RevokeToken(ctx context.Context, id, reason string) (*store.Token, error) {
	var out store.Token
	return &out, b.call(ctx, "POST", "/tokens/"+url.PathEscape(id)+"/revoke", map[string]any{"reason": reason}, &out)
}

func (b *apiBackend) ResetRecoveryLimit(ctx context.Context, route, email, username, reason string) (string, int, error) {
	var out struct {
		Identifier string `json:"identifier"`
		Cleared    int    `json:"cleared"`
	}
	err := b.call(ctx, "POST", "/recovery/reset", map[string]any{"route": route, "email": email, "username": username, "reason": reason}, &out)
	return out.Identifier, out.Cleared, err
}
