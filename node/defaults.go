package node

import (
	"crypto/rand"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/signal"
)

// DefaultID is the id a node gets when its operator names none:
// "<country>-<region>" (e.g. "de-eu-central-1"), or "<country>-" and four
// random letters when it has no region either, so that two such nodes in
// one country do not collide.
func DefaultID(country, region string) string {
	suffix := region
	if suffix == "" {
		suffix = randomSuffix()
	}
	return strings.ToLower(country) + "-" + suffix
}

func randomSuffix() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	var b [4]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 32 letters: no bias
	}
	return string(b[:])
}

// WebSocketLimits bound every signaling connection a node accepts (from
// participants and from other nodes' relay links). Zero fields take the
// defaults of DefaultWebSocketLimits; a negative duration turns that check
// off.
type WebSocketLimits struct {
	// FirstMessageBytes caps the one message a connection may send before
	// its token is checked (a join or a link): an unauthenticated peer
	// cannot make the node buffer more.
	FirstMessageBytes int64
	// MessageBytes caps one message afterwards. A larger frame ends the
	// connection (close status 1009); a message within it but over the
	// protocol's own limits is answered with an error and the connection
	// stays.
	MessageBytes int64
	// JoinTimeout is how long a new connection may take to send its first
	// message.
	JoinTimeout time.Duration
	// PingInterval is how often the node pings a quiet connection, and
	// PongTimeout how long it waits for the pong before it closes it.
	PingInterval time.Duration
	PongTimeout  time.Duration
	// IdleTimeout closes a connection from which nothing (no message, no
	// pong) has arrived for this long.
	IdleTimeout time.Duration
	// NegotiationTimeout is how long a participant may stay after its join
	// without any of its PeerConnections reaching connected (ICE and
	// DTLS); then the node drops it (leave reason
	// signal.ReasonNegotiationTimeout) and the control plane frees its seat.
	NegotiationTimeout time.Duration
	// MaxPending caps the connections that have not yet sent their first
	// message, node-wide, and MaxPendingPerIP those from one remote
	// address: an upgrade over either is answered 503 or 429 before the
	// WebSocket is accepted. A negative value turns that cap off.
	MaxPending      int
	MaxPendingPerIP int
}

// DefaultWebSocketLimits are the limits a node uses unless told otherwise.
// MessageBytes leaves room above signal.MaxRelayBytes so that a relay
// message over the protocol's limit is refused by the protocol, not by the
// transport.
func DefaultWebSocketLimits() WebSocketLimits {
	return WebSocketLimits{
		FirstMessageBytes:  signal.MaxMessageBytes,
		MessageBytes:       signal.MaxRelayBytes + signal.MaxMessageBytes,
		JoinTimeout:        5 * time.Second,
		PingInterval:       15 * time.Second,
		PongTimeout:        10 * time.Second,
		IdleTimeout:        45 * time.Second,
		NegotiationTimeout: 20 * time.Second,
		MaxPending:         1024,
		MaxPendingPerIP:    32,
	}
}

// withDefaults fills zero fields from DefaultWebSocketLimits.
func (w WebSocketLimits) withDefaults() WebSocketLimits {
	d := DefaultWebSocketLimits()
	if w.FirstMessageBytes <= 0 {
		w.FirstMessageBytes = d.FirstMessageBytes
	}
	if w.MessageBytes <= 0 {
		w.MessageBytes = d.MessageBytes
	}
	for _, f := range []struct{ v, def *time.Duration }{
		{&w.JoinTimeout, &d.JoinTimeout}, {&w.PingInterval, &d.PingInterval},
		{&w.PongTimeout, &d.PongTimeout}, {&w.IdleTimeout, &d.IdleTimeout},
		{&w.NegotiationTimeout, &d.NegotiationTimeout},
	} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if w.MaxPending == 0 {
		w.MaxPending = d.MaxPending
	}
	if w.MaxPendingPerIP == 0 {
		w.MaxPendingPerIP = d.MaxPendingPerIP
	}
	if w.JoinTimeout < 0 {
		w.JoinTimeout = d.JoinTimeout // a first message is always awaited with a bound
	}
	return w
}

// DefaultBitratePerCoreBps is the traffic, in plus out, one core of a
// media node is given by default: what placement counts as full. On the
// project's machine one core forwarded about 500 Mbit/s of 1.52 Mbit/s
// video streams (some 300 streams, fanned out from one publisher: the
// shape with the most per-subscriber work) at 99.9 % delivery
// (docs/BENCHMARKS.md, "Capacity"); the default takes 60 % of that, the
// rest left for joins (each a DTLS handshake), retransmissions, key frames
// and bursts.
const DefaultBitratePerCoreBps = 300_000_000

// DefaultMaxBitrate is a node's default capacity in bits per second on
// cores cores (at least one).
func DefaultMaxBitrate(cores int) int64 {
	return int64(max(cores, 1)) * DefaultBitratePerCoreBps
}
