package nodecert

import (
	"errors"
	"strconv"
)

// Errors callers branch on; returned wrapped with the detail.
var (
	// ErrMalformed: the data is not a well-formed certificate or revocation
	// list of this version, or a field breaks its rule.
	ErrMalformed = errors.New("nodecert: malformed")
	// ErrWrongKey: the statement names another enrollment key than the one
	// it is checked against.
	ErrWrongKey = errors.New("nodecert: signed for another enrollment key")
	// ErrBadSignature: the signature does not verify with the enrollment
	// key: the statement was altered after signing or signed by another key.
	ErrBadSignature = errors.New("nodecert: bad signature")
	// ErrNotYetValid: the certificate's not-before is later than now, beyond
	// MaxClockSkew.
	ErrNotYetValid = errors.New("nodecert: not yet valid")
	// ErrExpired: the certificate's not-after has passed.
	ErrExpired = errors.New("nodecert: expired")
	// ErrRevoked: a held revocation list withdraws the certificate.
	ErrRevoked = errors.New("nodecert: revoked")
	// ErrStale: a revocation list is older than the one already held, or
	// has its sequence number but other content.
	ErrStale = errors.New("nodecert: stale revocation list")
)

// MismatchError says which field of a node's registration differs from its
// certificate: "node", "country", "region" or "identity_key".
type MismatchError struct {
	Field   string
	Cert    string // the certificate's value (a key as its KeyID)
	Claimed string // the registration's value, in the same form
}

func (e *MismatchError) Error() string {
	return "nodecert: registration's " + e.Field + " " + strconv.Quote(e.Claimed) +
		" differs from the certificate's " + strconv.Quote(e.Cert)
}
