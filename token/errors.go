package token

import "errors"

// Errors callers branch on; returned wrapped with the detail.
var (
	// ErrMalformed: the string is not a well-formed token of the kind
	// (join or relay) and version asked for.
	ErrMalformed = errors.New("token: malformed")
	// ErrBadSignature: the token was not signed by the expected key, or was
	// altered after signing.
	ErrBadSignature = errors.New("token: bad signature")
	// ErrExpired: the token's expiry has passed.
	ErrExpired = errors.New("token: expired")
	// ErrNotYetValid: the token was issued in the future, beyond the allowed
	// clock skew.
	ErrNotYetValid = errors.New("token: not yet valid")
	// ErrWrongNode: the token admits its holder to another node.
	ErrWrongNode = errors.New("token: issued for another node")
)
