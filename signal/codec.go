package signal

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/oakmeet/oakmeet/hoststmt"
)

// Error codes carried in error messages. Decode returns them in *Error; the
// node sends the same codes back to the peer so a client can branch on them.
const (
	CodeTooLarge           = "too_large"
	CodeBadJSON            = "bad_json"
	CodeUnsupportedVersion = "unsupported_version"
	CodeUnknownType        = "unknown_type"
	CodeBadMessage         = "bad_message"
	CodeBadSources         = "bad_sources"
)

// Error is a protocol-level refusal with a stable machine code.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// Is lets errors.Is match on the code alone: errors.Is(err, &Error{Code: CodeBadJSON}).
func (e *Error) Is(target error) bool {
	var t *Error
	if !errors.As(target, &t) {
		return false
	}
	return t.Code == e.Code
}

func refuse(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Decode parses one message: a relay or welcome message of at most
// MaxRelayBytes, any other kind of at most MaxMessageBytes.
func Decode(data []byte) (Message, error) {
	return DecodeLimits(data, MaxMessageBytes, MaxRelayBytes)
}

// DecodeLimit parses one message of at most limit bytes, whatever its kind,
// and checks that the fields its type needs are present. Every refusal is
// an *Error.
func DecodeLimit(data []byte, limit int) (Message, error) {
	return DecodeLimits(data, limit, limit)
}

// DecodeLimits parses one message: a relay or welcome message of at most
// relayLimit bytes, any other kind of at most limit. Every refusal is an
// *Error.
func DecodeLimits(data []byte, limit, relayLimit int) (Message, error) {
	if len(data) > max(limit, relayLimit) {
		return Message{}, tooLarge(kindOf(data), len(data), limit, relayLimit)
	}
	m, err := decode(data)
	if err != nil {
		return Message{}, err
	}
	// The kind is known only once parsed; parsing costs no more than the
	// larger limit allows.
	if len(data) > limit && (!m.Type.large() || len(data) > relayLimit) {
		return Message{}, tooLarge(m.Type, len(data), limit, relayLimit)
	}
	return m, nil
}

// kindOf reads the type of a message too large to decode, so that its
// refusal can say which limit it broke; "" if it has none. The data is
// only scanned: nothing of it is kept.
func kindOf(data []byte) Type {
	var head struct {
		Type Type `json:"type"`
	}
	_ = json.Unmarshal(data, &head)
	return head.Type
}

// large reports whether messages of kind t have the larger limit: they
// grow with the meeting.
func (t Type) large() bool { return t == TypeRelay || t == TypeWelcome }

func tooLarge(t Type, n, limit, relayLimit int) *Error {
	what := "message"
	if Known(t) {
		what = string(t) + " message"
	}
	switch {
	case t.large():
		return refuse(CodeTooLarge, "%s of %d bytes exceeds %d", what, n, relayLimit)
	case relayLimit > limit:
		return refuse(CodeTooLarge, "%s of %d bytes exceeds %d (only relay messages may have up to %d)", what, n, limit, relayLimit)
	}
	return refuse(CodeTooLarge, "%s of %d bytes exceeds %d", what, n, limit)
}

func decode(data []byte) (Message, error) {
	var m Message
	if err := json.Unmarshal(data, &m); err != nil {
		return Message{}, refuse(CodeBadJSON, "%v", err)
	}
	if m.V != Version {
		return Message{}, refuse(CodeUnsupportedVersion, "version %d, want %d", m.V, Version)
	}
	if !Known(m.Type) {
		return Message{}, refuse(CodeUnknownType, "unknown message type %q", m.Type)
	}
	if err := m.validate(); err != nil {
		return Message{}, err
	}
	if err := m.normalise(); err != nil {
		return Message{}, err
	}
	return m, nil
}

// Encode serialises m, filling in the version. HTML escaping is off so an
// opaque relay payload goes out byte for byte as it came in.
func Encode(m Message) ([]byte, error) {
	if m.V == 0 {
		m.V = Version
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(m); err != nil {
		return nil, fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// validate checks that a message carries what its type requires.
func (m *Message) validate() error {
	missing := func(field string) error {
		return refuse(CodeBadMessage, "%s message needs %q", m.Type, field)
	}
	badNonce := func() error {
		return refuse(CodeBadMessage, "%s nonce must be %d bytes", m.Type, LinkNonceBytes)
	}
	switch m.Type {
	case TypeJoin:
		if m.Token == "" {
			return missing("token")
		}
		// The node signs its SDPs to the participant over the nonce: a
		// join without a fresh one could be answered with signatures
		// replayed from another connection.
		if len(m.Nonce) != JoinNonceBytes {
			return refuse(CodeBadMessage, "join nonce must be %d bytes", JoinNonceBytes)
		}
		if len(m.HostKey) != 0 && len(m.HostKey) != ed25519.PublicKeySize {
			return refuse(CodeBadMessage, "join host_key must be %d bytes", ed25519.PublicKeySize)
		}
		if len(m.Statement) > hoststmt.MaxBytes {
			return refuse(CodeTooLarge, "join statement of %d bytes exceeds %d", len(m.Statement), hoststmt.MaxBytes)
		}
	case TypeWelcome:
		if m.ID == "" {
			return missing("id")
		}
	case TypeOffer, TypeAnswer:
		if m.SDP == "" {
			return missing("sdp")
		}
		if err := validSources(m.Sources); err != nil {
			return err
		}
	case TypeCandidate:
		if m.Candidate == nil {
			return missing("candidate")
		}
		if m.Target != TargetPublish && m.Target != TargetSubscribe {
			return refuse(CodeBadMessage, "candidate target must be %q or %q", TargetPublish, TargetSubscribe)
		}
	case TypeParticipantJoined, TypeParticipantLeft:
		if m.Participant == nil || m.Participant.ID == "" {
			return missing("participant")
		}
	case TypeTrackPublished, TypeTrackUnpublished:
		if m.Track == nil || m.Track.ID == "" {
			return missing("track")
		}
	case TypeSubscribe:
		if m.TrackID == "" {
			return missing("track_id")
		}
		if m.Layer == "" {
			return missing("layer")
		}
	case TypeLayersWanted:
		if m.TrackID == "" {
			return missing("track_id")
		}
		if len(m.Layers) > MaxWantedLayers {
			return refuse(CodeBadMessage, "layers_wanted names %d layers, at most %d", len(m.Layers), MaxWantedLayers)
		}
		var seen [MaxWantedLayers]bool
		for _, name := range m.Layers {
			q, ok := WantedLayer(name)
			if !ok {
				return refuse(CodeBadMessage, "layers_wanted names unknown layer %q", name)
			}
			if seen[q] {
				return refuse(CodeBadMessage, "layers_wanted names layer %q twice", name)
			}
			seen[q] = true
		}
	case TypeChat:
		if m.Text == "" {
			return missing("text")
		}
	case TypeRelay:
		if len(m.Payload) == 0 || string(m.Payload) == "null" {
			return missing("payload")
		}
	case TypeHost:
		if len(m.Payload) == 0 || string(m.Payload) == "null" {
			return missing("payload")
		}
		if len(m.Payload) > hoststmt.MaxBytes {
			return refuse(CodeTooLarge, "host statement of %d bytes exceeds %d", len(m.Payload), hoststmt.MaxBytes)
		}
	case TypeError:
		if m.Code == "" {
			return missing("code")
		}
	case TypeLink:
		if m.Token == "" {
			return missing("token")
		}
		if len(m.Nonce) != LinkNonceBytes {
			return badNonce()
		}
	case TypeLinkChallenge:
		if len(m.Nonce) != LinkNonceBytes {
			return badNonce()
		}
		if len(m.Sig) == 0 {
			return missing("sig")
		}
	case TypeLinkProof:
		if len(m.Sig) == 0 {
			return missing("sig")
		}
	}
	return nil
}

// validSources checks an offer's source declaration: known sources only,
// short mids, a few entries, and at most one screen and one screen audio
// track, so a publisher cannot make every receiver lay out many shares.
func validSources(sources map[string]string) error {
	if len(sources) > MaxSources {
		return refuse(CodeBadSources, "%d sources, at most %d", len(sources), MaxSources)
	}
	screens, screenAudio := 0, 0
	for mid, src := range sources {
		if mid == "" || len(mid) > MaxMidBytes {
			return refuse(CodeBadSources, "source mid of %d bytes, want 1 to %d", len(mid), MaxMidBytes)
		}
		if !KnownSource(src) {
			return refuse(CodeBadSources, "unknown source %q", src)
		}
		switch src {
		case SourceScreen:
			screens++
		case SourceScreenAudio:
			screenAudio++
		}
	}
	if screens > 1 || screenAudio > 1 {
		return refuse(CodeBadSources, "at most one screen and one screen audio track")
	}
	return nil
}

// normalise gives every accepted message one canonical in-memory form, so
// that Decode(Encode(m)) == m: empty lists become nil (they are omitted on
// the wire) and the opaque payload is compacted (the encoder compacts it).
func (m *Message) normalise() error {
	if len(m.Participants) == 0 {
		m.Participants = nil
	}
	if len(m.Tracks) == 0 {
		m.Tracks = nil
	}
	for i := range m.Tracks {
		if len(m.Tracks[i].Layers) == 0 {
			m.Tracks[i].Layers = nil
		}
	}
	if m.Track != nil && len(m.Track.Layers) == 0 {
		m.Track.Layers = nil
	}
	if len(m.ICEServers) == 0 {
		m.ICEServers = nil
	}
	if len(m.Sources) == 0 {
		m.Sources = nil
	}
	if len(m.Nonce) == 0 {
		m.Nonce = nil
	}
	if len(m.Sig) == 0 {
		m.Sig = nil
	}
	if len(m.ICEURLs) == 0 {
		m.ICEURLs = nil
	}
	if len(m.Layers) == 0 {
		m.Layers = nil
	}
	for i := range m.ICEServers {
		if len(m.ICEServers[i].URLs) == 0 {
			m.ICEServers[i].URLs = nil
		}
	}
	if len(m.HostKey) == 0 {
		m.HostKey = nil
	}
	if string(m.Statement) == "null" {
		m.Statement = nil
	}
	if len(m.Statement) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, m.Statement); err != nil {
			return refuse(CodeBadJSON, "statement: %v", err)
		}
		m.Statement = b.Bytes()
	}
	if len(m.Payload) > 0 {
		var b bytes.Buffer
		if err := json.Compact(&b, m.Payload); err != nil {
			return refuse(CodeBadJSON, "payload: %v", err)
		}
		m.Payload = b.Bytes()
	}
	return nil
}

// The kinds a node's signatures to a participant name besides "offer" and
// "answer" (nodecert.SignSDP, docs/PROTOCOL.md): the welcome signs its
// ICEURLs joined by "\n"; a candidate message signs its candidate string
// exactly as sent (the empty end-of-candidates one too) under
// SigKindCandidate + its target ("publish" or "subscribe").
const (
	SigKindWelcome   = "welcome"
	SigKindCandidate = "candidate:"
)
