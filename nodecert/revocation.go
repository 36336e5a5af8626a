package nodecert

import (
	"cmp"
	"crypto/ed25519"
	"fmt"
	"slices"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// maxSeq is the largest sequence number: the largest integer a JavaScript
// number holds exactly.
const maxSeq = 1<<53 - 1

// Revocations is a revocation list: which certificates the enrollment
// authority has withdrawn, as of its Seq'th list. The zero value is "no list
// held yet".
type Revocations struct {
	Seq             uint64
	IssuedAt        time.Time
	EnrollmentKeyID string // KeyID of the signing key; IssueRevocation fills it in
	Entries         []Revocation
}

// Revocation withdraws one certificate of a node (Serial set), or every
// certificate of the node whose not-before is at or before At (Serial ""),
// so that a node can be revoked by id alone and enrolled again later.
type Revocation struct {
	NodeID string
	Serial string
	At     time.Time
}

type revocationsWire struct {
	EnrollmentKey string           `json:"enrollment_key"`
	Entries       []revocationWire `json:"entries"`
	IssuedAt      int64            `json:"issued_at"`
	Seq           uint64           `json:"seq"`
}

type revocationWire struct {
	At     int64  `json:"at"`
	Node   string `json:"node"`
	Serial string `json:"serial"`
}

// IssueRevocation signs the list r with the enrollment key. Entries are
// sorted into canonical order (r is not changed); times are rounded down to
// the second. Seq must be at least 1 and greater than that of every list
// issued before, which the caller keeps track of.
func IssueRevocation(key ed25519.PrivateKey, r Revocations) ([]byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("nodecert: private key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	kid := KeyID(key.Public().(ed25519.PublicKey))
	if r.EnrollmentKeyID != "" && r.EnrollmentKeyID != kid {
		return nil, fmt.Errorf("nodecert: revocation list names enrollment key %s, signing key is %s", r.EnrollmentKeyID, kid)
	}
	w := revocationsWire{
		EnrollmentKey: kid,
		Entries:       make([]revocationWire, 0, len(r.Entries)),
		IssuedAt:      r.IssuedAt.Unix(),
		Seq:           r.Seq,
	}
	for _, e := range r.Entries {
		w.Entries = append(w.Entries, revocationWire{At: e.At.Unix(), Node: e.NodeID, Serial: e.Serial})
	}
	slices.SortFunc(w.Entries, compareEntries)
	if err := w.validate(); err != nil {
		return nil, fmt.Errorf("nodecert: invalid revocation list: %w", err)
	}
	return seal(key, revocationsTag, w)
}

// ParseRevocation reads a revocation list's text and checks its syntax and
// rules, but not its signature. Errors wrap ErrMalformed.
func ParseRevocation(data []byte) (Revocations, error) {
	r, _, err := parseRevocation(data)
	return r, err
}

func parseRevocation(data []byte) (Revocations, envelope, error) {
	var w revocationsWire
	env, err := open(revocationsTag, data, maxRevocationsLen, &w)
	if err != nil {
		return Revocations{}, envelope{}, err
	}
	if err := w.validate(); err != nil {
		return Revocations{}, envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return w.revocations(), env, nil
}

// VerifyRevocation checks that data is a revocation list signed by the
// enrollment key pub and newer than held, the list held so far (zero if
// none), and returns the list to hold from now on. The list held, delivered
// again, is returned unchanged. Errors wrap ErrMalformed, ErrWrongKey,
// ErrBadSignature or ErrStale; on error, keep holding held.
func VerifyRevocation(pub ed25519.PublicKey, data []byte, held Revocations) (Revocations, error) {
	if len(pub) != ed25519.PublicKeySize {
		return Revocations{}, fmt.Errorf("nodecert: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	r, env, err := parseRevocation(data)
	if err != nil {
		return Revocations{}, err
	}
	if want := KeyID(pub); r.EnrollmentKeyID != want {
		return Revocations{}, fmt.Errorf("%w: revocation list names %s, expected %s", ErrWrongKey, r.EnrollmentKeyID, want)
	}
	if err := env.verify(pub); err != nil {
		return Revocations{}, err
	}
	switch {
	case r.Seq < held.Seq:
		return Revocations{}, fmt.Errorf("%w: list %d is older than list %d held", ErrStale, r.Seq, held.Seq)
	case r.Seq == held.Seq && !r.equal(held):
		return Revocations{}, fmt.Errorf("%w: list %d differs from the list %d held", ErrStale, r.Seq, held.Seq)
	}
	return r, nil
}

// Revoked reports whether the list withdraws c. The list must have been
// verified with the key that signed c.
func (r Revocations) Revoked(c Cert) bool {
	for _, e := range r.Entries {
		if e.NodeID != c.NodeID {
			continue
		}
		if e.Serial == c.Serial || e.Serial == "" && !c.NotBefore.After(e.At) {
			return true
		}
	}
	return false
}

func (r Revocations) equal(o Revocations) bool {
	return r.Seq == o.Seq && r.IssuedAt.Equal(o.IssuedAt) && r.EnrollmentKeyID == o.EnrollmentKeyID &&
		slices.EqualFunc(r.Entries, o.Entries, func(a, b Revocation) bool {
			return a.NodeID == b.NodeID && a.Serial == b.Serial && a.At.Equal(b.At)
		})
}

func (w revocationsWire) revocations() Revocations {
	r := Revocations{
		Seq:             w.Seq,
		IssuedAt:        time.Unix(w.IssuedAt, 0).UTC(),
		EnrollmentKeyID: w.EnrollmentKey,
		Entries:         make([]Revocation, 0, len(w.Entries)),
	}
	for _, e := range w.Entries {
		r.Entries = append(r.Entries, Revocation{NodeID: e.Node, Serial: e.Serial, At: time.Unix(e.At, 0).UTC()})
	}
	return r
}

// validate holds for every revocation list issued or accepted.
func (w revocationsWire) validate() error {
	if !validHex(w.EnrollmentKey, 16) {
		return fmt.Errorf("enrollment key id %q: want 32 lower-case hex digits", w.EnrollmentKey)
	}
	if w.Seq < 1 || w.Seq > maxSeq {
		return fmt.Errorf("seq %d: out of range [1, %d]", w.Seq, uint64(maxSeq))
	}
	if err := validUnix("issued_at", w.IssuedAt); err != nil {
		return err
	}
	if w.Entries == nil {
		// An empty list is [], never null: one encoding per list.
		return fmt.Errorf("entries: null, want a list")
	}
	for i, e := range w.Entries {
		if err := e.validate(); err != nil {
			return fmt.Errorf("entry %d: %w", i, err)
		}
		if i > 0 && compareEntries(w.Entries[i-1], e) >= 0 {
			return fmt.Errorf("entry %d (%s %q): out of order or repeated", i, e.Node, e.Serial)
		}
	}
	return nil
}

func (e revocationWire) validate() error {
	if err := cluster.ValidNodeID(e.Node); err != nil {
		return err
	}
	if e.Serial != "" && !validHex(e.Serial, serialBytes) {
		return fmt.Errorf("serial %q: want \"\" or %d lower-case hex digits", e.Serial, 2*serialBytes)
	}
	return validUnix("at", e.At)
}

// compareEntries is the canonical order: by node, then serial, bytewise.
func compareEntries(a, b revocationWire) int {
	return cmp.Or(cmp.Compare(a.Node, b.Node), cmp.Compare(a.Serial, b.Serial))
}
