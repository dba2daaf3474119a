// Package notify delivers the audit stream: governance events to webhooks (config
// notifications.webhooks): access requests waiting for approval and their decisions, business
// events, reviews, so that a chat or ticket system can route them to the people who act on
// them; and the whole trail to audit sinks (config audit.sinks, sinks.go): a file, stdout, a
// webhook.
//
// Events are read from the audit stream through a consumer group per webhook, so every
// Portcullis process can deliver, each event is delivered by one of them, and an event stays
// pending until its receiver answers 2xx: a process that dies or a receiver that is down only
// delays it. Undelivered events are retried with exponential backoff (5s, 10s, … up to an
// hour, after the attempt's own timeout) by whichever process finds them due, until
// max_attempts, and then recorded as given up (webhook.failed) rather than dropped silently.
// Delivery is at least once: receivers deduplicate on webhook-id.
//
// Deliveries are signed as the Standard Webhooks specification says
// (https://www.standardwebhooks.com): headers webhook-id (the event's stream id, stable across
// retries, for receivers to deduplicate), webhook-timestamp (Unix seconds) and
// webhook-signature ("v1," and the base64 HMAC-SHA256 of "id.timestamp.body" under the
// webhook's key), so receivers can verify them with that specification's libraries.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/store"
)

// Stream is the audit stream as deliveries need it (*store.Audit).
type Stream interface {
	EnsureGroupAt(ctx context.Context, group, start string) error
	ReadGroup(ctx context.Context, group, consumer string, count int, block time.Duration) ([]audit.Event, error)
	Pending(ctx context.Context, group string, minIdle time.Duration, count int) ([]store.Pending, error)
	Claim(ctx context.Context, group, consumer string, minIdle time.Duration, ids ...string) ([]audit.Event, error)
	Ack(ctx context.Context, group string, ids ...string) error
	Append(ctx context.Context, e audit.Event) error
}

// Options tune a Dispatcher; the zero value is what serve uses.
type Options struct {
	Logger *slog.Logger
	// Backoff is the wait before the first retry; each further one doubles it, up to an
	// hour. Default 5s.
	Backoff time.Duration
	// Block is how long one read waits for new events. Default 5s.
	Block time.Duration
	// Timeout bounds one delivery. Default 10s. A pending event is retried only once it has
	// been idle for its backoff plus this, so an attempt still in flight (on this process or
	// another) is never doubled.
	Timeout time.Duration
	// Now is the clock of the signatures; nil means time.Now.
	Now func() time.Time
}

// Dispatcher delivers the events of one process to every configured webhook or audit sink.
type Dispatcher struct {
	targets  []*target
	stream   Stream
	consumer string
	o        Options
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// target is one destination with a consumer group of its own: a webhook or an audit sink.
type target struct {
	kind, name string // for logs: "webhook", "audit sink"
	group      string
	start      string // where a new group starts: "$" (webhooks) or "0" (sinks)
	wants      func(audit.Type) bool
	// maxAttempts gives an event up after that many deliveries; 0 never does (sinks).
	maxAttempts int
	maxBackoff  time.Duration
	// send delivers evs in order and returns how many of them, from the first, arrived;
	// an error explains why the rest did not.
	send func(ctx context.Context, evs []audit.Event) (int, error)
	// perEvent sends one event at a time (HTTP receivers): one the receiver refuses does not
	// hold back, or use up the attempts of, the others read with it.
	perEvent bool
	close    func() error
}

// New prepares deliveries to hooks from stream; Start starts them.
func New(hooks []config.Webhook, stream Stream, o Options) (*Dispatcher, error) {
	return NewWithSinks(hooks, nil, stream, o)
}

// NewWithSinks prepares deliveries to webhooks and to audit sinks (config audit.sinks).
func NewWithSinks(hooks []config.Webhook, sinks []config.AuditSink, stream Stream, o Options) (*Dispatcher, error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Backoff <= 0 {
		o.Backoff = 5 * time.Second
	}
	if o.Block <= 0 {
		o.Block = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	host, _ := os.Hostname()
	d := &Dispatcher{stream: stream, o: o, consumer: host + "-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b[:])}
	for _, w := range hooks {
		client, err := webhookClient("notifications.webhooks "+w.Name, w.CARootFile, o.Timeout)
		if err != nil {
			return nil, err
		}
		w, key := w, w.SigningKey()
		d.targets = append(d.targets, &target{kind: "webhook", name: w.Name, group: "webhook:" + w.Name, start: "$",
			wants: func(t audit.Type) bool {
				return t != "" && t != audit.WebhookFailed && wants(w.Events, string(t))
			},
			maxAttempts: w.MaxAttempts, maxBackoff: time.Hour, perEvent: true,
			send: func(ctx context.Context, evs []audit.Event) (int, error) {
				for i, e := range evs {
					if err := d.post(ctx, client, w.URL, key, e); err != nil {
						return i, err
					}
				}
				return len(evs), nil
			}})
	}
	for _, c := range sinks {
		t, err := d.sink(c)
		if err != nil {
			for _, t := range d.targets {
				if t.close != nil {
					_ = t.close()
				}
			}
			return nil, err
		}
		d.targets = append(d.targets, t)
	}
	return d, nil
}

// webhookClient is the HTTP client of one receiver: its own roots when caFile is set, no
// redirects (a receiver answers; it does not send the event elsewhere).
func webhookClient(what, caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("%s: ca_root_file: %w", what, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: ca_root_file %s holds no certificate", what, caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}, nil
}

// startGroupWait bounds how long Start waits for the consumer groups before it goes on and
// lets the background retry them.
const startGroupWait = 2 * time.Second

// Start creates each webhook's consumer group and runs its delivery loop until Close.
func (d *Dispatcher) Start(ctx context.Context) {
	// The groups are made before Start returns when Redis answers, so that a new webhook
	// sees every event appended after it; one that cannot be made yet is retried in the
	// background instead of failing the start.
	// All at once, within one short deadline: a Redis that accepts connections but does not
	// answer must not delay the start by one read timeout per webhook.
	ready := make([]bool, len(d.targets))
	gctx, cancel := context.WithTimeout(ctx, startGroupWait)
	var wg sync.WaitGroup
	for i, h := range d.targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready[i] = d.stream.EnsureGroupAt(gctx, h.group, h.start) == nil
		}()
	}
	wg.Wait()
	cancel()
	ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i, h := range d.targets {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			if ready[i] || d.ensureGroup(ctx, h) {
				d.run(ctx, h)
			}
		}()
	}
}

// ensureGroup creates the webhook's consumer group, retrying while Redis does not answer (a
// process started during a Redis outage delivers once it is back; nothing is lost, the
// events wait in the stream). false: stopped first.
func (d *Dispatcher) ensureGroup(ctx context.Context, h *target) bool {
	wait := time.Second
	for {
		err := d.stream.EnsureGroupAt(ctx, h.group, h.start)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.o.Logger.Warn(h.kind+" waiting for the audit stream", slog.String(h.kind, h.name), slog.Any("error", err), slog.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// Close stops the deliveries and closes the sinks' files; what is pending stays pending, for
// the next process.
func (d *Dispatcher) Close() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
	for _, t := range d.targets {
		if t.close != nil {
			if err := t.close(); err != nil {
				d.o.Logger.Warn(t.kind+": close", slog.String(t.kind, t.name), slog.Any("error", err))
			}
		}
	}
}

// Groups returns the consumer groups of the audit sinks, for trimming and lag reports.
func (d *Dispatcher) Groups() []string {
	var g []string
	for _, t := range d.targets {
		if t.kind == kindSink {
			g = append(g, t.group)
		}
	}
	return g
}

func (d *Dispatcher) run(ctx context.Context, h *target) {
	log := d.o.Logger.With(slog.String(h.kind, h.name))
	for ctx.Err() == nil {
		if err := d.retryDue(ctx, h, log); err != nil && ctx.Err() == nil {
			log.Warn(h.kind+" retries", slog.Any("error", err))
		}
		evs, err := d.stream.ReadGroup(ctx, h.group, d.consumer, 100, d.o.Block)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn(h.kind+": reading the audit stream failed", slog.Any("error", err))
				sleep(ctx, time.Second)
			}
			continue
		}
		d.handle(ctx, h, evs, 1, log)
	}
}

// retryDue claims and delivers again the pending events whose backoff has passed, and gives
// up those that used their attempts.
func (d *Dispatcher) retryDue(ctx context.Context, h *target, log *slog.Logger) error {
	ps, err := d.stream.Pending(ctx, h.group, d.o.Backoff+d.o.Timeout, 100)
	if err != nil {
		return err
	}
	// Due events of one attempt count go together, in stream order, so a sink gets a batch.
	var due []string
	attempts := int64(0)
	flush := func() error {
		if len(due) == 0 {
			return nil
		}
		evs, err := d.stream.Claim(ctx, h.group, d.consumer, d.backoff(h, attempts), due...)
		due = due[:0]
		if err != nil {
			return err
		}
		d.handle(ctx, h, evs, attempts+1, log)
		return nil
	}
	for _, p := range ps {
		if p.Idle < d.backoff(h, p.Attempts) {
			continue
		}
		if h.maxAttempts > 0 && p.Attempts >= int64(h.maxAttempts) {
			d.giveUp(ctx, h, p, log)
			continue
		}
		if p.Attempts != attempts {
			if err := flush(); err != nil {
				return err
			}
			attempts = p.Attempts
		}
		due = append(due, p.ID)
	}
	return flush()
}

// backoff is the idle time after which a pending event is tried again, given the attempts
// made so far: the retry delay (doubling, at most the target's maximum) after the longest an
// attempt takes.
func (d *Dispatcher) backoff(h *target, attempts int64) time.Duration {
	w := d.o.Backoff
	for i := int64(1); i < attempts && w < h.maxBackoff; i++ {
		w *= 2
	}
	return min(w, h.maxBackoff) + d.o.Timeout
}

func (d *Dispatcher) giveUp(ctx context.Context, h *target, p store.Pending, log *slog.Logger) {
	log.Error("webhook: event given up after its attempts", slog.String("event", p.ID), slog.Int64("attempts", p.Attempts))
	err := d.stream.Append(ctx, audit.Event{Type: audit.WebhookFailed, Actor: "portcullis",
		Detail: map[string]string{"webhook": h.name, "event": p.ID, "attempts": strconv.FormatInt(p.Attempts, 10)}})
	if err != nil {
		// Keep it pending: the record of giving up must not be lost either.
		log.Warn("webhook: the give-up could not be recorded", slog.Any("error", err))
		return
	}
	if err := d.stream.Ack(ctx, h.group, p.ID); err != nil {
		log.Warn("webhook: ack", slog.Any("error", err))
	}
}

// handle delivers the events the target takes, in order, and acknowledges those that
// arrived and those it does not take; the rest stay pending, for a retry.
func (d *Dispatcher) handle(ctx context.Context, h *target, evs []audit.Event, attempt int64, log *slog.Logger) {
	var ack []string
	var send []audit.Event
	for _, e := range evs {
		if h.wants(e.Type) {
			send = append(send, e)
		} else {
			ack = append(ack, e.ID)
		}
	}
	batches := [][]audit.Event{send}
	if h.perEvent {
		batches = batches[:0]
		for i := range send {
			batches = append(batches, send[i:i+1])
		}
	}
	for _, b := range batches {
		if len(b) == 0 {
			continue
		}
		n, err := h.send(ctx, b)
		for _, e := range b[:n] {
			ack = append(ack, e.ID)
		}
		if err != nil {
			e := b[n]
			log.Warn(h.kind+" delivery failed; it will be retried", slog.String("event", e.ID), slog.String("type", string(e.Type)),
				slog.Int("undelivered", len(b)-n), slog.Int64("attempt", attempt), slog.Any("error", err))
		}
	}
	if len(ack) == 0 {
		return
	}
	if err := d.stream.Ack(ctx, h.group, ack...); err != nil {
		// Unacknowledged, they are delivered again later: at least once, never lost.
		log.Warn(h.kind+": ack", slog.Int("events", len(ack)), slog.Any("error", err))
	}
}

// wants reports whether the patterns (exact types, "x.*" prefixes, "*") take typ.
func wants(patterns []string, typ string) bool {
	for _, p := range patterns {
		if p == "*" || p == typ {
			return true
		}
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(typ, prefix) {
			return true
		}
	}
	return false
}

// Payload is the body of a delivery: the Standard Webhooks envelope around the audit event,
// in its stable form.
type Payload struct {
	Type      audit.Type  `json:"type"`
	Timestamp time.Time   `json:"timestamp"`
	Data      audit.Event `json:"data"`
}

// post delivers e to url, signed with key, and succeeds when the receiver answers 2xx.
func (d *Dispatcher) post(ctx context.Context, client *http.Client, url string, key []byte, e audit.Event) error {
	body, err := json.Marshal(Payload{Type: e.Type, Timestamp: e.Time, Data: e})
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(d.o.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Portcullis-Webhooks/1")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+Sign(key, e.ID, ts, body))
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return errors.New("receiver answered " + resp.Status)
	}
	return nil
}

// Sign is the Standard Webhooks signature of a delivery: base64 of HMAC-SHA256 over
// "id.timestamp.body" under key.
func Sign(key []byte, id, timestamp string, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(id + "." + timestamp + "."))
	m.Write(body)
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
