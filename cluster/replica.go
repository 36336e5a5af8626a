package cluster

import (
	"crypto/ed25519"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Control-plane replicas: several `oakmeet serve` processes on one NATS
// cluster elect one leader through a lease in BucketLeader; every replica
// answers HTTP, the others forward what they receive to the leader on
// SubjectForward.
const (
	// BucketLeader holds the leader's lease under LeaderKey. Only control
	// plane identities may read or write it.
	BucketLeader = "oakmeet_leader"
	LeaderKey    = "control"
	// SubjectForward is where the leader takes requests other replicas
	// received. Only control plane identities may publish or subscribe
	// to it: the leader trusts the client address a forwarded request
	// names.
	SubjectForward = "oakmeet.control.forward"
	// StreamEvents keeps node events (SubjectEvents) until the leader has
	// taken them in, so none is lost while the leadership changes hands.
	StreamEvents = "OAKMEET_EVENTS"
)

// Lease is the value of the leader's lease. It is taken and renewed by
// compare-and-set on the key's revision; a replica that sees the revision
// unchanged for TTL takes it over. Times are informative: no replica
// compares its clock with another's.
type Lease struct {
	Replica string    `json:"replica"`
	Term    uint64    `json:"term"`
	TTLMs   int64     `json:"ttl_ms"`
	Renewed time.Time `json:"renewed"`
	// Released marks a lease its holder gave up (a clean shutdown, a
	// control plane that could not start): any replica may take it at
	// once, with a higher term.
	Released bool `json:"released,omitempty"`
	// ForwardKey is the term's HPKE public key forwarded requests are
	// sealed to; ForwardKeySig the control key's signature of
	// LeaseKeySigned. A lease without both is not forwarded to.
	ForwardKey    []byte `json:"forward_key,omitempty"`
	ForwardKeySig []byte `json:"forward_key_sig,omitempty"`
}

// ForwardRequest is an HTTP request a replica received and hands to the
// leader.
type ForwardRequest struct {
	From       string              `json:"from"` // the forwarding replica's id
	Method     string              `json:"method"`
	URL        string              `json:"url"` // path and query
	Host       string              `json:"host"`
	Header     map[string][]string `json:"header,omitempty"`
	Body       []byte              `json:"body,omitempty"`
	RemoteAddr string              `json:"remote_addr"`
	TLS        bool                `json:"tls,omitempty"`
}

// ForwardResponse is one part of the leader's answer to a ForwardRequest:
// the first carries the status and headers, each its share of the body
// (at most ForwardChunk bytes), the last has More false.
type ForwardResponse struct {
	Seq    int                 `json:"seq"`
	Status int                 `json:"status,omitempty"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
	More   bool                `json:"more,omitempty"`
	// Working is a keep-alive sent while the leader's handler has not
	// answered yet (a lobby wait, a slow store): a forwarding replica that
	// hears nothing for a few of them knows the leader is gone.
	Working bool   `json:"working,omitempty"`
	Leader  string `json:"leader,omitempty"`
	// Aborted ends an answer the leader's handler cut short after its
	// status was sent: the forwarding replica cuts its own short too,
	// rather than pass the part sent as the whole.
	Aborted bool `json:"aborted,omitempty"`
}

// ForwardChunk bounds the body bytes of one ForwardResponse, well inside
// NATS's default 1 MB message limit after base64.
const ForwardChunk = 256 << 10

// Forwarded requests and their answers travel sealed, so that neither a
// NATS server nor anyone else on the bus can read, forge or replay them:
// each leader term has an ephemeral HPKE key (DHKEM X25519, HKDF-SHA256,
// ChaCha20-Poly1305) whose public half the lease names, signed with the
// control plane's Ed25519 key (Lease.ForwardKey, Lease.ForwardKeySig); a
// forwarding replica seals its ForwardRequest to it and signs the sealed
// request with the same control key (SealedRequest); the leader answers in
// SealedParts under a key exported from the same HPKE context.

// LeaseKeySigned is the message Lease.ForwardKeySig signs: the key bound to
// the replica and the term it serves.
func LeaseKeySigned(replica string, term uint64, key []byte) []byte {
	b := append([]byte("oakmeet lease forward key v1\x00"), byte(len(replica)))
	b = append(b, replica...)
	b = binary.BigEndian.AppendUint64(b, term)
	return append(b, key...)
}

// SealedRequest is a ForwardRequest sealed to the leader of one term.
// Its binary form: "OMQ1", ID (16), Issued (8), Term (8), then Leader,
// From and Enc each with a one-byte length, Sealed with a four-byte
// length, and Sig (64).
type SealedRequest struct {
	ID [16]byte
	// Issued is the sender's clock (Unix milliseconds): a leader takes a
	// request only within a short window of it, and remembers the IDs it
	// took for that long.
	Issued int64
	Term   uint64
	Leader string // the leader it is sealed to
	From   string // the forwarding replica
	Enc    []byte // the HPKE encapsulated key
	Sealed []byte // the ForwardRequest (JSON), sealed
	// Sig is the control key's Ed25519 signature of SealedSigned.
	Sig []byte
}

// Limits of a SealedRequest's fields, checked before any cryptography.
const (
	MaxSealedName = 64
	MaxSealedEnc  = 128
	MaxSealed     = 1 << 20
)

const sealedRequestMagic = "OMQ1"

// Head is the request's binary form up to its signature: what the HPKE
// seal authenticates as additional data.
func (s *SealedRequest) Head() []byte {
	b := make([]byte, 0, 64+len(s.Leader)+len(s.From)+len(s.Enc))
	b = append(b, sealedRequestMagic...)
	b = append(b, s.ID[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(s.Issued))
	b = binary.BigEndian.AppendUint64(b, s.Term)
	for _, f := range [][]byte{[]byte(s.Leader), []byte(s.From), s.Enc} {
		b = append(b, byte(len(f)))
		b = append(b, f...)
	}
	return b
}

// SealedSigned is what Sig signs: the head and the sealed bytes, bound to
// subject.
func (s *SealedRequest) SealedSigned(subject string) []byte {
	h := sha512.New()
	h.Write([]byte("oakmeet forward request v1\x00"))
	h.Write([]byte(subject))
	h.Write([]byte{0})
	h.Write(s.Head())
	h.Write(s.Sealed)
	return h.Sum(nil)
}

// Marshal is the request's binary form.
func (s *SealedRequest) Marshal() []byte {
	b := s.Head()
	b = binary.BigEndian.AppendUint32(b, uint32(len(s.Sealed)))
	b = append(b, s.Sealed...)
	return append(b, s.Sig...)
}

// ParseSealedRequest reads a SealedRequest's binary form, within the
// limits above; it checks no cryptography.
func ParseSealedRequest(data []byte) (SealedRequest, error) {
	var s SealedRequest
	if len(data) > MaxSealed+1024 {
		return s, fmt.Errorf("sealed request: %d bytes", len(data))
	}
	r := reader{b: data}
	if string(r.take(4)) != sealedRequestMagic {
		return s, errors.New("sealed request: not one")
	}
	copy(s.ID[:], r.take(16))
	s.Issued = int64(r.uint64())
	s.Term = r.uint64()
	s.Leader = string(r.short(MaxSealedName))
	s.From = string(r.short(MaxSealedName))
	s.Enc = r.short(MaxSealedEnc)
	n := r.uint32()
	if n > MaxSealed {
		return s, fmt.Errorf("sealed request: %d sealed bytes", n)
	}
	s.Sealed = r.take(int(n))
	s.Sig = r.take(ed25519.SignatureSize)
	if r.err != nil || len(r.b) != 0 {
		return s, errors.New("sealed request: truncated or trailing bytes")
	}
	if s.Leader == "" || s.From == "" || len(s.Enc) == 0 {
		return s, errors.New("sealed request: no leader, sender or encapsulated key")
	}
	return s, nil
}

// SealedPart is one ForwardResponse (JSON) sealed under the answer key of
// its request: "OMA1", Seq (4), then the sealed bytes.
type SealedPart struct {
	Seq    uint32
	Sealed []byte
}

const sealedPartMagic = "OMA1"

// Marshal is the part's binary form.
func (p SealedPart) Marshal() []byte {
	b := make([]byte, 0, 8+len(p.Sealed))
	b = append(b, sealedPartMagic...)
	b = binary.BigEndian.AppendUint32(b, p.Seq)
	return append(b, p.Sealed...)
}

// ParseSealedPart reads a SealedPart's binary form.
func ParseSealedPart(data []byte) (SealedPart, error) {
	if len(data) < 8 || string(data[:4]) != sealedPartMagic || len(data) > MaxSealed+1024 {
		return SealedPart{}, errors.New("sealed answer part: not one")
	}
	return SealedPart{Seq: binary.BigEndian.Uint32(data[4:8]), Sealed: data[8:]}, nil
}

// HeaderForwardRefused, on an empty message, is a leader's word that it
// took a well-signed sealed request but will not serve it: "term" (sealed
// to another term or leader: seal it again to the lease now in force) or
// "stale" (issued outside the leader's window).
const HeaderForwardRefused = "Oakmeet-Forward-Refused"

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n > len(r.b) {
		r.err = errors.New("short")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) uint64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) uint32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) short(limit int) []byte {
	n := r.take(1)
	if n == nil {
		return nil
	}
	if int(n[0]) > limit {
		r.err = errors.New("too long")
		return nil
	}
	return r.take(int(n[0]))
}
