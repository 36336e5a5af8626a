// Package signal defines oakmeet's signaling protocol between a participant
// and a media node, and between two media nodes joined by a relay link: one
// JSON object per WebSocket message, versioned by an envelope field. It only
// describes and validates messages; it knows nothing of WebRTC, media or
// keys, so both the node and every client can share it.
//
// The wire format is documented in docs/PROTOCOL.md and, for relay links,
// docs/RELAYS.md.
package signal

import "encoding/json"

// Version is the protocol version this package speaks. A message with any
// other "v" is refused with CodeUnsupportedVersion.
const Version = 1

// MaxMessageBytes is the default upper bound on one encoded message. Offers
// with many m-lines stay well below it; anything larger is refused before it
// is parsed so a peer cannot make the node buffer unbounded JSON.
const MaxMessageBytes = 64 << 10

// MaxRelayBytes bounds one relay message: end-to-end key messages grow
// with the roster (an epoch message for 1,000 members is about 400 KB), so
// relay messages have a limit of their own. So does a welcome, whose lists
// of participants and tracks grow with the meeting too (1,000 participants
// are over 60 KB). Every other kind keeps MaxMessageBytes.
const MaxRelayBytes = 1<<20 + 4<<10

// ReasonRemoved is the reason of the leave a participant gets when the
// host removed it from the meeting (a signed removal, sent as a host
// message first). A client that gets it ends rather than joining again.
const ReasonRemoved = "removed"

// ReasonNegotiationTimeout is the reason of the leave a participant gets
// when none of its PeerConnections reached connected within the node's
// negotiation deadline. The node frees its seat; a client may join again.
const ReasonNegotiationTimeout = "negotiation_timeout"

// Type names a message kind.
type Type string

// Message kinds. The direction in the comment is the only one a peer may send.
const (
	TypeJoin              Type = "join"               // client → node, first message
	TypeWelcome           Type = "welcome"            // node → client
	TypeOffer             Type = "offer"              // both
	TypeAnswer            Type = "answer"             // both
	TypeCandidate         Type = "candidate"          // both
	TypeParticipantJoined Type = "participant_joined" // node → client
	TypeParticipantLeft   Type = "participant_left"   // node → client
	TypeTrackPublished    Type = "track_published"    // node → client
	TypeTrackUnpublished  Type = "track_unpublished"  // node → client
	TypeSubscribe         Type = "subscribe"          // client → node
	TypeChat              Type = "chat"               // both
	TypeLeave             Type = "leave"              // both
	TypeRelay             Type = "relay"              // both
	TypeError             Type = "error"              // both
	TypePing              Type = "ping"               // both
	TypePong              Type = "pong"               // both
	TypeMove              Type = "move"               // node → client
	TypeHost              Type = "host"               // node → client: a host statement in Payload

	// Relay links between nodes (docs/RELAYS.md). A node refuses them
	// from participants; they open a node-to-node connection instead of
	// a join.
	TypeLink          Type = "link"           // dialling node → accepting node, first message
	TypeLinkChallenge Type = "link_challenge" // accepting → dialling
	TypeLinkProof     Type = "link_proof"     // dialling → accepting
	TypeLinkReady     Type = "link_ready"     // accepting → dialling
	// TypeLayersWanted: a node tells its peer which simulcast layers of
	// one of the peer's tracks it needs (receiving → sending node).
	TypeLayersWanted Type = "layers_wanted"
)

// Known reports whether t is a message kind of this protocol version.
func Known(t Type) bool {
	switch t {
	case TypeJoin, TypeWelcome, TypeOffer, TypeAnswer, TypeCandidate,
		TypeParticipantJoined, TypeParticipantLeft, TypeTrackPublished,
		TypeTrackUnpublished, TypeSubscribe, TypeChat, TypeLeave, TypeRelay,
		TypeError, TypePing, TypePong, TypeMove, TypeHost,
		TypeLink, TypeLinkChallenge, TypeLinkProof, TypeLinkReady,
		TypeLayersWanted:
		return true
	}
	return false
}

// Simulcast layer names a subscriber may ask for. A subscriber may also name
// a publisher's rid directly.
const (
	LayerHigh   = "high"
	LayerMedium = "medium"
	LayerLow    = "low"
	// LayerOff pauses a track: the node forwards nothing of it to this
	// subscriber until a later subscribe names a layer.
	LayerOff = "off"
)

// A participant has two PeerConnections with the node. On the publish
// connection the client sends media and always makes the offers; on the
// subscribe connection the node sends media and always makes the offers.
// Offers therefore never cross, and offer/answer need no target: a client
// offer and a node answer are for the publish connection, a node offer and
// a client answer for the subscribe connection.
const (
	TargetPublish   = "publish"
	TargetSubscribe = "subscribe"
)

// Track kinds.
const (
	KindAudio = "audio"
	KindVideo = "video"
)

// Track sources: what a published track shows, declared by its publisher
// in the publish offer (Message.Sources). A receiver tells a shared screen
// from a camera by it. An undeclared audio track is SourceMicrophone, an
// undeclared video track SourceCamera.
const (
	SourceCamera      = "camera"
	SourceMicrophone  = "microphone"
	SourceScreen      = "screen"
	SourceScreenAudio = "screen_audio"
)

// Limits of an offer's Sources declaration.
const (
	MaxSources  = 8
	MaxMidBytes = 64
)

// KnownSource reports whether s is a track source of this protocol version.
func KnownSource(s string) bool {
	switch s {
	case SourceCamera, SourceMicrophone, SourceScreen, SourceScreenAudio:
		return true
	}
	return false
}

// DefaultSource is the source of an undeclared track of kind kind.
func DefaultSource(kind string) string {
	if kind == KindAudio {
		return SourceMicrophone
	}
	return SourceCamera
}

// Message is every protocol message. Only the fields of its Type are set; the
// rest are zero and omitted on the wire. One flat struct keeps the envelope
// ({"v":1,"type":...}) and the body in a single JSON object.
type Message struct {
	V    int  `json:"v"`
	Type Type `json:"type"`

	// join. Nonce (JoinNonceBytes, base64 in JSON) is the client's fresh
	// challenge: the node signs every SDP it sends this participant over it
	// (nodecert.SignSDP). HostKey is the host public key the client checked
	// against its link, and Statement the newest host policy statement it
	// verified with it (hoststmt wire form): the node takes the meeting's
	// relay policy from its participants, not from the control plane.
	Token     string          `json:"token,omitempty"`
	HostKey   []byte          `json:"host_key,omitempty"`
	Statement json.RawMessage `json:"statement,omitempty"`

	// welcome: who the receiver is and what the meeting looks like now.
	ID           string        `json:"id,omitempty"`
	Name         string        `json:"name,omitempty"`
	Since        int64         `json:"since,omitempty"` // the receiver's own Participant.Since
	Meeting      string        `json:"meeting,omitempty"`
	Participants []Participant `json:"participants,omitempty"`
	Tracks       []Track       `json:"tracks,omitempty"`
	ICEServers   []ICEServer   `json:"ice_servers,omitempty"`
	// ICEURLs are the STUN and TURN URLs the node vouches for, signed in
	// the welcome's Sig (nodecert.SignSDP, kind "welcome", the URLs joined
	// by "\n"): a client uses an ICE server, from the join answer or the
	// welcome, only if every URL of it is listed here.
	ICEURLs []string `json:"ice_urls,omitempty"`

	// participant_joined, participant_left
	Participant *Participant `json:"participant,omitempty"`

	// track_published, track_unpublished
	Track *Track `json:"track,omitempty"`

	// offer, answer
	SDP string `json:"sdp,omitempty"`
	// Sources (publish offer only): the source of each track the offer
	// sends, by the transceiver's mid.
	Sources map[string]string `json:"sources,omitempty"`

	// candidate: Target says which of the participant's two
	// PeerConnections it belongs to (TargetPublish or TargetSubscribe).
	Candidate *Candidate `json:"candidate,omitempty"`
	Target    string     `json:"target,omitempty"`

	// subscribe; layers_wanted (track_id and layers)
	TrackID string `json:"track_id,omitempty"`
	Layer   string `json:"layer,omitempty"`
	// Layers (layers_wanted) are layer names (LayerLow, LayerMedium,
	// LayerHigh), each at most once, at most MaxWantedLayers: for each,
	// the sending node forwards the best layer of the track it has at or
	// below it. Empty: forward nothing of the track.
	Layers []string `json:"layers,omitempty"`

	// chat (text, from, time), relay (to, from, payload)
	Text    string          `json:"text,omitempty"`
	From    string          `json:"from,omitempty"`
	To      string          `json:"to,omitempty"`
	Time    int64           `json:"time,omitempty"` // Unix milliseconds, set by the node
	Payload json.RawMessage `json:"payload,omitempty"`

	// error
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	// leave, move; a leave with ReasonRemoved follows the host's removal.
	Reason string `json:"reason,omitempty"`

	// link, link_challenge, link_proof; offer and answer on a relay link
	// (base64 in JSON). Nonce is LinkNonceBytes of randomness, Sig an
	// Ed25519 signature by a node's identity key. On link and
	// link_challenge, Cert is the sending node's enrollment certificate,
	// which the other node checks against the meeting's host-signed
	// policy. A node's offer and answer to a participant carry Sig too:
	// its identity key's signature over the SDP (nodecert.SignSDP).
	Nonce []byte `json:"nonce,omitempty"`
	Sig   []byte `json:"sig,omitempty"`
	Cert  string `json:"cert,omitempty"`
}

// MaxWantedLayers bounds a layers_wanted list: each layer name once.
const MaxWantedLayers = 3

// WantedLayer maps a layers_wanted layer name to its quality index (0 low,
// 1 medium, 2 high); ok is false for any other name.
func WantedLayer(name string) (q int, ok bool) {
	switch name {
	case LayerLow:
		return 0, true
	case LayerMedium:
		return 1, true
	case LayerHigh:
		return 2, true
	}
	return 0, false
}

// WantedLayerName is the layers_wanted name of quality index q (0 to
// MaxWantedLayers-1).
func WantedLayerName(q int) string {
	return [MaxWantedLayers]string{LayerLow, LayerMedium, LayerHigh}[q]
}

// LinkNonceBytes is the size of each node's random challenge in a relay
// link handshake.
const LinkNonceBytes = 32

// JoinNonceBytes is the size of a participant's challenge in its join.
const JoinNonceBytes = 32

// Participant is one member of a meeting as other members see it.
// Since orders the roster the same way on every node: it is the issue time
// of the participant's join token (Unix milliseconds, the control plane's
// clock), kept unchanged when the participant is announced across a relay
// link. Clients sort members by (Since, ID).
type Participant struct {
	ID    string `json:"id"`
	Name  string `json:"name,omitempty"`
	Since int64  `json:"since"`
}

// Track describes one published media track. ID is assigned by the node and
// is unique within the meeting; it equals the MediaStreamTrack id a
// subscriber sees in the node's SDP, and Stream equals the msid stream id.
type Track struct {
	ID          string   `json:"id"`
	Participant string   `json:"participant"`
	Stream      string   `json:"stream,omitempty"`
	Kind        string   `json:"kind"`
	Layers      []string `json:"layers,omitempty"` // simulcast rids, empty when not simulcast
	Source      string   `json:"source,omitempty"` // Source* constant; empty from older nodes
}

// Candidate is a trickled ICE candidate, shaped like the browser's
// RTCIceCandidateInit so it can be passed through unchanged.
type Candidate struct {
	Candidate        string  `json:"candidate"`
	SDPMid           *string `json:"sdpMid,omitempty"`
	SDPMLineIndex    *uint16 `json:"sdpMLineIndex,omitempty"`
	UsernameFragment *string `json:"usernameFragment,omitempty"`
}

// ICEServer is a STUN or TURN server a client should use, shaped like the
// browser's RTCIceServer.
type ICEServer struct {
	URLs       []string `json:"urls"`
	Username   string   `json:"username,omitempty"`
	Credential string   `json:"credential,omitempty"`
}
