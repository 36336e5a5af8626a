// Package hoststmt is the host's signed statements: the meeting's policy,
// its settings (lock, lobby), lobby decisions and removals. The host key is
// an Ed25519 key made in the creating client for one meeting; the meeting
// link carries a fingerprint of its public key in the URL fragment, which no
// server sees, and every member's client checks each statement against it.
// A server can withhold a statement but cannot forge or alter one.
//
// Statements name no meeting: the host key is the meeting's, made for it
// alone, so a statement of one meeting never verifies against another's.
// The wire form and the signed bytes are specified in docs/API.md ("Host
// statements") and implemented byte for byte by the browser
// (web/static/js/hoststmt.js).
package hoststmt

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/policy"
)

// Kinds of statement.
const (
	KindPolicy   = "policy"   // PolicyHash, Rules, EnrollmentKey: what the meeting's media may cross, checked by every client
	KindSettings = "settings" // Locked, Lobby
	KindAdmit    = "admit"    // Ticket, Name: a lobby entry let in
	KindDeny     = "deny"     // Ticket, Name: a lobby entry turned away
	KindRemove   = "remove"   // Participant, Identity: cut from the meeting and its keys
)

// Limits of the wire form.
const (
	MaxBytes    = 8192 // one encoded statement (a policy's rules list up to every country)
	MaxFieldLen = 256  // bytes of any text field
	label       = "oakmeet-host-v1"
	fpLabel     = "oakmeet-host-v1 fingerprint"
	// FingerprintLen is the length of a fingerprint's text: 16 bytes of
	// SHA-256 in unpadded base64url.
	FingerprintLen = 22
)

// Errors a statement is refused with.
var (
	ErrMalformed   = errors.New("hoststmt: malformed statement")
	ErrSignature   = errors.New("hoststmt: signature does not verify")
	ErrFingerprint = errors.New("hoststmt: host key does not match the link's fingerprint")
	ErrRules       = errors.New("hoststmt: the policy's rules do not hash to its policy_hash")
)

var b64 = base64.StdEncoding.Strict()

// Statement is one signed host statement. Only the fields of its Kind are
// set. Seq orders statements of one kind (the latest settings or policy
// wins; an older one is ignored): the host's client uses its clock in Unix
// milliseconds, kept strictly growing.
type Statement struct {
	Kind string
	Seq  uint64

	PolicyHash string // policy: the effective policy hash (policy.Effective.Hash)
	// Rules is what the policy allows, in the form its hash is computed
	// over: a client checks a node's certified country and region against
	// it, and its hash against PolicyHash.
	Rules policy.Rules // policy
	// EnrollmentKey is the deployment's enrollment public key: node
	// certificates a member accepts are signed with it.
	EnrollmentKey ed25519.PublicKey // policy
	Locked        bool              // settings
	Lobby         bool              // settings
	Ticket        string            // admit, deny
	Name          string            // admit, deny
	Participant   string            // remove
	Identity      []byte            // remove: the participant's Ed25519 identity key, or empty when unknown

	Sig []byte
}

type wire struct {
	V           int       `json:"v"`
	Kind        string    `json:"kind"`
	Seq         uint64    `json:"seq"`
	PolicyHash  *string   `json:"policy_hash,omitempty"`
	Allowed     *[]string `json:"allowed_countries,omitempty"`
	Blocked     *[]string `json:"blocked_regions,omitempty"`
	Enrollment  *string   `json:"enrollment_key,omitempty"`
	Locked      *bool     `json:"locked,omitempty"`
	Lobby       *bool     `json:"lobby,omitempty"`
	Ticket      *string   `json:"ticket,omitempty"`
	Name        *string   `json:"name,omitempty"`
	Participant *string   `json:"participant,omitempty"`
	Identity    *string   `json:"identity,omitempty"`
	Sig         string    `json:"sig"`
}

// TBS is what the signature covers:
//
//	"oakmeet-host-v1" ‖ 0x00 ‖ lp16(kind) ‖ u64(seq) ‖ body
//
// where body is lp16(policy_hash) ‖ enrollment_key(32) for policy (the
// rules are bound through the hash, which a verifier recomputes); u8(locked) ‖ u8(lobby) for
// settings; lp16(ticket) ‖ lp16(name) for admit and deny; and
// lp16(participant) ‖ lp16(identity) for remove (identity as raw bytes).
func (s *Statement) TBS() []byte {
	b := append([]byte(label), 0)
	b = lp16(b, s.Kind)
	b = binary.BigEndian.AppendUint64(b, s.Seq)
	switch s.Kind {
	case KindPolicy:
		b = lp16(b, s.PolicyHash)
		b = append(b, s.EnrollmentKey...)
	case KindSettings:
		b = append(b, bit(s.Locked), bit(s.Lobby))
	case KindAdmit, KindDeny:
		b = lp16(b, s.Ticket)
		b = lp16(b, s.Name)
	case KindRemove:
		b = lp16(b, s.Participant)
		b = lp16(b, string(s.Identity))
	}
	return b
}

func lp16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func bit(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// Sign checks the statement's fields and signs it with the host key.
func (s *Statement) Sign(key ed25519.PrivateKey) error {
	s.Sig = nil
	if err := s.check(); err != nil {
		return err
	}
	s.Sig = ed25519.Sign(key, s.TBS())
	return nil
}

// Verify checks the statement's signature with the host's public key.
func (s *Statement) Verify(hostKey ed25519.PublicKey) error {
	if len(hostKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: host key of %d bytes", ErrSignature, len(hostKey))
	}
	if err := s.check(); err != nil {
		return err
	}
	if len(s.Sig) != ed25519.SignatureSize || !ed25519.Verify(hostKey, s.TBS(), s.Sig) {
		return ErrSignature
	}
	return nil
}

func (s *Statement) check() error {
	text := []string{s.PolicyHash, s.Ticket, s.Name, s.Participant}
	for _, t := range text {
		if len(t) > MaxFieldLen || !utf8.ValidString(t) {
			return fmt.Errorf("%w: a field is over %d bytes or not UTF-8", ErrMalformed, MaxFieldLen)
		}
	}
	if s.Seq == 0 {
		return fmt.Errorf("%w: seq must be positive", ErrMalformed)
	}
	other := func(fields ...bool) bool {
		for _, f := range fields {
			if f {
				return true
			}
		}
		return false
	}
	switch s.Kind {
	case KindPolicy:
		if s.PolicyHash == "" || len(s.EnrollmentKey) != ed25519.PublicKeySize ||
			other(s.Locked, s.Lobby, s.Ticket != "", s.Name != "", s.Participant != "", len(s.Identity) > 0) {
			return fmt.Errorf("%w: a policy statement has a policy_hash, its rules, a 32-byte enrollment_key and nothing else", ErrMalformed)
		}
		if _, err := s.Effective(); err != nil {
			return err
		}
	case KindSettings:
		if other(s.PolicyHash != "", s.Ticket != "", s.Name != "", s.Participant != "", len(s.Identity) > 0) {
			return fmt.Errorf("%w: a settings statement has locked and lobby and nothing else", ErrMalformed)
		}
	case KindAdmit, KindDeny:
		if s.Ticket == "" || other(s.PolicyHash != "", s.Locked, s.Lobby, s.Participant != "", len(s.Identity) > 0) {
			return fmt.Errorf("%w: a lobby decision has a ticket and a name and nothing else", ErrMalformed)
		}
	case KindRemove:
		if s.Participant == "" || (len(s.Identity) != 0 && len(s.Identity) != ed25519.PublicKeySize) ||
			other(s.PolicyHash != "", s.Locked, s.Lobby, s.Ticket != "", s.Name != "") {
			return fmt.Errorf("%w: a removal has a participant, an optional 32-byte identity and nothing else", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown kind %q", ErrMalformed, s.Kind)
	}
	return nil
}

// MarshalJSON writes the wire form: {"v":1,"kind":…,"seq":…, the kind's
// fields, "sig":…}, binary fields in standard base64.
func (s Statement) MarshalJSON() ([]byte, error) {
	w := wire{V: 1, Kind: s.Kind, Seq: s.Seq, Sig: base64.StdEncoding.EncodeToString(s.Sig)}
	switch s.Kind {
	case KindPolicy:
		allowed, blocked := nonNil(s.Rules.AllowedCountries), nonNil(s.Rules.BlockedRegions)
		ek := base64.StdEncoding.EncodeToString(s.EnrollmentKey)
		w.PolicyHash, w.Allowed, w.Blocked, w.Enrollment = &s.PolicyHash, &allowed, &blocked, &ek
	case KindSettings:
		w.Locked, w.Lobby = &s.Locked, &s.Lobby
	case KindAdmit, KindDeny:
		w.Ticket, w.Name = &s.Ticket, &s.Name
	case KindRemove:
		id := base64.StdEncoding.EncodeToString(s.Identity)
		w.Participant, w.Identity = &s.Participant, &id
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads the wire form strictly: unknown fields, another
// version, a kind's missing fields or another kind's fields are refused.
// The signature is not checked here (Verify does).
func (s *Statement) UnmarshalJSON(data []byte) error {
	if len(data) > MaxBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrMalformed, len(data), MaxBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var w wire
	if err := dec.Decode(&w); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if dec.More() {
		return fmt.Errorf("%w: data after the statement", ErrMalformed)
	}
	if w.V != 1 {
		return fmt.Errorf("%w: version %d", ErrMalformed, w.V)
	}
	sig, err := b64.DecodeString(w.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: sig must be 64 bytes of base64", ErrMalformed)
	}
	out := Statement{Kind: w.Kind, Seq: w.Seq, Sig: sig}
	need := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("%w: a %s statement needs %s", ErrMalformed, w.Kind, what)
		}
		return nil
	}
	var present error
	switch w.Kind {
	case KindPolicy:
		present = need(w.PolicyHash != nil && w.Allowed != nil && w.Blocked != nil && w.Enrollment != nil,
			"policy_hash, allowed_countries, blocked_regions and enrollment_key")
		out.PolicyHash = deref(w.PolicyHash)
		if w.Allowed != nil && w.Blocked != nil {
			out.Rules = policy.Rules{AllowedCountries: *w.Allowed, BlockedRegions: *w.Blocked}
		}
		if out.EnrollmentKey, err = b64.DecodeString(deref(w.Enrollment)); err != nil {
			return fmt.Errorf("%w: enrollment_key is not base64", ErrMalformed)
		}
	case KindSettings:
		present = need(w.Locked != nil && w.Lobby != nil, "locked and lobby")
		out.Locked, out.Lobby = w.Locked != nil && *w.Locked, w.Lobby != nil && *w.Lobby
	case KindAdmit, KindDeny:
		present = need(w.Ticket != nil && w.Name != nil, "ticket and name")
		out.Ticket, out.Name = deref(w.Ticket), deref(w.Name)
	case KindRemove:
		present = need(w.Participant != nil && w.Identity != nil, "participant and identity")
		out.Participant = deref(w.Participant)
		if out.Identity, err = b64.DecodeString(deref(w.Identity)); err != nil {
			return fmt.Errorf("%w: identity is not base64", ErrMalformed)
		}
		if len(out.Identity) == 0 {
			out.Identity = nil
		}
	}
	if present != nil {
		return present
	}
	if err := out.check(); err != nil {
		return err
	}
	// Fields of another kind would be dropped silently by the switch above
	// and then differ from what was signed: refuse them.
	if again, _ := json.Marshal(out); !sameFields(again, data) {
		return fmt.Errorf("%w: fields of another kind", ErrMalformed)
	}
	*s = out
	return nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Effective compiles a policy statement's rules, checking that they hash
// to its policy_hash: what the host signed is the hash, so rules that do
// not match it are refused.
func (s *Statement) Effective() (policy.Effective, error) {
	if s.Kind != KindPolicy {
		return policy.Effective{}, fmt.Errorf("%w: a %s statement has no policy", ErrMalformed, s.Kind)
	}
	e, err := s.Rules.Effective()
	if err != nil {
		return policy.Effective{}, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if e.Hash() != s.PolicyHash {
		return policy.Effective{}, fmt.Errorf("%w: %w", ErrMalformed, ErrRules)
	}
	return e, nil
}

// NewPolicy is the unsigned policy statement of eff under the deployment's
// enrollment key.
func NewPolicy(seq uint64, eff policy.Effective, enrollmentKey ed25519.PublicKey) Statement {
	return Statement{Kind: KindPolicy, Seq: seq, PolicyHash: eff.Hash(), Rules: eff.Rules(), EnrollmentKey: enrollmentKey}
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// sameFields reports whether two JSON objects have the same set of keys.
func sameFields(a, b []byte) bool {
	var ma, mb map[string]json.RawMessage
	if json.Unmarshal(a, &ma) != nil || json.Unmarshal(b, &mb) != nil || len(ma) != len(mb) {
		return false
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			return false
		}
	}
	return true
}

// Parse decodes one statement from its wire form.
func Parse(data []byte) (*Statement, error) {
	var s Statement
	if err := json.Unmarshal(data, &s); err != nil {
		if errors.Is(err, ErrMalformed) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &s, nil
}

// Fingerprint is what a meeting link carries of the host's public key:
// base64url (unpadded) of the first 16 bytes of
// SHA-256("oakmeet-host-v1 fingerprint" ‖ 0x00 ‖ public key).
func Fingerprint(hostKey ed25519.PublicKey) string {
	h := sha256.Sum256(append(append([]byte(fpLabel), 0), hostKey...))
	return base64.RawURLEncoding.EncodeToString(h[:16])
}

// CheckKey reports whether hostKey is the key a link's fingerprint names.
func CheckKey(hostKey []byte, fingerprint string) error {
	if len(hostKey) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: host key of %d bytes", ErrFingerprint, len(hostKey))
	}
	want := Fingerprint(hostKey)
	if subtle.ConstantTimeCompare([]byte(want), []byte(strings.TrimSpace(fingerprint))) != 1 {
		return ErrFingerprint
	}
	return nil
}

// GenerateKey makes a new host key.
func GenerateKey() (ed25519.PrivateKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	return priv, err
}

// keyTextPrefix starts a host key's text form; the rest is the 32-byte
// seed in standard base64. It is a secret.
const keyTextPrefix = "oakmeet-host-key-v1:"

// MarshalKey is a host key's text form, for a file the host keeps.
func MarshalKey(key ed25519.PrivateKey) []byte {
	return []byte(keyTextPrefix + base64.StdEncoding.EncodeToString(key.Seed()) + "\n")
}

// ParseKey reads MarshalKey's text form.
func ParseKey(text []byte) (ed25519.PrivateKey, error) {
	s, ok := strings.CutPrefix(strings.TrimSpace(string(text)), keyTextPrefix)
	if !ok {
		return nil, fmt.Errorf("hoststmt: not a host key (want %q…)", keyTextPrefix)
	}
	seed, err := b64.DecodeString(s)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, errors.New("hoststmt: host key seed must be 32 bytes of base64")
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
