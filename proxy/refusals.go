package proxy

import (
	"context"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/internal/reason"
)

// Counted refusals. Requests turned back before anyone is known (no_session: nobody signed
// in) or because the store could not answer (store_unavailable) are too many to record one
// by one (every anonymous visit to a private page is one) and too telling to record not at
// all (a burst of store_unavailable is an outage people were refused through; a flood of
// no_session on an API, a credential gone stale). They are counted per reason and route and
// recorded as one access.refusals_counted event each per interval (Options.RefusalInterval),
// with the first few request ids as samples to find in the logs. Refusals already audited
// one by one (a blocked recovery) are not counted again.

// countedReasons are the codes counted rather than audited one by one.
var countedReasons = map[reason.Code]bool{reason.NoSession: true, reason.StoreUnavailable: true,
	// Anyone can send a made-up key, or replay a client token long expired: noise, like a
	// missing session. A revoked key, which was real and live, is audited one by one.
	reason.CredentialMissing: true, reason.CredentialInvalid: true, reason.CredentialNotAccepted: true, reason.CredentialMixed: true,
	reason.CredentialExpired: true}

// refusalSamples is how many request ids an event names.
const refusalSamples = 5

type refusalKey struct {
	code  reason.Code
	route string
}

type refusalCount struct {
	n       int64
	samples []string
}

// refusalCounter holds the counts of the current interval.
type refusalCounter struct {
	mu     sync.Mutex
	since  time.Time
	counts map[refusalKey]*refusalCount
}

// countRefusal counts one refusal of ex's, when its reason is one counted.
func (s *Server) countRefusal(ex *exchange, code reason.Code) {
	if s.opts.RefusalInterval <= 0 || !countedReasons[code] || ex.audited {
		return
	}
	c := &s.refusals
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.counts == nil {
		c.counts, c.since = map[refusalKey]*refusalCount{}, s.now()
	}
	k := refusalKey{code, ex.routeLabel}
	n := c.counts[k]
	if n == nil {
		n = &refusalCount{}
		c.counts[k] = n
	}
	n.n++
	if len(n.samples) < refusalSamples {
		n.samples = append(n.samples, ex.requestID)
	}
}

// flushRefusals records the interval's counts, one event per reason and route, and starts
// the next interval.
func (s *Server) flushRefusals(ctx context.Context) {
	c := &s.refusals
	c.mu.Lock()
	counts, since := c.counts, c.since
	c.counts = nil
	c.mu.Unlock()
	if len(counts) == 0 || s.opts.Audit == nil {
		return
	}
	until := s.now()
	for k, n := range counts {
		ev := audit.Event{Type: audit.RefusalsCounted, Reason: string(k.code), Route: k.route, Detail: map[string]string{
			"count": strconv.FormatInt(n.n, 10), "since": since.UTC().Format(time.RFC3339), "until": until.UTC().Format(time.RFC3339),
			"sample_request_ids": strings.Join(n.samples, ","),
		}}
		if err := s.opts.Audit.Append(ctx, ev); err != nil {
			s.log.Error("audit append failed", slog.Any("error", err), slog.String("event", string(ev.Type)))
		}
	}
}

// countRefusals flushes the counts every interval until ctx is done, then once more.
func (s *Server) countRefusals(ctx context.Context) {
	t := time.NewTicker(s.opts.RefusalInterval)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			s.flushRefusals(context.WithoutCancel(ctx))
		case <-ctx.Done():
			s.flushRefusals(context.WithoutCancel(ctx))
			return
		}
	}
}
