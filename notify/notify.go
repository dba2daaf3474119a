// Package notify sends governance events to webhooks (config notifications.webhooks): access
// requests waiting for approval and their decisions, business events, reviews, so that a chat
// or ticket system can route them to the people who act on them.
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
	EnsureGroup(ctx context.Context, group string) error
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

// Dispatcher delivers the events of one process to every configured webhook.
type Dispatcher struct {
	hooks    []*hook
	stream   Stream
	consumer string
	o        Options
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

type hook struct {
	cfg    config.Webhook
	key    []byte
	group  string
	client *http.Client
}

// New prepares deliveries to hooks from stream; Start starts them.
func New(hooks []config.Webhook, stream Stream, o Options) (*Dispatcher, error) {
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
		tr := http.DefaultTransport.(*http.Transport).Clone()
		if w.CARootFile != "" {
			pem, err := os.ReadFile(w.CARootFile)
			if err != nil {
				return nil, fmt.Errorf("notifications.webhooks %s: ca_root_file: %w", w.Name, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("notifications.webhooks %s: ca_root_file %s holds no certificate", w.Name, w.CARootFile)
			}
			tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		}
		d.hooks = append(d.hooks, &hook{cfg: w, key: w.SigningKey(), group: "webhook:" + w.Name, client: &http.Client{
			Transport: tr, Timeout: o.Timeout,
			// A receiver answers; it does not send the event elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}})
	}
	return d, nil
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
	ready := make([]bool, len(d.hooks))
	gctx, cancel := context.WithTimeout(ctx, startGroupWait)
	var wg sync.WaitGroup
	for i, h := range d.hooks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ready[i] = d.stream.EnsureGroup(gctx, h.group) == nil
		}()
	}
	wg.Wait()
	cancel()
	ctx, d.cancel = context.WithCancel(context.WithoutCancel(ctx))
	for i, h := range d.hooks {
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
func (d *Dispatcher) ensureGroup(ctx context.Context, h *hook) bool {
	wait := time.Second
	for {
		err := d.stream.EnsureGroup(ctx, h.group)
		if err == nil {
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		d.o.Logger.Warn("webhook waiting for the audit stream", slog.String("webhook", h.cfg.Name), slog.Any("error", err), slog.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return false
		case <-time.After(wait):
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// Close stops the deliveries; what is pending stays pending, for the next process.
func (d *Dispatcher) Close() {
	if d.cancel != nil {
		d.cancel()
	}
	d.wg.Wait()
}

func (d *Dispatcher) run(ctx context.Context, h *hook) {
	log := d.o.Logger.With(slog.String("webhook", h.cfg.Name))
	for ctx.Err() == nil {
		if err := d.retryDue(ctx, h, log); err != nil && ctx.Err() == nil {
			log.Warn("webhook retries", slog.Any("error", err))
		}
		evs, err := d.stream.ReadGroup(ctx, h.group, d.consumer, 20, d.o.Block)
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("webhook: reading the audit stream failed", slog.Any("error", err))
				sleep(ctx, time.Second)
			}
			continue
		}
		for _, e := range evs {
			d.handle(ctx, h, e, 1, log)
		}
	}
}

// retryDue claims and delivers again the pending events whose backoff has passed, and gives
// up those that used their attempts.
func (d *Dispatcher) retryDue(ctx context.Context, h *hook, log *slog.Logger) error {
	ps, err := d.stream.Pending(ctx, h.group, d.o.Backoff+d.o.Timeout, 50)
	if err != nil {
		return err
	}
	for _, p := range ps {
		wait := d.backoff(p.Attempts)
		if p.Idle < wait {
			continue
		}
		if p.Attempts >= int64(h.cfg.MaxAttempts) {
			d.giveUp(ctx, h, p, log)
			continue
		}
		evs, err := d.stream.Claim(ctx, h.group, d.consumer, wait, p.ID)
		if err != nil {
			return err
		}
		for _, e := range evs {
			d.handle(ctx, h, e, p.Attempts+1, log)
		}
	}
	return nil
}

// backoff is the idle time after which a pending event is tried again, given the attempts
// made so far: the retry delay (doubling, at most an hour) after the longest an attempt takes.
func (d *Dispatcher) backoff(attempts int64) time.Duration {
	w := d.o.Backoff
	for i := int64(1); i < attempts && w < time.Hour; i++ {
		w *= 2
	}
	return min(w, time.Hour) + d.o.Timeout
}

func (d *Dispatcher) giveUp(ctx context.Context, h *hook, p store.Pending, log *slog.Logger) {
	log.Error("webhook: event given up after its attempts", slog.String("event", p.ID), slog.Int64("attempts", p.Attempts))
	err := d.stream.Append(ctx, audit.Event{Type: audit.WebhookFailed, Actor: "portcullis",
		Detail: map[string]string{"webhook": h.cfg.Name, "event": p.ID, "attempts": strconv.FormatInt(p.Attempts, 10)}})
	if err != nil {
		// Keep it pending: the record of giving up must not be lost either.
		log.Warn("webhook: the give-up could not be recorded", slog.Any("error", err))
		return
	}
	if err := d.stream.Ack(ctx, h.group, p.ID); err != nil {
		log.Warn("webhook: ack", slog.Any("error", err))
	}
}

// handle delivers e when the webhook takes its type (acknowledging it once the receiver
// answered 2xx), and acknowledges at once an event it does not take.
func (d *Dispatcher) handle(ctx context.Context, h *hook, e audit.Event, attempt int64, log *slog.Logger) {
	if e.Type == "" || !wants(h.cfg.Events, string(e.Type)) || e.Type == audit.WebhookFailed {
		_ = d.stream.Ack(ctx, h.group, e.ID)
		return
	}
	if err := d.deliver(ctx, h, e); err != nil {
		log.Warn("webhook delivery failed; it will be retried", slog.String("event", e.ID), slog.String("type", string(e.Type)),
			slog.Int64("attempt", attempt), slog.Any("error", err))
		return
	}
	if err := d.stream.Ack(ctx, h.group, e.ID); err != nil {
		log.Warn("webhook: ack", slog.String("event", e.ID), slog.Any("error", err))
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

func (d *Dispatcher) deliver(ctx context.Context, h *hook, e audit.Event) error {
	body, err := json.Marshal(Payload{Type: e.Type, Timestamp: e.Time, Data: e})
	if err != nil {
		return err
	}
	ts := strconv.FormatInt(d.o.Now().Unix(), 10)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Portcullis-Webhooks/1")
	req.Header.Set("webhook-id", e.ID)
	req.Header.Set("webhook-timestamp", ts)
	req.Header.Set("webhook-signature", "v1,"+Sign(h.key, e.ID, ts, body))
	resp, err := h.client.Do(req)
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
