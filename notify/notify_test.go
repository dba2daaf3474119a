package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis-proxy/portcullis/audit"
	"github.com/portcullis-proxy/portcullis/config"
	"github.com/portcullis-proxy/portcullis/internal/redistest"
	"github.com/portcullis-proxy/portcullis/store"
)

// receiver is a webhook endpoint that verifies every delivery as the Standard Webhooks
// specification says (independently of Sign) and fails on demand.
type receiver struct {
	*httptest.Server
	t   *testing.T
	key []byte

	mu       sync.Mutex
	got      map[string][]Payload // by webhook-id
	attempts map[string]int
	fail     func(body string, attempt int) bool
	bad      []string
}

func newReceiver(t *testing.T, secret string) *receiver {
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, key: key, got: map[string][]Payload{}, attempts: map[string]int{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		id, ts, sig := req.Header.Get("webhook-id"), req.Header.Get("webhook-timestamp"), req.Header.Get("webhook-signature")
		m := hmac.New(sha256.New, r.key)
		m.Write([]byte(id + "." + ts + "." + string(body)))
		want := "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
		n, _ := strconv.ParseInt(ts, 10, 64)
		r.mu.Lock()
		defer r.mu.Unlock()
		if !hmac.Equal([]byte(sig), []byte(want)) || time.Since(time.Unix(n, 0)).Abs() > time.Minute || req.Header.Get("Content-Type") != "application/json" {
			r.bad = append(r.bad, id)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		r.attempts[id]++
		if r.fail != nil && r.fail(string(body), r.attempts[id]) {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		var p Payload
		if err := json.Unmarshal(body, &p); err != nil {
			r.bad = append(r.bad, id)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.got[id] = append(r.got[id], p)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) delivered() map[string][]Payload {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string][]Payload{}
	for k, v := range r.got {
		out[k] = append([]Payload(nil), v...)
	}
	return out
}

const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"

func setup(t *testing.T) (*store.Audit, context.Context) {
	t.Helper()
	srv := redistest.Shared(t)
	st, err := store.New(config.Redis{Address: srv.Addr, DB: srv.DB(t), KeyPrefix: redistest.Prefix(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return store.NewAudit(st, 0), ctx
}

func start(t *testing.T, ctx context.Context, hooks []config.Webhook, aud *store.Audit) *Dispatcher {
	t.Helper()
	d, err := New(hooks, aud, Options{Backoff: 40 * time.Millisecond, Block: 50 * time.Millisecond, Timeout: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	d.Start(ctx)
	t.Cleanup(d.Close)
	return d
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestDeliveries: two processes share the deliveries; each wanted event arrives signed, once,
// in its envelope; an event the webhook does not list is not sent; a receiver that fails is
// retried until it answers.
func TestDeliveries(t *testing.T) {
	aud, ctx := setup(t)
	rcv := newReceiver(t, secret)
	rcv.fail = func(body string, attempt int) bool { return strings.Contains(body, `"reason":"flaky"`) && attempt <= 2 }
	hooks := []config.Webhook{{Name: "chat", URL: rcv.URL, Secret: secret, Events: []string{"request.*", "business.contract_ended"}, MaxAttempts: 5}}
	start(t, ctx, hooks, aud)
	start(t, ctx, hooks, aud) // a second process

	types := []audit.Type{audit.RequestCreated, audit.MembershipGranted, audit.RequestGranted, audit.BusinessContractEnded, audit.AccessDenied}
	for i := 0; i < 10; i++ {
		for _, typ := range types {
			if err := aud.Append(ctx, audit.Event{Type: typ, Org: "acme", Actor: "ann", Reason: "n" + strconv.Itoa(i)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	// One more, which the receiver refuses twice.
	if err := aud.Append(ctx, audit.Event{Type: audit.RequestCreated, Org: "acme", Reason: "flaky"}); err != nil {
		t.Fatal(err)
	}
	all, _, _ := aud.Tail(ctx, "0", 1000, 0)
	flakyID := all[len(all)-1].ID

	waitFor(t, "31 deliveries", func() bool { return len(rcv.delivered()) == 31 })
	got := rcv.delivered()
	for id, ps := range got {
		if len(ps) != 1 {
			t.Errorf("%s delivered %d times", id, len(ps))
		}
		p := ps[0]
		if p.Data.ID != id || p.Type != p.Data.Type || p.Data.Org != "acme" {
			t.Errorf("payload %+v", p)
		}
		if p.Type != audit.RequestCreated && p.Type != audit.RequestGranted && p.Type != audit.BusinessContractEnded {
			t.Errorf("%s was delivered: not a listed type", p.Type)
		}
	}
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if len(rcv.bad) != 0 {
		t.Errorf("deliveries failing verification: %v", rcv.bad)
	}
	if rcv.attempts[flakyID] != 3 {
		t.Errorf("the flaky event took %d attempts, want 3", rcv.attempts[flakyID])
	}
}

// TestGiveUp: a receiver that never answers 2xx gets max_attempts deliveries, then the event is
// recorded as given up and not tried again.
func TestGiveUp(t *testing.T) {
	aud, ctx := setup(t)
	rcv := newReceiver(t, secret)
	rcv.fail = func(string, int) bool { return true }
	start(t, ctx, []config.Webhook{{Name: "down", URL: rcv.URL, Secret: secret, Events: []string{"*"}, MaxAttempts: 3}}, aud)
	if err := aud.Append(ctx, audit.Event{Type: audit.RequestCreated, Org: "acme"}); err != nil {
		t.Fatal(err)
	}
	var failed *audit.Event
	waitFor(t, "the give-up", func() bool {
		evs, _, _ := aud.Tail(ctx, "0", 100, 0)
		for i := range evs {
			if evs[i].Type == audit.WebhookFailed {
				failed = &evs[i]
				return true
			}
		}
		return false
	})
	evs, _, _ := aud.Tail(ctx, "0", 100, 0)
	if failed.Detail["webhook"] != "down" || failed.Detail["event"] != evs[0].ID || failed.Detail["attempts"] != "3" {
		t.Errorf("webhook.failed %+v", failed)
	}
	time.Sleep(1500 * time.Millisecond) // a few backoffs: nothing more is tried
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	if n := rcv.attempts[evs[0].ID]; n != 3 {
		t.Errorf("%d attempts, want 3", n)
	}
	if len(rcv.attempts) != 1 {
		t.Errorf("the give-up itself was delivered: %v", rcv.attempts)
	}
}

// TestUnsignedIsRefusedByReceivers: the receiver in these tests refuses a wrong signature, so
// the tests above mean something.
func TestUnsignedIsRefusedByReceivers(t *testing.T) {
	rcv := newReceiver(t, secret)
	req, _ := http.NewRequest("POST", rcv.URL, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("webhook-id", "1-0")
	req.Header.Set("webhook-timestamp", strconv.FormatInt(time.Now().Unix(), 10))
	req.Header.Set("webhook-signature", "v1,"+Sign([]byte("another key"), "1-0", req.Header.Get("webhook-timestamp"), []byte(`{}`)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a delivery signed with another key: %d", resp.StatusCode)
	}
}
