// Package cluster is the contract between the control plane and media nodes
// over NATS: the subjects they use and the messages they exchange. It holds
// types and names only, so both sides agree by importing one place.
package cluster

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Subjects. A node id is a single NATS token (see ValidNodeID), and every
// subject of a node carries it, so NATS permissions can give each node its
// own subjects and nothing else (package natsauth).

// SubjectHeartbeat is where node id sends a Heartbeat every heartbeat
// interval; its registration (Heartbeat.Node) travels with it. "*" is every
// node's.
func SubjectHeartbeat(nodeID string) string { return nodeSubject(nodeID, "heartbeat") }

// SubjectEvents is where node id reports events (participants connecting
// and leaving) to the control plane. "*" is every node's.
func SubjectEvents(nodeID string) string { return nodeSubject(nodeID, "events") }

// SubjectCommand is where a node listens for commands from the control plane.
func SubjectCommand(nodeID string) string { return nodeSubject(nodeID, "cmd") }

func nodeSubject(nodeID, kind string) string { return "oakmeet.node." + nodeID + "." + kind }

// SubjectNode is the node id a node subject names, and ok false for any
// other subject. The control plane believes a message only from the node
// its subject names, since only that node may publish there.
func SubjectNode(subject string) (id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "oakmeet.node.")
	if !ok {
		return "", false
	}
	id, _, ok = strings.Cut(rest, ".")
	return id, ok && ValidNodeID(id) == nil
}

// KV buckets and keys.
const (
	BucketNodes    = "oakmeet_nodes"
	BucketMeetings = "oakmeet_meetings"
	BucketControl  = "oakmeet_control"
	// KeyTokenPublicKey holds the control plane's Ed25519 public key (raw
	// 32 bytes). A node not given the key at start asks the leader for it
	// once (SubjectTokenKey) and pins it; nothing written here later
	// changes what it accepts.
	KeyTokenPublicKey = "token_public_key"
	// KeyTokenRotation holds the token key's rotation statements, one a
	// line, oldest first (token.SignRotation); the leader hands them to
	// nodes in its TokenKeyAnswer. Nodes pin the token key and
	// move to another only along statements signed by the key they hold.
	KeyTokenRotation = "token_key_rotation"
	// StreamAudit holds the audit log; entries are on AuditSubject(chain).
	StreamAudit = "OAKMEET_AUDIT"
)

// AuditSubject is the subject of one audit chain ("" is the deployment's own
// chain, for entries that belong to no meeting).
func AuditSubject(chain string) string {
	if chain == "" {
		return "oakmeet.audit._"
	}
	return "oakmeet.audit.m." + chain
}

// AuditSubjectAll matches every audit chain's subject.
const AuditSubjectAll = "oakmeet.audit.>"

// Timing is every clock setting that the control plane and media nodes
// share. Production uses DefaultTiming; tests shrink it so that a node loss
// or a move plays out in milliseconds instead of seconds.
type Timing struct {
	// HeartbeatInterval is how often nodes report; a node silent for
	// HeartbeatTimeout is unhealthy.
	HeartbeatInterval time.Duration
	HeartbeatTimeout  time.Duration
	// MoveDeadline is how long a participant asked to move has to connect
	// elsewhere before it is disconnected.
	MoveDeadline time.Duration
	// ReplacedGrace is how long the old connection of a participant that
	// has moved may linger (make before break) before its node closes it.
	ReplacedGrace time.Duration
	// SeatGrace is how long after its join token expires a placed
	// participant that never connected keeps its seat when the control
	// plane holds no shorter pending hold (control.Limits.PendingHold,
	// which by default releases it much sooner).
	SeatGrace time.Duration
	// RelayResend is how often a wanted relay link is ordered again (with
	// a fresh token), in case a command was lost.
	RelayResend time.Duration
	// TrafficEvery is how often forwarded bytes are written to a meeting.
	TrafficEvery time.Duration
	// CheckpointEvery is how soon after an audit entry the control plane
	// signs a checkpoint that includes it, and so how often clients look
	// for a new one while the log grows.
	CheckpointEvery time.Duration
	// SweepInterval is how often the leader plans every active meeting
	// as a safety net; between sweeps enforcement reacts to changes (the
	// meetings bucket's watch, node health and events) and to each
	// meeting's own next deadline.
	SweepInterval time.Duration
}

// DefaultTiming is the production setting.
func DefaultTiming() Timing {
	return Timing{
		HeartbeatInterval: time.Second,
		HeartbeatTimeout:  3 * time.Second,
		MoveDeadline:      5 * time.Second,
		ReplacedGrace:     10 * time.Second,
		SeatGrace:         10 * time.Second,
		RelayResend:       5 * time.Second,
		TrafficEvery:      2 * time.Second,
		CheckpointEvery:   2 * time.Second,
		SweepInterval:     30 * time.Second,
	}
}

// WithDefaults fills every zero field from DefaultTiming.
func (t Timing) WithDefaults() Timing {
	d := DefaultTiming()
	fill := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	fill(&t.HeartbeatInterval, d.HeartbeatInterval)
	fill(&t.HeartbeatTimeout, d.HeartbeatTimeout)
	fill(&t.MoveDeadline, d.MoveDeadline)
	fill(&t.ReplacedGrace, d.ReplacedGrace)
	fill(&t.SeatGrace, d.SeatGrace)
	fill(&t.RelayResend, d.RelayResend)
	fill(&t.TrafficEvery, d.TrafficEvery)
	fill(&t.CheckpointEvery, d.CheckpointEvery)
	fill(&t.SweepInterval, d.SweepInterval)
	return t
}

// TimingForHeartbeat is DefaultTiming with every setting scaled so that
// nodes report every interval: a deployment sets one number, and the node
// timeout, move deadline and the rest keep their ratios to it. Every process
// of a deployment must use the same interval.
func TimingForHeartbeat(interval time.Duration) (Timing, error) {
	if interval < 10*time.Millisecond || interval > time.Minute {
		return Timing{}, fmt.Errorf("heartbeat interval %s: must be between 10ms and 1m", interval)
	}
	return DefaultTiming().Scaled(float64(DefaultTiming().HeartbeatInterval) / float64(interval)), nil
}

// Scaled divides every setting by f (f > 1 makes everything faster), the
// ratios between them kept. Tests use it with a factor of 10 to 20.
func (t Timing) Scaled(f float64) Timing {
	t = t.WithDefaults()
	s := func(d time.Duration) time.Duration { return max(time.Duration(float64(d)/f), time.Millisecond) }
	return Timing{
		HeartbeatInterval: s(t.HeartbeatInterval),
		HeartbeatTimeout:  s(t.HeartbeatTimeout),
		MoveDeadline:      s(t.MoveDeadline),
		ReplacedGrace:     s(t.ReplacedGrace),
		SeatGrace:         s(t.SeatGrace),
		RelayResend:       s(t.RelayResend),
		TrafficEvery:      s(t.TrafficEvery),
		CheckpointEvery:   s(t.CheckpointEvery),
		SweepInterval:     s(t.SweepInterval),
	}
}

// Load is what a node reports about its own work.
type Load struct {
	Participants  int     `json:"participants"`
	Meetings      int     `json:"meetings"`
	TracksIn      int     `json:"tracks_in"`
	TracksOut     int     `json:"tracks_out"`
	BitrateInBps  int64   `json:"bitrate_in_bps"`
	BitrateOutBps int64   `json:"bitrate_out_bps"`
	CPU           float64 `json:"cpu"` // share of one core used by the node process since the last report
}

// NodeInfo is a node's registration: who and where it is.
type NodeInfo struct {
	ID              string    `json:"id"`
	Country         string    `json:"country"`
	Region          string    `json:"region,omitempty"`
	Lat             float64   `json:"lat"`
	Lon             float64   `json:"lon"`
	URL             string    `json:"url"`
	MaxParticipants int       `json:"max_participants"`
	MaxBitrateBps   int64     `json:"max_bitrate_bps"`
	Started         time.Time `json:"started"`
	// IdentityKey is the node's Ed25519 public key; relay links between
	// nodes are authenticated with it, vouched for by the control plane.
	IdentityKey []byte `json:"identity_key,omitempty"`
	// Cert is the node's certificate from its enrollment (package
	// nodecert): the control plane believes the id, country, region and
	// identity key above only as far as this vouches for them.
	Cert string `json:"cert,omitempty"`
	// TURN is the node's built-in TURN server, if it runs one.
	TURN *TURNService `json:"turn,omitempty"`
}

// TURNService is a node's TURN server: its URLs, and its public X25519
// key that the control plane derives each credential's password with
// (package turncred), signed by the node's identity key. Nothing in it is
// secret.
type TURNService struct {
	URLs   []string `json:"urls"`
	Key    []byte   `json:"key"`
	KeySig []byte   `json:"key_sig"`
}

// Heartbeat is a node's periodic report.
type Heartbeat struct {
	Node     NodeInfo `json:"node"`
	Load     Load     `json:"load"`
	Draining bool     `json:"draining"`
	// MeetingBytes is bytes forwarded per meeting, cumulative since the
	// meeting came to the node: every meeting with participants or relay
	// links there, and one that has left in the next few heartbeats with
	// its final count. Then it is no longer listed; should it come back,
	// it counts from zero again.
	MeetingBytes map[string]uint64 `json:"meeting_bytes,omitempty"`
	// Relays are the node's relay links that passed their handshake, so
	// the control plane can show them and check them against policy.
	Relays []RelayLink `json:"relays,omitempty"`
	// Leaving is set on the last report of a node shutting down cleanly:
	// the control plane forgets its stored registration.
	Leaving bool      `json:"leaving,omitempty"`
	Sent    time.Time `json:"sent"`
}

// RelayLink is one relay link of a node for a meeting to another node.
type RelayLink struct {
	Meeting string `json:"meeting"`
	Peer    string `json:"peer"`
	// Dialer is set on the node that opened the link.
	Dialer bool `json:"dialer,omitempty"`
	// Connected is set once media can flow both ways.
	Connected bool `json:"connected,omitempty"`
	// Since is when this node started the link; a link closed and opened
	// again between the same nodes has a new Since.
	Since time.Time `json:"since,omitzero"`
}

// Event kinds a node reports.
const (
	EventConnected    = "connected"
	EventDisconnected = "disconnected"
)

// Event is something that happened to a participant on a node.
type Event struct {
	Kind        string    `json:"kind"`
	Node        string    `json:"node"`
	Meeting     string    `json:"meeting"`
	Participant string    `json:"participant"`
	Reason      string    `json:"reason,omitempty"`
	Time        time.Time `json:"time"`
}

// MaxEventBytes bounds one encoded event; a real one is a few hundred
// bytes. The events stream refuses larger messages, and DecodeEvent does
// too.
const MaxEventBytes = 2 << 10

// MaxEventReason bounds an event's Reason, in bytes.
const MaxEventReason = 128

// UnreadableReason replaces a Reason that is too long or not printable:
// whatever a node reports ends up in the meeting's stored record and in
// its report, so it is kept small and plain whoever sent it.
const UnreadableReason = "node gave an unreadable reason"

// DecodeEvent decodes an event a node sent and checks it: a known kind,
// a valid node id, a meeting and participant id of at most 64 letters,
// digits, '-' or '_'. A Reason that is not at most MaxEventReason bytes of
// printable ASCII is replaced by UnreadableReason, so a departure is still
// taken in.
func DecodeEvent(data []byte) (Event, error) {
	if len(data) > MaxEventBytes {
		return Event{}, fmt.Errorf("decode event: %d bytes, more than %d", len(data), MaxEventBytes)
	}
	ev, err := Decode[Event]("event", data)
	if err != nil {
		return Event{}, err
	}
	switch ev.Kind {
	case EventConnected, EventDisconnected:
	default:
		return Event{}, fmt.Errorf("event: unknown kind %q", truncate(ev.Kind))
	}
	if err := ValidNodeID(ev.Node); err != nil {
		return Event{}, fmt.Errorf("event: %w", err)
	}
	if !validEventID(ev.Meeting) {
		return Event{}, fmt.Errorf("event: meeting id %q is not valid", truncate(ev.Meeting))
	}
	if !validEventID(ev.Participant) {
		return Event{}, fmt.Errorf("event: participant id %q is not valid", truncate(ev.Participant))
	}
	if !readableReason(ev.Reason) {
		ev.Reason = UnreadableReason
	}
	return ev, nil
}

// validEventID reports whether id is 1-64 letters, digits, '-' or '_',
// as every meeting and participant id is.
func validEventID(id string) bool {
	return ValidNodeID(id) == nil
}

func readableReason(r string) bool {
	if len(r) > MaxEventReason {
		return false
	}
	for i := 0; i < len(r); i++ {
		if r[i] < 0x20 || r[i] > 0x7e {
			return false
		}
	}
	return true
}

// truncate shortens what an error quotes of a refused event.
func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// Command kinds the control plane sends to a node.
const (
	// CommandKick disconnects a participant, telling it Reason (a leave
	// message), e.g. "policy_no_allowed_node".
	CommandKick = "kick"
	// CommandMove asks a participant to join again through the control
	// plane and move to the node it is given (a move message); the old
	// connection stays until the participant closes it.
	CommandMove = "move"
	// CommandDrain makes a node stop taking participants.
	CommandDrain = "drain"
	// CommandRelay asks a node to open a relay link for Meeting to the
	// node Peer, authenticated by Token (signed by the control plane).
	CommandRelay = "relay"
	// CommandUnrelay asks a node to close its relay link for Meeting to
	// Peer.
	CommandUnrelay = "unrelay"
	// CommandHost passes a host statement (Statement, hoststmt's wire
	// form) to every participant of Meeting on the node, as a "host"
	// signaling message. A removal also names Participant: the node
	// disconnects it with reason "removed" after the statement is out.
	CommandHost = "host"
)

// Command is an instruction from the control plane to one node.
type Command struct {
	Kind        string `json:"kind"`
	Meeting     string `json:"meeting,omitempty"`
	Participant string `json:"participant,omitempty"`
	Reason      string `json:"reason,omitempty"`
	// Relay links: the other node and how to reach it.
	Peer    string `json:"peer,omitempty"`
	PeerURL string `json:"peer_url,omitempty"`
	Token   string `json:"token,omitempty"`
	// Host statements (CommandHost).
	Statement json.RawMessage `json:"statement,omitempty"`
}

// ValidNodeID reports whether id can be used as a node id: 1–64 characters
// of letters, digits, '-' and '_' (a single NATS subject token and KV key).
func ValidNodeID(id string) error {
	if id == "" || len(id) > 64 {
		return fmt.Errorf("node id %q: must be 1-64 characters", id)
	}
	for _, r := range id {
		ok := r == '-' || r == '_' || (r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z')
		if !ok {
			return fmt.Errorf("node id %q: only letters, digits, '-' and '_' are allowed", id)
		}
	}
	return nil
}

// Decode unmarshals a message, naming its kind in the error.
func Decode[T any](kind string, data []byte) (T, error) {
	var v T
	if err := json.Unmarshal(data, &v); err != nil {
		return v, fmt.Errorf("decode %s: %w", kind, err)
	}
	return v, nil
}
