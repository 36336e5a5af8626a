package client

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
)

// ErrHostKeyChanged is why a HostView accepts no statement: the server's
// host key is not the one the meeting link's fingerprint names.
var ErrHostKeyChanged = errors.New("the server changed the host key: host statements are not accepted")

// ErrEnrollmentKeyChanged refuses a policy statement whose enrollment key
// is not the one of the policy statement the view holds.
var ErrEnrollmentKeyChanged = errors.New("host policy statement changes the meeting's enrollment key")

// ErrStaleStatement refuses a statement no newer than the one in force.
var ErrStaleStatement = errors.New("host statement is not newer than the one in force")

// HostView is what a member knows of the host's statements: the host key,
// checked against the fingerprint of the member's link, and the newest
// verified statement of each kind, with every removal. A server can
// withhold statements from it but cannot make it accept one the host did
// not sign. It is safe for concurrent use: a Call and its user share it.
type HostView struct {
	mu          sync.Mutex
	fingerprint string
	key         ed25519.PublicKey
	keyErr      error
	// serverHash is the policy hash the control plane reports.
	serverHash string
	policy     *hoststmt.Statement
	settings   *hoststmt.Statement
	removals   map[string]hoststmt.Statement // by participant
	refused    int
}

// NewHostView starts a view for a link's host-key fingerprint. With an
// empty one (a meeting joined by id and secret alone) there is nothing to
// check a host key against, so no host statement is accepted, as in the
// browser: a key the control plane names could be its own, and its
// "removals" would cut honest members from the keys.
func NewHostView(fingerprint string) *HostView {
	return &HostView{fingerprint: fingerprint, removals: map[string]hoststmt.Statement{}}
}

// Join takes the host state of a join answer: the key (checked against the
// fingerprint, or against the key already held) and its statements. It
// returns the statements that are new to the view, to apply, and the
// error of the key check, if it failed.
func (v *HostView) Join(st api.HostState) ([]hoststmt.Statement, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.serverHash = st.PolicyHash
	if err := v.setKey(st.Key); err != nil {
		return nil, err
	}
	var fresh []hoststmt.Statement
	for _, s := range st.Statements {
		if v.accept(s) == nil {
			fresh = append(fresh, s)
		}
	}
	return fresh, nil
}

func (v *HostView) setKey(key []byte) error {
	if v.keyErr != nil {
		return v.keyErr
	}
	switch {
	case v.key != nil:
		if !bytes.Equal(v.key, key) {
			v.keyErr = ErrHostKeyChanged
		}
	case v.fingerprint == "":
		return nil // nothing to check a key against: trust none
	case v.fingerprint != "":
		if err := hoststmt.CheckKey(key, v.fingerprint); err != nil {
			v.keyErr = fmt.Errorf("%w (%v)", ErrHostKeyChanged, err)
		}
	case len(key) != ed25519.PublicKeySize:
		v.keyErr = fmt.Errorf("%w (a key of %d bytes)", ErrHostKeyChanged, len(key))
	}
	if v.keyErr == nil {
		v.key = append(ed25519.PublicKey(nil), key...)
	}
	return v.keyErr
}

// Statement takes one "host" message's payload: the statement if it
// verifies and is newer than what the view holds, to apply.
func (v *HostView) Statement(payload []byte) (*hoststmt.Statement, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	s, err := hoststmt.Parse(payload)
	if err != nil {
		v.refused++
		return nil, err
	}
	if err := v.accept(*s); err != nil {
		return nil, err
	}
	return s, nil
}

func (v *HostView) accept(s hoststmt.Statement) error {
	err := v.check(s)
	if err != nil {
		v.refused++
		return err
	}
	switch s.Kind {
	case hoststmt.KindPolicy:
		v.policy = &s
	case hoststmt.KindSettings:
		v.settings = &s
	case hoststmt.KindRemove:
		v.removals[s.Participant] = s
	}
	return nil
}

func (v *HostView) check(s hoststmt.Statement) error {
	if v.keyErr != nil {
		return v.keyErr
	}
	if v.key == nil {
		return errors.New("the meeting has no host key: host statements cannot be checked")
	}
	if err := s.Verify(v.key); err != nil {
		return err
	}
	var held *hoststmt.Statement
	switch s.Kind {
	case hoststmt.KindPolicy:
		held = v.policy
	case hoststmt.KindSettings:
		held = v.settings
	case hoststmt.KindRemove:
		if _, ok := v.removals[s.Participant]; ok {
			return ErrStaleStatement // removed already
		}
	default:
		// Lobby decisions concern the host and the control plane.
		return fmt.Errorf("host statement of kind %q is not for members", s.Kind)
	}
	if held != nil && s.Seq <= held.Seq {
		return ErrStaleStatement
	}
	// The first policy statement the view accepts fixes the meeting's
	// enrollment key: a newer one naming another would let whoever holds
	// that key certify any machine in any country.
	if s.Kind == hoststmt.KindPolicy && held != nil && !bytes.Equal(s.EnrollmentKey, held.EnrollmentKey) {
		return fmt.Errorf("%w: the statement names enrollment key %s, the meeting's is %s",
			ErrEnrollmentKeyChanged, nodecert.KeyID(s.EnrollmentKey), nodecert.KeyID(held.EnrollmentKey))
	}
	return nil
}

// PolicyHash is what the security code commits to: the host-signed policy
// hash, else the one the control plane reports (as the browser does), so
// that a bot and a page holding the same roster show the same code.
func (v *HostView) PolicyHash() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.policy == nil {
		return v.serverHash
	}
	return v.policy.PolicyHash
}

// signedPolicyHash is the host-signed policy hash, or "".
func (v *HostView) signedPolicyHash() string {
	if v.policy == nil {
		return ""
	}
	return v.policy.PolicyHash
}

// HostReport is what a HostView holds, for people and reports. Field
// names are part of `oakmeet bot --json`.
type HostReport struct {
	// KeyChecked: the host key matches the link's fingerprint.
	KeyChecked bool   `json:"key_checked"`
	KeyError   string `json:"key_error,omitempty"`
	Locked     bool   `json:"locked"`
	Lobby      bool   `json:"lobby"`
	PolicyHash string `json:"policy_hash,omitempty"`
	// PolicyWarning says the control plane reports another policy hash
	// than the host signed.
	PolicyWarning string   `json:"policy_warning,omitempty"`
	Removed       []string `json:"removed,omitempty"`
	// Refused counts statements that did not verify, were malformed or
	// were older than the one in force.
	Refused int `json:"refused"`
}

// Report says what the view holds.
func (v *HostView) Report() HostReport {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := HostReport{KeyChecked: v.key != nil && v.fingerprint != "" && v.keyErr == nil, PolicyHash: v.signedPolicyHash(), Refused: v.refused}
	if v.keyErr != nil {
		r.KeyError = v.keyErr.Error()
	}
	if v.settings != nil {
		r.Locked, r.Lobby = v.settings.Locked, v.settings.Lobby
	}
	if r.PolicyHash != "" && v.serverHash != "" && r.PolicyHash != v.serverHash {
		r.PolicyWarning = fmt.Sprintf("the server reports policy %s, the host signed %s", v.serverHash, r.PolicyHash)
	}
	for p := range v.removals {
		r.Removed = append(r.Removed, p)
	}
	sort.Strings(r.Removed)
	return r
}

// Removals are the removals in force, by participant id.
func (v *HostView) Removals() []hoststmt.Statement {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]hoststmt.Statement, 0, len(v.removals))
	for _, s := range v.removals {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Participant < out[j].Participant })
	return out
}

// Key is the host key the view holds: checked against the link's
// fingerprint, nil if there is none or the check failed.
func (v *HostView) Key() ed25519.PublicKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.keyErr != nil || v.key == nil {
		return nil
	}
	return append(ed25519.PublicKey(nil), v.key...)
}

// Policy is the newest host-signed policy statement the view verified, or
// an error that says, for people, why there is none: the client then has
// nothing to check a node against and refuses it (api.CodeNoHostPolicy).
func (v *HostView) Policy() (*hoststmt.Statement, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	switch {
	case v.keyErr != nil:
		return nil, v.keyErr
	case v.fingerprint == "":
		return nil, errors.New("the meeting link names no host key (no #h= fingerprint): there is no host-signed policy to check the node against")
	case v.key == nil:
		return nil, errors.New("the server named no host key for the meeting")
	case v.policy == nil:
		return nil, errors.New("no policy statement verifies with the host key the link names")
	}
	p := *v.policy
	return &p, nil
}

// linked reports whether the view has a fingerprint to check host keys
// against: without one it can never hold a host-signed policy.
func (v *HostView) linked() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fingerprint != ""
}
