package devidp

import (
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// ACR values this provider issues. They name what the user did in this login,
// so a relying party can demand the stronger one for privileged routes.
const (
	// ACRPassword is issued when the user presented a password only.
	ACRPassword = "urn:portcullis:acr:pwd"
	// ACRMFA is issued when the user presented a password and a valid TOTP code.
	ACRMFA = "urn:portcullis:acr:mfa"
)

// Paths served by Handler, relative to the issuer URL. The OIDC endpoints are
// the op library's defaults and are advertised in the discovery document.
const (
	pathLogin     = "/login"
	pathLoggedOut = "/logged-out"
)

// Config describes one provider. It is read once by New.
type Config struct {
	// Issuer is the exact URL the Handler is served at, e.g. the URL of an
	// httptest.Server, optionally with a path, without a trailing slash; the
	// "iss" claim is this string. Required. It must be https unless
	// AllowInsecureIssuer is set.
	Issuer string

	// AllowInsecureIssuer permits an http:// issuer. Tokens and passwords then
	// cross the network in clear text: it MUST NOT be used outside tests and
	// local development. New logs a warning when it is set.
	AllowInsecureIssuer bool

	// Clients are the relying parties allowed to use the provider.
	Clients []Client

	// Users are the people who can log in.
	Users []User

	// Now is the clock used for auth_time, for validating TOTP codes, for the
	// lifetime of auth requests and codes, and for logout tokens. nil means
	// time.Now. The iat and exp of ID tokens and the lifetime of access
	// tokens come from the wall clock, because the op library reads it
	// directly.
	Now func() time.Time

	// Logger receives the provider's own log lines. nil discards them.
	// (The op library logs through slog's default logger; that cannot be
	// changed without changing the process-wide default.)
	Logger *slog.Logger

	// BackchannelClient sends back-channel logout requests. nil means
	// http.DefaultClient; tests serving the receiving endpoint over TLS pass
	// that server's Client().
	BackchannelClient *http.Client
}

// Client is a registered relying party.
type Client struct {
	// ID is the client_id. Required.
	ID string
	// Secret authenticates the client at the token endpoint with
	// client_secret_basic or client_secret_post. Empty makes it a public
	// client, which can only use the code flow with PKCE.
	Secret string
	// RedirectURIs are the exact redirect_uri values accepted. At least one.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the exact post_logout_redirect_uri values
	// accepted at the end_session endpoint.
	PostLogoutRedirectURIs []string
	// BackchannelLogoutURI receives logout tokens from SendBackchannelLogout.
	// Empty means the client is not told.
	BackchannelLogoutURI string
	// ClientCredentials lets the client use the client_credentials grant (it
	// needs a Secret): a machine signing in as itself, its client_id the
	// token's subject. Such a client needs no RedirectURIs.
	ClientCredentials bool
	// JWTAccessTokens makes its access tokens signed JWTs (RFC 9068 style)
	// instead of opaque ones, so a resource server can verify them itself.
	JWTAccessTokens bool
	// Audience is the "aud" of its client-credentials access tokens; empty:
	// the client_id.
	Audience []string
	// Claims are further claims of its client-credentials access tokens, such
	// as {"roles": ["portcullis-operator"]}.
	Claims map[string]any
	// AccessTokenLifetime, when set, is how long its client-credentials access
	// tokens are valid (default 5 minutes): short, to see a token expire.
	AccessTokenLifetime time.Duration
}

// User is a person who can log in.
type User struct {
	// Subject is the stable "sub" claim. Required and unique; it is the
	// identity, unlike Email.
	Subject string
	// Username is what the login form asks for. Required and unique.
	Username string
	// Password is compared in constant time. Required.
	Password string
	// Email, EmailVerified and Name are released with the email and profile
	// scopes.
	Email         string
	EmailVerified bool
	Name          string
	// TOTPSecret is the base32 RFC 6238 secret (SHA-1, 6 digits, 30 s) of
	// the user's second factor. Empty means the user has none and can only
	// reach ACRPassword.
	TOTPSecret string
}

// Provider is a running OpenID Provider. Its methods are safe for concurrent
// use.
type Provider struct {
	issuer  string
	log     *slog.Logger
	now     func() time.Time
	st      *storage
	op      *op.Provider
	handler http.Handler
	bcc     *http.Client
}

// New validates cfg, generates a signing key and builds the provider. It
// reports every configuration problem at once.
func New(cfg Config) (*Provider, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	issuer := cfg.Issuer
	p := &Provider{
		issuer: issuer,
		log:    cfg.Logger,
		now:    cfg.Now,
		bcc:    cfg.BackchannelClient,
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.bcc == nil {
		p.bcc = http.DefaultClient
	}
	st, err := newStorage(issuer, cfg.Clients, cfg.Users, p.now)
	if err != nil {
		return nil, fmt.Errorf("devidp: %w", err)
	}
	p.st = st

	// The key only encrypts opaque access tokens, which live as long as the
	// process, so a fresh random one per process is right.
	var cryptoKey [32]byte
	if _, err := rand.Read(cryptoKey[:]); err != nil {
		return nil, fmt.Errorf("devidp: crypto key: %w", err)
	}
	opCfg := &op.Config{
		CryptoKey:                         cryptoKey,
		DefaultLogoutRedirectURI:          issuer + pathLoggedOut,
		CodeMethodS256:                    true,
		GrantTypeRefreshToken:             true,
		AuthMethodPost:                    true,
		SupportedUILocales:                []language.Tag{language.English},
		BackChannelLogoutSupported:        true,
		BackChannelLogoutSessionSupported: true,
		SupportedClaims: []string{
			"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "acr", "amr", "azp", "sid",
			"email", "email_verified", "name", "preferred_username",
		},
	}
	var opts []op.Option
	if cfg.AllowInsecureIssuer {
		opts = append(opts, op.WithAllowInsecure())
		p.log.Warn("devidp: AllowInsecureIssuer is set; tokens and passwords may cross the network in clear text", "issuer", issuer)
	}
	p.op, err = op.NewProvider(opCfg, st, op.StaticIssuer(issuer), opts...)
	if err != nil {
		return nil, fmt.Errorf("devidp: op provider: %w", err)
	}
	p.handler = p.routes()
	return p, nil
}

// routes assembles the handler: the login form and a logged-out page beside
// the op library's endpoints, all under the issuer's path.
func (p *Provider) routes() http.Handler {
	login := &loginUI{st: p.st, issuer: p.issuer, log: p.log, now: p.now, callback: op.AuthCallbackURL(p.op)}
	mux := http.NewServeMux()
	mux.Handle(pathLogin, op.NewIssuerInterceptor(p.op.IssuerFromRequest).Handler(login))
	mux.HandleFunc(pathLoggedOut, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "signed out")
	})
	mux.Handle("/", p.op)
	u, _ := url.Parse(p.issuer) // validated in New
	if prefix := strings.TrimSuffix(u.Path, "/"); prefix != "" {
		return http.StripPrefix(prefix, mux)
	}
	return mux
}

// Handler serves discovery (/.well-known/openid-configuration), authorize,
// token, JWKS, userinfo, end_session and the login form. Mount it so that it
// receives the requests for the issuer URL and everything below it, paths
// unchanged: a prefix in the issuer's path is stripped here.
func (p *Provider) Handler() http.Handler { return p.handler }

// Issuer returns the issuer URL as it appears in the "iss" claim.
func (p *Provider) Issuer() string { return p.issuer }

var _ op.Storage = (*storage)(nil)

// validate reports every problem in cfg, each with its place.
func (c *Config) validate() error {
	var errs []error
	bad := func(place, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: "+format, append([]any{place}, args...)...))
	}
	if c.Issuer == "" {
		bad("issuer", "required")
	} else if strings.HasSuffix(c.Issuer, "/") {
		// The "iss" claim must equal the issuer the relying party has
		// configured, byte for byte; say which one that is.
		bad("issuer", "%q: must not end with a slash", c.Issuer)
	} else if err := op.ValidateIssuer(c.Issuer, c.AllowInsecureIssuer); err != nil {
		if errors.Is(err, op.ErrInvalidIssuerHTTPS) {
			bad("issuer", "%q: must be https unless AllowInsecureIssuer is set", c.Issuer)
		} else {
			bad("issuer", "%q: %v", c.Issuer, err)
		}
	}
	if len(c.Clients) == 0 {
		bad("clients", "at least one client is required")
	}
	ids := map[string]bool{}
	for i, cl := range c.Clients {
		place := fmt.Sprintf("clients[%d]", i)
		unique(bad, place+".id", cl.ID, ids)
		if cl.ClientCredentials && cl.Secret == "" {
			bad(place+".client_credentials", "needs a secret")
		}
		if len(cl.RedirectURIs) == 0 && !cl.ClientCredentials {
			bad(place+".redirect_uris", "at least one is required")
		}
		for j, u := range cl.RedirectURIs {
			checkAbsURL(bad, fmt.Sprintf("%s.redirect_uris[%d]", place, j), u)
		}
		for j, u := range cl.PostLogoutRedirectURIs {
			checkAbsURL(bad, fmt.Sprintf("%s.post_logout_redirect_uris[%d]", place, j), u)
		}
		if cl.BackchannelLogoutURI != "" {
			checkAbsURL(bad, place+".backchannel_logout_uri", cl.BackchannelLogoutURI)
		}
	}
	subs, names := map[string]bool{}, map[string]bool{}
	for i, u := range c.Users {
		place := fmt.Sprintf("users[%d]", i)
		unique(bad, place+".subject", u.Subject, subs)
		unique(bad, place+".username", u.Username, names)
		if u.Password == "" {
			bad(place+".password", "required")
		}
		if u.TOTPSecret != "" {
			if _, err := decodeTOTPSecret(u.TOTPSecret); err != nil {
				bad(place+".totp_secret", "not base32: %v", err)
			}
		}
	}
	return errors.Join(errs...)
}

// unique reports v at place as missing or as a duplicate of one in seen, and adds it.
func unique(bad func(string, string, ...any), place, v string, seen map[string]bool) {
	switch {
	case v == "":
		bad(place, "required")
	case seen[v]:
		bad(place, "duplicate %q", v)
	}
	seen[v] = true
}

func checkAbsURL(bad func(string, string, ...any), place, raw string) {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Host == "" {
		bad(place, "%q: must be an absolute URL", raw)
	}
}

// mfaRequested reports whether the relying party asked for the MFA level.
func mfaRequested(acrValues []string) bool {
	for _, v := range acrValues {
		if v == ACRMFA {
			return true
		}
	}
	return false
}
