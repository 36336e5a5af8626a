package node

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"time"

	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

// A node takes each meeting's relay policy from its participants, not from
// the control plane: every participant's join names the host key its
// client checked against the meeting link and the newest policy statement
// it verified with it. A relay link is opened or kept only to a peer whose
// certificate that host-signed policy allows (its enrollment key, validity,
// the peer's id and identity key, its country and region), whatever the
// relay token says: a control plane that mints tokens cannot route a
// meeting's media through a node the host's policy blocks.

// Relay refusals on the host's policy (docs/RELAYS.md).
const (
	// CodeRelayNoHostPolicy: the node holds no host-signed policy for the
	// meeting (no participant here named one, or they named different host
	// keys).
	CodeRelayNoHostPolicy = "relay_no_host_policy"
	// CodeRelayNotAllowedByHost: the peer's certified country or region
	// is one the host-signed policy does not allow.
	CodeRelayNotAllowedByHost = "relay_not_allowed_by_host"
	// CodeRelayBadCert: the peer's certificate is missing, not signed by
	// the enrollment key of the host-signed policy, outside its validity,
	// or not for the peer's id and proven identity key.
	CodeRelayBadCert = "relay_bad_cert"
)

// hostForget is how long a meeting's host policy is kept after its last
// participant and link here went: a participant back within it need not
// be the first to name it again.
const hostForget = time.Minute

// meetingHost is what the node knows of one meeting's host.
type meetingHost struct {
	key ed25519.PublicKey // the host key the first participant named
	// conflict: participants named different host keys. The node cannot
	// tell which is the host's, so it relays nothing for the meeting.
	conflict bool
	stmt     *hoststmt.Statement // the newest policy statement verified with key
	rules    policy.Effective    // stmt's rules
	seen     time.Time           // last named by a participant
}

// hostPolicy is a meeting's host policy as checked: nil, or a refusal.
type hostPolicy struct {
	stmt  *hoststmt.Statement
	rules policy.Effective
}

// learnHost takes the host key and policy statement a participant's join
// named. A statement that does not verify with the key is ignored; a
// newer one replaces the one held, and links it no longer allows close.
func (n *Node) learnHost(meeting, participant string, key []byte, statement json.RawMessage) {
	if len(key) != ed25519.PublicKeySize {
		return // an older client, or one without a host key: it names nothing
	}
	log := n.log.With("meeting", meeting, "participant", participant)
	var st *hoststmt.Statement
	if len(statement) > 0 {
		s, err := hoststmt.Parse(statement)
		switch {
		case err != nil:
			log.Warn("participant's host statement ignored", "err", err)
		case s.Kind != hoststmt.KindPolicy:
			log.Warn("participant's host statement ignored", "kind", s.Kind)
		case s.Verify(key) != nil:
			log.Warn("participant's host statement ignored: it does not verify with the host key it named")
		default:
			st = s
		}
	}
	n.hostMu.Lock()
	h := n.hosts[meeting]
	if h == nil {
		h = &meetingHost{key: bytes.Clone(key)}
		n.hosts[meeting] = h
	}
	h.seen = n.now()
	conflictNow := false
	if !bytes.Equal(h.key, key) && !h.conflict {
		h.conflict, conflictNow = true, true
	}
	changed, refused := false, ed25519.PublicKey(nil)
	if !h.conflict && st != nil {
		changed, refused = h.adopt(st)
	}
	n.hostMu.Unlock()
	if refused != nil {
		n.logKeyRefused(meeting, st, refused)
	}
	if conflictNow {
		log.Error("participants of the meeting name different host keys: its relay links are refused",
			"host_key", hoststmt.Fingerprint(key), "held_host_key", hoststmt.Fingerprint(h.key))
	}
	if conflictNow || changed {
		n.recheckLinks(meeting)
	}
}

// adopt takes st if it is newer than the statement held and names the
// same enrollment key: the first statement held fixes the meeting's key,
// since a newer one naming another would let whoever holds that key
// certify a relay peer in any country.
// It says whether st replaced the statement held and, when st was
// refused for its enrollment key, the meeting's key (to log).
func (h *meetingHost) adopt(st *hoststmt.Statement) (changed bool, refusedFor ed25519.PublicKey) {
	if h.stmt != nil && st.Seq <= h.stmt.Seq {
		return false, nil
	}
	if h.stmt != nil && !bytes.Equal(st.EnrollmentKey, h.stmt.EnrollmentKey) {
		return false, h.stmt.EnrollmentKey
	}
	eff, err := st.Effective()
	if err != nil { // Verify checked it already
		return false, nil
	}
	h.stmt, h.rules = st, eff
	return true, nil
}

// logKeyRefused logs a host policy statement refused for changing the
// meeting's enrollment key.
func (n *Node) logKeyRefused(meeting string, st *hoststmt.Statement, held ed25519.PublicKey) {
	n.log.Warn("host policy statement ignored: it names another enrollment key than the meeting's",
		"meeting", meeting, "seq", st.Seq, "enrollment_key", nodecert.KeyID(st.EnrollmentKey), "meeting_enrollment_key", nodecert.KeyID(held))
}

// hostStatement takes a policy statement the control plane passed on
// (CommandHost): it counts only if it verifies with the host key the
// meeting's participants named.
func (n *Node) hostStatement(meeting string, statement json.RawMessage) {
	st, err := hoststmt.Parse(statement)
	if err != nil || st.Kind != hoststmt.KindPolicy {
		return
	}
	n.hostMu.Lock()
	h := n.hosts[meeting]
	changed, refused := false, ed25519.PublicKey(nil)
	verified := h != nil && !h.conflict && st.Verify(h.key) == nil
	if verified {
		changed, refused = h.adopt(st)
	}
	n.hostMu.Unlock()
	if refused != nil {
		n.logKeyRefused(meeting, st, refused)
	}
	if h != nil && !h.conflict && !verified {
		n.log.Warn("host policy statement ignored: it does not verify with the meeting's host key", "meeting", meeting)
	}
	if changed {
		n.recheckLinks(meeting)
	}
}

// hostPolicyFor is the meeting's host policy, or the refusal to relay
// without one.
func (n *Node) hostPolicyFor(meeting string) (hostPolicy, *RelayError) {
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	h := n.hosts[meeting]
	switch {
	case h == nil || h.stmt == nil && !h.conflict:
		return hostPolicy{}, relayRefusal(CodeRelayNoHostPolicy, "node %s holds no host-signed policy for meeting %s", n.info.ID, meeting)
	case h.conflict:
		return hostPolicy{}, relayRefusal(CodeRelayNoHostPolicy, "participants of meeting %s on node %s name different host keys", meeting, n.info.ID)
	}
	return hostPolicy{stmt: h.stmt, rules: h.rules}, nil
}

// checkPeer checks a relay peer's certificate against the host policy:
// signed by its enrollment key, valid now, for the peer's id and for what
// its relay token says of it (claimed; nil skips that, for a link already
// open), whose identity key the peer proves in the handshake, in a country
// and region the rules allow.
func (n *Node) checkPeer(hp hostPolicy, peer string, claimed *token.RelayNode, certText string) *RelayError {
	if certText == "" {
		return relayRefusal(CodeRelayBadCert, "node %s presents no certificate", peer)
	}
	cert, err := nodecert.Verify(hp.stmt.EnrollmentKey, []byte(certText), n.now())
	if err != nil {
		return relayRefusal(CodeRelayBadCert, "node %s: %v", peer, err)
	}
	if cert.NodeID != peer {
		return relayRefusal(CodeRelayBadCert, "node %s presents the certificate of node %s", peer, cert.NodeID)
	}
	if claimed != nil {
		if err := nodecert.Matches(cert, claimed.ID, claimed.Country, claimed.Region, claimed.IdentityKey); err != nil {
			return relayRefusal(CodeRelayBadCert, "node %s: %v", peer, err)
		}
	}
	if !hp.rules.Allows(cert.Country, cert.Region) {
		where := cert.Country
		if cert.Region != "" {
			where += ", region " + cert.Region
		}
		return relayRefusal(CodeRelayNotAllowedByHost, "the host-signed policy does not allow node %s in %s", peer, where)
	}
	return nil
}

// checkRelay is checkPeer under the meeting's host policy.
func (n *Node) checkRelay(meeting, peer string, claimed *token.RelayNode, certText string) *RelayError {
	hp, rerr := n.hostPolicyFor(meeting)
	if rerr != nil {
		return rerr
	}
	return n.checkPeer(hp, peer, claimed, certText)
}

// recheckLinks closes the meeting's links (all meetings' if meeting is "")
// that the host policy no longer allows: a newer statement that blocks the
// peer, participants naming different host keys, a peer certificate that
// has expired.
func (n *Node) recheckLinks(meeting string) {
	for _, r := range n.sfu.Relays() {
		if meeting != "" && r.Meeting != meeting {
			continue
		}
		if rerr := n.checkRelay(r.Meeting, r.Peer, nil, r.PeerCert); rerr != nil {
			n.log.Warn("relay link closed: the host policy no longer allows it", "meeting", r.Meeting, "relay_peer", r.Peer,
				"code", rerr.Code, "reason", rerr.Message)
			n.sfu.CloseLink(r.Meeting, r.Peer)
		}
	}
}

// forgetHosts drops the host policies of meetings that have had no
// participant or link here for hostForget.
func (n *Node) forgetHosts() {
	busy := map[string]bool{}
	for _, r := range n.sfu.Relays() {
		busy[r.Meeting] = true
	}
	now := n.now()
	n.hostMu.Lock()
	defer n.hostMu.Unlock()
	for m, h := range n.hosts {
		if busy[m] || len(n.sfu.Participants(m)) > 0 {
			h.seen = now
			continue
		}
		if now.Sub(h.seen) > hostForget {
			delete(n.hosts, m)
		}
	}
}
