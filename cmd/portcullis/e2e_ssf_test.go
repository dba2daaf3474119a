package main

// End-to-end tests of the Shared Signals receiver (issue 16) through the real binary, two
// replicas: a transmitter with its own keys pushes Security Event Tokens (RFC 8417, RFC 8935)
// about people of the provider.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/portcullis-proxy/portcullis/store"
)

// ssfTransmitter signs SETs and serves its JWKS over TLS.
type ssfTransmitter struct {
	t      *testing.T
	key    *ecdsa.PrivateKey
	srv    *httptest.Server
	issuer string
	ca     string
}

func newSSFTransmitter(t *testing.T) *ssfTransmitter {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tr := &ssfTransmitter{t: t, key: key, issuer: "https://transmitter.example/ssf"}
	tr.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "t1", Algorithm: "ES256", Use: "sig"}}})
	}))
	t.Cleanup(tr.srv.Close)
	tr.ca = filepath.Join(t.TempDir(), "transmitter-ca.pem")
	writeFile(t, tr.ca, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tr.srv.Certificate().Raw})))
	return tr
}

// yaml is the configuration trusting the transmitter.
func (tr *ssfTransmitter) yaml() string {
	return fmt.Sprintf(`ssf:
  transmitters:
    - name: idp-caep
      issuer: %s
      jwks_uri: %s/jwks
      audience: %s
      ca_root_file: %s
`, tr.issuer, tr.srv.URL, ssfAudience, tr.ca)
}

// ssfAudience is the audience the receiver is configured with.
const ssfAudience = "https://portal.example/ssf"

// set signs claims with key (the transmitter's when nil).
func (tr *ssfTransmitter) set(key *ecdsa.PrivateKey, claims map[string]any) string {
	tr.t.Helper()
	if key == nil {
		key = tr.key
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key},
		(&jose.SignerOptions{}).WithType("secevent+jwt").WithHeader("kid", "t1"))
	if err != nil {
		tr.t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := sig.Sign(b)
	if err != nil {
		tr.t.Fatal(err)
	}
	s, _ := jws.CompactSerialize()
	return s
}

var ssfSeq int

// event is a SET's claims for one event about sub (an iss_sub subject).
func (tr *ssfTransmitter) event(typ, iss, sub string) map[string]any {
	ssfSeq++
	return map[string]any{"iss": tr.issuer, "aud": ssfAudience, "iat": time.Now().Unix(),
		"jti":    fmt.Sprintf("jti-%d-%d", time.Now().UnixNano(), ssfSeq),
		"sub_id": map[string]any{"format": "iss_sub", "iss": iss, "sub": sub},
		"events": map[string]any{typ: map[string]any{"event_timestamp": time.Now().Unix()}}}
}

func pushSET(t *testing.T, px *azProxy, set, contentType string) (int, map[string]string) {
	t.Helper()
	return pushSETTo(t, px.base, set, contentType)
}

func pushSETTo(t *testing.T, base, set, contentType string) (int, map[string]string) {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/.portcullis/ssf/events", strings.NewReader(set))
	req.Header.Set("Content-Type", contentType)
	resp, err := tlsClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]string
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out
}

func TestE2ESharedSignals(t *testing.T) {
	tr := newSSFTransmitter(t)
	b := newAZBedWith(t, azOptions{extra: func(b *azBed, i int) string {
		return tr.yaml()
	}})
	p1, p2 := b.px[0], b.px[1]
	alice, bob := b.newClient(), b.newClient()
	alice.signIn(p1, "alice")
	bob.signIn(p2, "bob")
	const revoked = "https://schemas.openid.net/secevent/caep/event-type/session-revoked"

	set := tr.set(nil, tr.event(revoked, b.idp.URL, "sub-alice"))
	if st, out := pushSET(t, p2, set, "application/secevent+jwt"); st != 202 {
		t.Fatalf("session-revoked: %d %v", st, out)
	}
	// Her sessions ended on both replicas at once (sessions live in Redis; the caches are
	// told); bob's did not.
	for _, px := range []*azProxy{p1, p2} {
		deadline := time.Now().Add(5 * time.Second)
		for alice.api(px, "/.portcullis/whoami").status != 401 {
			if time.Now().After(deadline) {
				t.Fatalf("alice still signed in on %s", px.name)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if r := bob.api(px, "/.portcullis/whoami"); r.status != 200 {
			t.Errorf("bob on %s: %d", px.name, r.status)
		}
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	wrongAud := tr.event(revoked, b.idp.URL, "sub-bob")
	wrongAud["aud"] = "https://another-receiver.example"
	stranger := tr.event(revoked, b.idp.URL, "sub-bob")
	stranger["iss"] = "https://rogue.example"
	old := tr.event(revoked, b.idp.URL, "sub-bob")
	old["iat"] = time.Now().Add(-48 * time.Hour).Unix()
	future := tr.event(revoked, b.idp.URL, "sub-bob")
	future["iat"] = time.Now().Add(time.Hour).Unix()
	noJTI := tr.event(revoked, b.idp.URL, "sub-bob")
	delete(noJTI, "jti")
	two := tr.event(revoked, b.idp.URL, "sub-bob")
	two["events"].(map[string]any)["https://schemas.openid.net/secevent/caep/event-type/credential-change"] = map[string]any{}
	for _, tc := range []struct {
		name, set, ct, err string
	}{
		{"a replay", set, "application/secevent+jwt", "invalid_request"},
		{"another key", tr.set(other, tr.event(revoked, b.idp.URL, "sub-bob")), "application/secevent+jwt", "invalid_key"},
		{"another audience", tr.set(nil, wrongAud), "application/secevent+jwt", "invalid_audience"},
		{"another issuer", tr.set(nil, stranger), "application/secevent+jwt", "invalid_issuer"},
		{"another provider's person", tr.set(nil, tr.event(revoked, "https://other-idp.example", "sub-bob")), "application/secevent+jwt", "invalid_request"},
		{"too old", tr.set(nil, old), "application/secevent+jwt", "invalid_request"},
		{"from the future", tr.set(nil, future), "application/secevent+jwt", "invalid_request"},
		{"no jti", tr.set(nil, noJTI), "application/secevent+jwt", "invalid_request"},
		{"two events", tr.set(nil, two), "application/secevent+jwt", "invalid_request"},
		{"not a SET", tr.set(nil, tr.event(revoked, b.idp.URL, "sub-bob")), "application/json", "invalid_request"},
		{"unsigned", strings.Join(strings.Split(tr.set(nil, tr.event(revoked, b.idp.URL, "sub-bob")), ".")[:2], ".") + ".", "application/secevent+jwt", "invalid_key"},
	} {
		if st, out := pushSET(t, p1, tc.set, tc.ct); st != 400 || out["err"] != tc.err {
			t.Errorf("%s: %d %v, want 400 %s", tc.name, st, out, tc.err)
		}
	}
	for _, px := range []*azProxy{p1, p2} {
		if r := bob.api(px, "/.portcullis/whoami"); r.status != 200 {
			t.Errorf("bob after the refused events, on %s: %d", px.name, r.status)
		}
	}
	// A verification event changes nothing and is accepted.
	ver := tr.event("https://schemas.openid.net/secevent/ssf/event-type/verification", b.idp.URL, "sub-bob")
	delete(ver, "sub_id")
	if st, out := pushSET(t, p1, tr.set(nil, ver), "application/secevent+jwt"); st != 202 {
		t.Errorf("verification: %d %v", st, out)
	}
	// Applied and refused events are in the audit trail.
	evs, _, err := b.aud.Before(t.Context(), "", 500)
	if err != nil {
		t.Fatal(err)
	}
	var applied, refused int
	for _, e := range evs {
		switch e.Type {
		case "ssf.event_applied":
			applied++
		case "ssf.event_refused":
			refused++
		}
	}
	if applied != 2 || refused != 11 {
		t.Errorf("audit: %d applied, %d refused", applied, refused)
	}
}

// A credential change at the provider drops the person's step-up elevations: the privileged
// area asks for a fresh one, while the session itself goes on.
func TestE2ESharedSignalsDropElevations(t *testing.T) {
	tr := newSSFTransmitter(t)
	b := newSUBedWith(t, oneServer, func(b *suBed) string {
		return tr.yaml()
	})
	c := b.client()
	c.signIn("alice", "alice-pw", "acme")
	if p := c.stepUp("/admin/users", "alice", "alice-pw", true); p.StatusCode != 200 {
		t.Fatalf("step-up: %d %s", p.StatusCode, p.body)
	}
	if p := c.do("GET", "/admin/users", nil, suAPI); p.StatusCode != 200 {
		t.Fatalf("elevated: %d", p.StatusCode)
	}
	const changed = "https://schemas.openid.net/secevent/caep/event-type/credential-change"
	if st, out := pushSETTo(t, b.base, tr.set(nil, tr.event(changed, b.idp.URL, "sub-alice")), "application/secevent+jwt"); st != 202 {
		t.Fatalf("credential-change: %d %v", st, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		p := c.do("GET", "/admin/users", nil, suAPI)
		if p.StatusCode == 401 && p.reason() == "step_up_required" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still elevated after the credential change: %d %s", p.StatusCode, p.body)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p := c.do("GET", "/app/home", nil, suAPI); p.StatusCode != 200 {
		t.Errorf("the session ended with the elevation: %d", p.StatusCode)
	}
	if !b.hasEvent("ssf.event_applied", changed, store.UserKey(b.idp.URL, "sub-alice")) {
		t.Error("no ssf.event_applied event")
	}
}
