package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
)

// This file is the only place that knows Redis key names. Every key Portcullis writes is built
// here, so the data layout can be read (and changed) in one screen.
//
// Layout (prefix "pc" by default; <x> marks an escaped identifier, see escape):
//
//	pc:{s:<hash>}:sess         session record, by a hash of the cookie (see below)
//	pc:{u:<user>}:sessions     set of the user's session hashes (logout everywhere, offboarding)
//	pc:{u:<user>}:orgs         set of the user's organisation ids (org picker, offboarding)
//	pc:{o:<org>}:org           organisation record
//	pc:{o:<org>}:mem:<user>    membership of user in org
//	pc:{o:<org>}:scim:users    hash of org's SCIM users by id (scim:groups: its groups)
//	pc:{d:<domain>}:org        email domain → organisation index
//	pc:inval                   pub/sub channel of cache invalidations
//	pc:audit                   audit event stream
//
// Hash tags: Redis Cluster hashes only the part between the first "{" and the next "}". The
// prefix may not contain braces and escaped identifiers cannot, so the tag is always exactly the
// one written here: a person's session and indexes share {u:…}, an organisation and its
// memberships share {o:…}, and each can be read or changed in one round trip on one slot. A
// session is found from its cookie alone, before the user is known, so it has a tag of its own.
//
// One exception to "one script, one slot": prefetchScript (prefetch.go) is given only the
// session record's key, reads the user and active_org from it, and then builds and reads
// pc:{o:<org>}:org and pc:{o:<org>}:mem:<user> itself, rebuilding escape in Lua (its output is
// checked against these functions before anything it read is used). Reading keys a script was
// not given is allowed on a single Redis server and behind Sentinel, which is what Portcullis
// supports (New makes a plain or a failover client, never a Cluster one). On Redis Cluster the session and the
// membership live on different slots; that would need the session keyed under its user's tag
// or the prefetch replaced by two round trips.

// DefaultKeyPrefix starts every key when the configuration names no prefix.
const DefaultKeyPrefix = "pc"

// keys builds key names under one prefix. The zero value is not usable; call newKeys.
type keys struct {
	prefix string // with the trailing ":"
}

// newKeys checks the prefix: letters, digits and ".-_:" only (at most 64), so it can hold no hash
// tag and no SCAN pattern characters. Empty means DefaultKeyPrefix.
func newKeys(prefix string) (keys, error) {
	if prefix == "" {
		prefix = DefaultKeyPrefix
	}
	if len(prefix) > 64 {
		return keys{}, errors.New("must be at most 64 characters")
	}
	for _, r := range prefix {
		if !isUnreserved(byte(r)) && r != ':' || r > 0x7f {
			return keys{}, errors.New(`may contain only letters, digits, ".", "-", "_", "~" and ":"`)
		}
	}
	return keys{prefix: prefix + ":"}, nil
}

func (k keys) userTag(user string) string { return k.prefix + "{u:" + escape(user) + "}" }
func (k keys) orgTag(org string) string   { return k.prefix + "{o:" + escape(org) + "}" }

// userSessions is the key of the set of user's session ids.
func (k keys) userSessions(user string) string { return k.userTag(user) + ":sessions" }

// userOrgs is the key of the set of organisations user is a member of.
func (k keys) userOrgs(user string) string { return k.userTag(user) + ":orgs" }

// mailDomains is the key of the set of the email domains user has signed in with (or an
// operator recorded), for the recovery guard's username check (RecordPerson).
func (k keys) mailDomains(user string) string { return k.userTag(user) + ":maildomains" }

// org is the key of an organisation record.
func (k keys) org(org string) string { return k.orgTag(org) + ":org" }

// membership is the key of user's membership in org. It shares org's hash tag so the membership
// and the organisation it depends on are read in one round trip.
func (k keys) membership(org, user string) string { return k.orgTag(org) + ":mem:" + escape(user) }

// domainOrg is the key of the index from an email domain to the organisation holding it. The
// caller canonicalises the domain (lower case, IDNA) first: keys compare bytes.
func (k keys) domainOrg(domain string) string { return k.prefix + "{d:" + escape(domain) + "}:org" }

// invalidations is the pub/sub channel on which changes are announced to every replica's cache.
func (k keys) invalidations() string { return k.prefix + "inval" }

// audit is the key of the audit event stream.
func (k keys) audit() string { return k.prefix + "audit" }

// escape makes an identifier safe to embed in a key. RFC 3986 unreserved bytes (letters, digits,
// "-", ".", "_", "~") stay as they are, so typical ids, session ids (base64url) and domains
// remain readable in redis-cli; every other byte becomes %XX. The mapping is injective (distinct
// ids give distinct keys, because "%" itself is escaped) and its output never contains "{", "}"
// or ":" (so an id can neither end its hash tag nor fake a key segment) nor the SCAN pattern
// characters "*", "?", "[", "]", "\" (so a key can be matched literally).
//
// Escaping rather than hashing keeps keys reversible for operators debugging a live system; the
// IdP's subject is a pseudonymous identifier, not a secret. Callers reject empty identifiers
// before they get here; escape maps "" to "".
func escape(id string) string {
	n := 0
	for i := 0; i < len(id); i++ {
		if !isUnreserved(id[i]) {
			n++
		}
	}
	if n == 0 {
		return id
	}
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	b.Grow(len(id) + 2*n)
	for i := 0; i < len(id); i++ {
		c := id[i]
		if isUnreserved(c) {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&0xf])
	}
	return b.String()
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// Session keys (package session, store/sessions.go). A session record is keyed by a hash of
// the cookie (the caller hashes: a Redis dump then holds no usable cookie). The indexes name
// sessions by that hash too.
//
//	pc:{s:<hash>}:sess              session record
//	pc:{u:<user>}:sessions          set of the user's session hashes (see userSessions)
//	pc:{i:<iss>:<sid>}:sessions     set of session hashes for one OIDC session at one issuer
//	pc:{l:<hash>}:login             a started sign-in (state hash), single use
//	pc:{j:<iss>:<jti>}:jti          a back-channel logout token id already used

// sessionRecord is the key of the session record whose cookie hashes to h.
func (k keys) sessionRecord(h string) string { return k.prefix + "{s:" + escape(h) + "}:sess" }

// sidSessions is the key of the set of session hashes created from the OIDC session sid of
// issuer iss. Both parts are escaped, so the ":" between them cannot be forged.
func (k keys) sidSessions(iss, sid string) string {
	return k.prefix + "{i:" + escape(iss) + ":" + escape(sid) + "}:sessions"
}

// loginState is the key of a started sign-in, by the hash of its state parameter.
func (k keys) loginState(h string) string { return k.prefix + "{l:" + escape(h) + "}:login" }

// logoutJTI is the key remembering a back-channel logout token id of issuer iss.
func (k keys) logoutJTI(iss, jti string) string {
	return k.prefix + "{j:" + escape(iss) + ":" + escape(jti) + "}:jti"
}

// setJTI is the key remembering a Security Event Token's jti (session/ssf.go).
func (k keys) setJTI(iss, jti string) string {
	return k.prefix + "{e:" + escape(iss) + ":" + escape(jti) + "}:setjti"
}

// Organisation keys (store/orgs.go), beside those in the layout above:
//
//	pc:{o:<org>}:members    set of user keys with a membership record in org (any status)
//	pc:orgs                 set of every organisation id (listings, review sweeps)
//	pc:{e:<email>}:inv      hash of pending invitations to one canonical email, field = org id

// orgMembers is the key of the set of users with a membership record in org.
func (k keys) orgMembers(org string) string { return k.orgTag(org) + ":members" }

// scimUsers and scimGroups are the hashes of an organisation's SCIM records, by resource id
// (store/scim.go): beside its memberships, under its tag.
func (k keys) scimUsers(org string) string  { return k.orgTag(org) + ":scim:users" }
func (k keys) scimGroups(org string) string { return k.orgTag(org) + ":scim:groups" }

// orgIDs is the key of the set of every organisation id.
func (k keys) orgIDs() string { return k.prefix + "orgs" }

// invitations is the key of the pending invitations to email, which the caller has
// canonicalised (lower case): an address is an attribute, so it gets its own tag and is never
// mixed with a person's {u:…} data.
func (k keys) invitations(email string) string { return k.prefix + "{e:" + escape(email) + "}:inv" }

// orgInvitations is the key of the set of canonical emails with an invitation to org (an
// index: an email whose invitation is gone is skipped when listed, and dropped then).
func (k keys) orgInvitations(org string) string { return k.orgTag(org) + ":invs" }

// Access request keys (store/requests.go):
//
//	pc:{o:<org>}:req:<id>    a request (its id is "req_" and 16 base32 characters)
//	pc:{o:<org>}:reqs        sorted set of the org's request ids, by creation time
//	pc:{u:<user>}:reqs       sorted set of "org/id" of the requests for a person
//	pc:{t:<hash>}:token      an admin API token, by the hash of its secret
//	pc:tokens                sorted set of "id hash" of every admin API token, by creation
//	pc:tokens:used           hash of token id → when it was last used (Unix seconds)

// request is the key of request id of org; it shares the org's tag with the membership it
// grants, so an approval writes both in one transaction on one slot.
func (k keys) request(org, id string) string { return k.orgTag(org) + ":req:" + escape(id) }

// orgRequests is the key of the sorted set of org's request ids.
func (k keys) orgRequests(org string) string { return k.orgTag(org) + ":reqs" }

// userRequests is the key of the sorted set of the requests for user, as "org/id".
func (k keys) userRequests(user string) string { return k.userTag(user) + ":reqs" }

// review is the key of access review campaign id of org; orgReviews the sorted set of org's
// campaign ids. They share the org's tag with the memberships a decision writes.
func (k keys) review(org, id string) string { return k.orgTag(org) + ":review:" + escape(id) }
func (k keys) orgReviews(org string) string { return k.orgTag(org) + ":reviews" }

// lastUsed is the key of the hash of when each member of org last used their membership
// (user → Unix seconds), written coalesced (UseRecorder).
func (k keys) lastUsed(org string) string { return k.orgTag(org) + ":used" }

// delegators is the key of the set of organisations that have delegated their
// administration to org (Delegate adds them): a listing's hint, each entry re-checked against
// the delegating organisation's record, which alone grants anything.
func (k keys) delegators(org string) string { return k.orgTag(org) + ":delegators" }

// token is the key of an admin API token, by the hash of its secret.
func (k keys) token(h string) string { return k.prefix + "{t:" + escape(h) + "}:token" }

// tokens is the key of the index of every admin API token.
func (k keys) tokens() string { return k.prefix + "tokens" }

// tokensUsed is the key of the hash of when each admin API token was last used (id → Unix
// seconds), written coalesced (TokenUsed).
func (k keys) tokensUsed() string { return k.prefix + "tokens:used" }

// assertionKey is the development signing key for request assertions, shared by replicas.
func (k keys) assertionKey(alg string) string {
	if alg == "" || alg == "ES256" {
		return k.prefix + "assertion-key" // as it always was
	}
	return k.prefix + "assertion-key:" + alg
}

// Recovery guard keys (store/recovery.go). Addresses, usernames and client addresses are
// hashed (see recoveryHash) before they become keys: a key listing then reveals neither who
// asked for a reset nor from where.
//
//	pc:{p:<hash>}:person               person (user key) last signed in with one canonical email
//	pc:{n:<hash>}:person               person a portal username belongs to (filled by an admin)
//	pc:{u:<user>}:maildomains          the email domains a person has signed in with
//	pc:{ri:<hash>}:<route>:<window>    recovery requests for one identifier in one window
//	pc:{rc:<hash>}:<route>:<window>    recovery requests from one client address in one window

// personByEmail is the key of the person who signed in with the canonical address of hash h.
func (k keys) personByEmail(h string) string { return k.prefix + "{p:" + escape(h) + "}:person" }

// personByUsername is the key of the person the portal username of hash h belongs to.
func (k keys) personByUsername(h string) string { return k.prefix + "{n:" + escape(h) + "}:person" }

// recoveryIdentifierCount is the key counting recovery requests for the identifier of hash h
// on route in window number win.
func (k keys) recoveryIdentifierCount(h, route string, win int64) string {
	return k.prefix + "{ri:" + escape(h) + "}:" + escape(route) + ":" + strconv.FormatInt(win, 10)
}

// recoveryClientCount is the key counting recovery requests from the client address of hash h
// on route in window number win.
func (k keys) recoveryClientCount(h, route string, win int64) string {
	return k.prefix + "{rc:" + escape(h) + "}:" + escape(route) + ":" + strconv.FormatInt(win, 10)
}

// Session cache invalidations (store/session_cache.go):
//
//	pc:sinval    pub/sub channel: a message is the handle of a session record that changed or
//	             ended (updated, deleted, revoked), so every replica drops its cached copy

// sessionInvalidations is the pub/sub channel on which session changes are announced. It is
// apart from invalidations (memberships), whose readers drop everything on a message they do
// not understand.
func (k keys) sessionInvalidations() string { return k.prefix + "sinval" }

// Sign-in handoff keys (store/handoff.go): a browser on an organisation host H gets its session
// from the sign-in host's session through a handoff request (named by a hash of the token in
// the URL to the sign-in host) and a one-time code (named by a hash of the code the browser
// posts to H). A family set names every session created from one sign-in in one browser, so
// signing out of one ends them all.
//
//	pc:{hr:<hash>}:handoff     a handoff request, single use, 10 minutes
//	pc:{hc:<hash>}:handoff     a handoff code, single use, 60 seconds
//	pc:{f:<family>}:family     set of the session hashes of one sign-in's family
//	pc:{f:<family>}:reval      the family's revalidation record (its sealed refresh token)
//	pc:{f:<family>}:reval:lease who is revalidating the family now, for seconds

// handoffRequest is the key of a handoff request, by the hash of its token.
func (k keys) handoffRequest(h string) string { return k.prefix + "{hr:" + escape(h) + "}:handoff" }

// handoffCode is the key of a handoff code, by the hash of the code.
func (k keys) handoffCode(h string) string { return k.prefix + "{hc:" + escape(h) + "}:handoff" }

// sessionFamily is the key of the set of session hashes created from one sign-in.
func (k keys) sessionFamily(family string) string {
	return k.prefix + "{f:" + escape(family) + "}:family"
}

// providers is the hash of the managed OpenID Providers, by name; providerChanges the channel
// their changes are announced on.
func (k keys) providers() string       { return k.prefix + "providers" }
func (k keys) providerChanges() string { return k.prefix + "providers:changed" }

// providerIssuers is the hash of every issuer a managed provider's name ever had, by name,
// kept after deletion: a name never points at another issuer.
func (k keys) providerIssuers() string { return k.prefix + "providers:issuers" }

// revalidation is the key of the revalidation record of a sign-in's family, beside the
// family's set (same slot).
func (k keys) revalidation(family string) string {
	return k.prefix + "{f:" + escape(family) + "}:reval"
}

// revalidationLease is the key of the lease of the one replica revalidating a family.
func (k keys) revalidationLease(family string) string { return k.revalidation(family) + ":lease" }

// Machine identity keys (store/machines.go). A machine's record is a membership (see the
// organisation keys); its credentials are found through two indexes, each naming the machine:
//
//	pc:{k:<key id>}:apikey    an API key's index entry: org, machine, the SHA-256 of the key
//	pc:{c:<hash>}:client      a federated client's index entry: org, machine, issuer, subject,
//	                          by 128 bits of the SHA-256 of issuer and subject
//
// An entry on its own grants nothing: the machine's record must list the key or the client.

// apiKeyIndex is the key of the index entry of API key id (an APIKeyOwner).
func (k keys) apiKeyIndex(id string) string { return k.prefix + "{k:" + escape(id) + "}:apikey" }

// clientIndexID is the index id of issuer's subject.
func clientIndexID(issuer, subject string) string {
	sum := sha256.Sum256([]byte("portcullis/client\x00" + issuer + "\x00" + subject))
	return hex.EncodeToString(sum[:16])
}

// clientIndex is the key of the index entry of issuer's subject.
func (k keys) clientIndex(issuer, subject string) string {
	return k.prefix + "{c:" + clientIndexID(issuer, subject) + "}:client"
}
