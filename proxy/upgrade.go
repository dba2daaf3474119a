package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/authz"
	"github.com/portcullis-proxy/portcullis/internal/apikey"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Protocol upgrades (issue 19). An Upgrade reaching a portal can switch the connection to
// something no route decided on: an h2c upgrade turns it into HTTP/2 streams the proxy never
// sees (request smuggling past every route), a WebSocket keeps a tunnel open long after the
// access that opened it ended. So: an h2c upgrade is never forwarded (the header is removed and
// the request goes on as HTTP/1.1), a WebSocket only on routes with websocket: true and only
// after their authorisation, and nothing else at all.

// upgrade applies those rules to the request's Upgrade headers; it reports whether the request
// is a WebSocket upgrade the route takes.
func (ex *exchange) upgrade() (websocket bool, err error) {
	h := ex.r.Header
	vals := h.Values("Upgrade")
	if len(vals) == 0 {
		return false, nil
	}
	var protos []string
	for _, v := range vals {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.ToLower(strings.TrimSpace(p)); p != "" {
				protos = append(protos, p)
			}
		}
	}
	onlyH2C := len(protos) > 0
	for _, p := range protos {
		onlyH2C = onlyH2C && p == "h2c"
	}
	switch {
	case onlyH2C || len(protos) == 0:
		// Go's server does not speak h2c here; the request is served as the HTTP/1.1 it is.
		h.Del("Upgrade")
		h.Del("Http2-Settings")
		return false, nil
	case len(protos) == 1 && protos[0] == "websocket" && ex.route.WebSocket:
		return true, nil
	}
	ex.s.log.LogAttrs(ex.r.Context(), slog.LevelInfo, "upgrade refused", slog.String("route", ex.routeLabel),
		slog.String("request_id", ex.requestID), slog.String("upgrade", strings.Join(protos, ",")))
	return false, reject(reason.UpgradeRefused)
}

// MembershipWatcher tells of changes that may concern one membership (store.Cache): a
// WebSocket tunnel on an org-scoped route re-decides on each, and closes when the decision
// no longer allows it.
type MembershipWatcher interface {
	Watch(org, user string) (<-chan struct{}, func())
}

// recheckEvery bounds how long a tunnel outlives an end nobody announces (a membership's end
// or review date, a purpose grant's end, the cache being off).
const recheckEvery = 30 * time.Second

// guardTunnel returns the context the upgraded request is forwarded with: it is cancelled,
// which closes the tunnel (ReverseProxy closes the backend connection, then the client's),
// when the membership the request was admitted on stops granting it.
func (ex *exchange) guardTunnel() (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ex.r.Context())
	r := ex.r.WithContext(ctx)
	if !ex.pol.orgScoped || ex.s.opts.Members == nil {
		return r, cancel
	}
	org, user := ex.id.org, ex.id.user
	// changed and sponsorChanged (a machine's access also ends with its sponsor's; nil, which
	// never receives, for a person) tell of changes to what the tunnel was admitted on.
	var changed, sponsorChanged <-chan struct{}
	stop := func() {}
	if w, ok := ex.s.opts.Members.(MembershipWatcher); ok {
		changed, stop = w.Watch(org, user)
		if ex.id.machine {
			var stopSponsor func()
			sponsorChanged, stopSponsor = w.Watch(org, ex.id.sponsor)
			stopUser := stop
			stop = func() { stopUser(); stopSponsor() }
		}
	}
	// A client token's tunnel ends with the token, re-decided at its exp.
	var expiry <-chan time.Time
	if !ex.tokenExpiry.IsZero() {
		et := time.NewTimer(time.Until(ex.tokenExpiry))
		expiry = et.C
		prev := stop
		stop = func() { prev(); et.Stop() }
	}
	go func() {
		defer stop()
		t := time.NewTicker(recheckEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-expiry:
			case <-sponsorChanged:
			case <-changed:
			case <-t.C:
			}
			d, err := ex.redecide(context.WithoutCancel(ctx), org, user)
			if err != nil || !d.Allow {
				code := d.Reason
				if err != nil {
					code = reason.StoreUnavailable
				}
				ex.s.log.LogAttrs(ctx, slog.LevelInfo, "websocket closed: access ended", slog.String("route", ex.routeLabel),
					slog.String("org", org), slog.String("user", user), slog.String("reason", string(code)), slog.String("request_id", ex.requestID))
				cancel()
				return
			}
		}
	}()
	return r, cancel
}

// redecide decides the tunnel's principal again, as its request was: a person's membership
// (authz.Decide) or a machine's key, membership and sponsor (authz.DecideMachine).
func (ex *exchange) redecide(ctx context.Context, org, user string) (authz.Decision, error) {
	if ex.id.machine {
		var in authz.MachineInput
		var err error
		if ex.cred == credClientJWT {
			c, verr := ex.s.opts.ClientTokens.Verify(ctx, ex.apiKey)
			if verr != nil {
				return authz.Decision{Reason: reason.CredentialExpired}, nil
			}
			in, err = authz.GatherClient(ctx, ex.s.opts.Clients, ex.s.opts.Members, verifiedClient(c))
		} else {
			id, _ := apikey.Parse(ex.apiKey)
			in, err = authz.GatherMachine(ctx, ex.s.opts.APIKeys, ex.s.opts.Members, ex.apiKey, id)
		}
		if err != nil {
			return authz.Decision{}, err
		}
		ex.completeMachine(&in)
		return authz.DecideMachine(in, ex.s.now()), nil
	}
	o, m, err := ex.s.opts.Members.Lookup(ctx, org, user)
	if err != nil {
		return authz.Decision{}, err
	}
	in := ex.decisionInput(org)
	in.Org, in.Membership = o, m
	return authz.Decide(in, ex.s.now()), nil
}
