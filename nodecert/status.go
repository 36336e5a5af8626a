package nodecert

import "time"

// State is where a certificate stands at a moment.
type State int

const (
	// Valid: inside its validity window and not revoked.
	Valid State = iota
	// Revoked: withdrawn by the revocation list held.
	Revoked
	// Expired: not-after has passed.
	Expired
	// NotYetValid: not-before is ahead, beyond MaxClockSkew.
	NotYetValid
)

func (s State) String() string {
	switch s {
	case Valid:
		return "valid"
	case Revoked:
		return "revoked"
	case Expired:
		return "expired"
	case NotYetValid:
		return "not_yet_valid"
	}
	return "unknown"
}

// Err is nil for Valid and otherwise the sentinel error of the state
// (ErrRevoked, ErrExpired, ErrNotYetValid).
func (s State) Err() error {
	switch s {
	case Valid:
		return nil
	case Revoked:
		return ErrRevoked
	case Expired:
		return ErrExpired
	case NotYetValid:
		return ErrNotYetValid
	}
	return ErrMalformed
}

// Status says where c, a certificate Verify accepted earlier, stands at now
// given the revocation list held. Revocation comes first: a revoked
// certificate stays revoked whatever the time.
func Status(c Cert, r Revocations, now time.Time) State {
	if r.Revoked(c) {
		return Revoked
	}
	return c.timeState(now)
}

// timeState places now against c's validity window, the one rule Verify
// and Status share: valid from not-before less MaxClockSkew through
// not-after, both inclusive.
func (c Cert) timeState(now time.Time) State {
	switch {
	case now.Before(c.NotBefore.Add(-MaxClockSkew)):
		return NotYetValid
	case now.After(c.NotAfter):
		return Expired
	}
	return Valid
}
