package audit

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestEventJSONStable pins the stored form: consumers (SIEM exports, `admin audit tail --json`)
// parse it, so a change here is a breaking change.
func TestEventJSONStable(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	e := Event{
		Time:   time.Date(2026, 11, 29, 10, 0, 0, 5, paris),
		Type:   MembershipRevoked,
		Actor:  "admin@example",
		Org:    "acme",
		User:   "https://idp.example|42",
		Reason: "left the company",
		Before: json.RawMessage(`{"status":"active"}`),
		After:  json.RawMessage(`{"status":"revoked"}`),
		Detail: map[string]string{"z": "1", "a": "2"},
	}
	got, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"time":"2026-11-29T09:00:00.000000005Z","type":"membership.revoked","actor":"admin@example",` +
		`"org":"acme","user":"https://idp.example|42","reason":"left the company",` +
		`"before":{"status":"active"},"after":{"status":"revoked"},"detail":{"a":"2","z":"1"}}`
	if string(got) != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	var back Event
	if err := json.Unmarshal(got, &back); err != nil {
		t.Fatal(err)
	}
	if !back.Time.Equal(e.Time) || back.Type != e.Type || back.Detail["a"] != "2" {
		t.Errorf("round trip lost data: %+v", back)
	}
	// Minimal event: only what is set appears.
	got, _ = json.Marshal(Event{Time: time.Unix(0, 0), Type: AccessDenied, Reason: "role_missing"})
	if want := `{"time":"1970-01-01T00:00:00Z","type":"access.denied","reason":"role_missing"}`; string(got) != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    Event
		ok   bool
	}{
		{"ok", Event{Type: OrgCreated, After: json.RawMessage(`{}`)}, true},
		{"no type", Event{}, false},
		{"bad before", Event{Type: OrgCreated, Before: json.RawMessage(`{`)}, false},
		{"bad after", Event{Type: OrgCreated, After: json.RawMessage(`nope`)}, false},
	} {
		err := tc.e.Check()
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
			t.Errorf("%s: Check = %v", tc.name, err)
		}
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	var s Sink = &r
	if err := s.Append(context.Background(), Event{Type: AccessDenied}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), Event{}); err == nil {
		t.Error("Recorder accepted an event without a type")
	}
	ev := r.Events()
	if len(ev) != 1 || ev[0].Time.IsZero() || ev[0].Time.Location() != time.UTC {
		t.Errorf("events = %+v", ev)
	}
}
