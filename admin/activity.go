package admin

import (
	"encoding/json"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
)

// activityScan bounds the events one page of an organisation's activity reads: the stream
// holds every organisation's events, and a quiet organisation's page says where to go on.
const activityScan = 10000

// activityLine is one audit event concerning an organisation, as its administrators see it:
// who did what to whom, when and why, with the kind of access and the ticket the event's
// record names (a support engineer's access shows both). The records themselves (before and
// after) stay in the operators' audit trail.
type activityLine struct {
	ID        string            `json:"id"`
	Time      time.Time         `json:"time"`
	Type      audit.Type        `json:"type"`
	Actor     string            `json:"actor,omitempty"`
	Via       string            `json:"via,omitempty"`
	Org       string            `json:"org"`
	User      string            `json:"user,omitempty"`
	Kind      string            `json:"kind,omitempty"`
	Reason    string            `json:"reason,omitempty"`
	Ticket    string            `json:"ticket,omitempty"`
	Route     string            `json:"route,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	Operation string            `json:"operation,omitempty"`
	Detail    map[string]string `json:"detail,omitempty"`
}

func lineOf(e *audit.Event) activityLine {
	l := activityLine{ID: e.ID, Time: e.Time, Type: e.Type, Actor: e.Actor, Via: e.Via, Org: e.Org, User: e.User, Reason: e.Reason,
		Route: e.Route, RequestID: e.RequestID, Operation: e.Operation, Detail: e.Detail}
	l.Kind, l.Ticket = recordFacts(e.After)
	if l.Kind == "" {
		l.Kind = e.Detail["kind"] // access.reached
	}
	if l.Ticket == "" {
		l.Ticket = e.Detail["ticket"]
	}
	return l
}

// activityPage is a page of an organisation's activity, newest first. Next is the position
// to ask for older events with (?before); "" when the oldest event kept was read.
type activityPage struct {
	Items   []activityLine `json:"items"`
	Next    string         `json:"next,omitempty"`
	Scanned int            `json:"scanned"`
}

func (p activityPage) table() ([]string, [][]string) {
	head := []string{"id", "time", "type", "actor", "via", "user", "kind", "reason", "ticket", "route", "request_id", "detail"}
	rows := make([][]string, 0, len(p.Items))
	for _, l := range p.Items {
		var d []string
		for _, k := range slices.Sorted(maps.Keys(l.Detail)) {
			d = append(d, k+"="+l.Detail[k])
		}
		rows = append(rows, []string{l.ID, showTime(l.Time), string(l.Type), l.Actor, l.Via, l.User, l.Kind, l.Reason, l.Ticket, l.Route,
			l.RequestID, strings.Join(d, " ")})
	}
	return head, rows
}

// orgActivity is the audit trail of one organisation for its administrators: every event
// that names it (changes, requests and their approvals, support and partner access, refusals,
// step-ups), newest first, ?before a position, at most ?count (100; at most 500), of the
// ?type given (a type, or a prefix ending in "." such as "request.") and ?kind (the kind of
// access the event's record is).
func (c *call) orgActivity() (any, error) {
	org, err := c.administeredOrg()
	if err != nil {
		return nil, err
	}
	q := c.r.URL.Query()
	before, typ, kind := q.Get("before"), q.Get("type"), q.Get("kind")
	if before != "" && !validStreamPosition(before) {
		return nil, invalid("before: want an event id (1732870000000-0)")
	}
	count := 100
	if v := q.Get("count"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			return nil, invalid("count: want 1 to 500")
		}
		count = n
	}
	out := activityPage{Items: []activityLine{}}
	for out.Scanned < activityScan && len(out.Items) < count {
		evs, next, err := c.s.events.Before(c.ctx, before, 500)
		if err != nil {
			return nil, err
		}
		for i := range evs {
			out.Scanned++
			e := &evs[i]
			if e.Org != org || !typeMatches(string(e.Type), typ) {
				continue
			}
			l := lineOf(e)
			if kind != "" && l.Kind != kind {
				continue
			}
			out.Items = append(out.Items, l)
			if len(out.Items) == count {
				next = e.ID
				break
			}
		}
		out.Next, before = next, next
		if next == "" {
			break
		}
	}
	return out, nil
}

// typeMatches reports whether typ is want, or under want when want ends in ".".
func typeMatches(typ, want string) bool {
	if want == "" {
		return true
	}
	if strings.HasSuffix(want, ".") {
		return strings.HasPrefix(typ, want)
	}
	return typ == want
}

// recordFacts reads the kind and the ticket of the record an event wrote (a membership, a
// request), when it has them.
func recordFacts(after json.RawMessage) (kind, ticket string) {
	if len(after) == 0 {
		return "", ""
	}
	var r struct {
		Kind   string `json:"kind"`
		Ticket string `json:"ticket"`
	}
	_ = json.Unmarshal(after, &r) // a record without them says nothing
	return r.Kind, r.Ticket
}
