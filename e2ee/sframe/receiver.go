package sframe

import (
	"fmt"
	"maps"
	"sync"
	"sync/atomic"
)

// Receiver decrypts frames under any of the KIDs it holds keys for. It is
// safe for concurrent use. The key table is copied on write: keys change once
// per epoch, frames arrive hundreds of times a second, so Decrypt reads the
// table without a lock.
type Receiver struct {
	suite Suite
	p     *params

	mu   sync.Mutex // serialises AddKey and RemoveKey
	keys atomic.Pointer[map[uint64]*receiverKey]
}

// receiverKey is one KID's key and replay window; mu serialises frames of
// that KID (one sender's tracks), not of the whole receiver.
type receiverKey struct {
	mu  sync.Mutex
	k   *key
	win replayWindow
}

// NewReceiver returns a receiver with no keys.
func NewReceiver(suite Suite) (*Receiver, error) {
	p, err := suite.params()
	if err != nil {
		return nil, err
	}
	return &Receiver{suite: suite, p: p}, nil
}

// Suite is the receiver's cipher suite.
func (r *Receiver) Suite() Suite { return r.suite }

// AddKey derives the key for kid from baseKey and accepts frames under it,
// replacing any key kid had (and forgetting which counters it had seen).
func (r *Receiver) AddKey(kid uint64, baseKey []byte) error {
	k, err := newKey(r.suite, kid, baseKey)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	next := make(map[uint64]*receiverKey)
	if old := r.keys.Load(); old != nil {
		maps.Copy(next, *old)
	}
	next[kid] = &receiverKey{k: k}
	r.keys.Store(&next)
	return nil
}

// AddKeys is AddKey for many KIDs at once (kids[i] with baseKeys[i]): the
// key table is copied once, not once per key, which is what keeps an epoch
// of 1,000 senders cheap. On an error no key is added.
func (r *Receiver) AddKeys(kids []uint64, baseKeys [][]byte) error {
	if len(kids) != len(baseKeys) {
		return fmt.Errorf("sframe: %d kids for %d keys", len(kids), len(baseKeys))
	}
	ks := make([]*receiverKey, len(kids))
	for i, kid := range kids {
		k, err := newKey(r.suite, kid, baseKeys[i])
		if err != nil {
			return err
		}
		ks[i] = &receiverKey{k: k}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var next map[uint64]*receiverKey
	if old := r.keys.Load(); old != nil {
		next = make(map[uint64]*receiverKey, len(*old)+len(kids))
		maps.Copy(next, *old)
	} else {
		next = make(map[uint64]*receiverKey, len(kids))
	}
	for i, kid := range kids {
		next[kid] = ks[i]
	}
	r.keys.Store(&next)
	return nil
}

// RemoveKeys is RemoveKey for many KIDs, with one copy of the table.
func (r *Receiver) RemoveKeys(kids []uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.keys.Load()
	if old == nil || len(kids) == 0 {
		return
	}
	next := maps.Clone(*old)
	for _, kid := range kids {
		delete(next, kid)
	}
	if len(next) != len(*old) {
		r.keys.Store(&next)
	}
}

// RemoveKey stops accepting frames under kid. Removing an absent KID does
// nothing.
func (r *Receiver) RemoveKey(kid uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.keys.Load()
	if old == nil {
		return
	}
	if _, ok := (*old)[kid]; !ok {
		return
	}
	next := maps.Clone(*old)
	delete(next, kid)
	r.keys.Store(&next)
}

// HasKey reports whether frames under kid are accepted.
func (r *Receiver) HasKey(kid uint64) bool {
	m := r.keys.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[kid]
	return ok
}

// Decrypt checks frame (header ‖ ciphertext ‖ tag) against metadata and
// appends its plaintext to dst. On any error it returns nil and leaves no
// plaintext in dst's spare capacity. dst's spare capacity must not overlap
// frame or metadata.
//
// Errors are ErrTruncated, ErrMalformedHeader, ErrUnknownKID, ErrReplay and
// ErrAuth, returned unwrapped.
func (r *Receiver) Decrypt(dst, metadata, frame []byte) ([]byte, error) {
	h, n, err := ParseHeader(frame)
	if err != nil {
		return nil, err
	}
	m := r.keys.Load()
	if m == nil {
		return nil, ErrUnknownKID
	}
	rk := (*m)[h.KID]
	if rk == nil {
		return nil, ErrUnknownKID
	}
	if len(frame)-n < r.p.nt {
		return nil, ErrTruncated
	}
	rk.mu.Lock()
	defer rk.mu.Unlock()
	if !rk.win.fresh(h.CTR) {
		return nil, ErrReplay
	}
	out, err := rk.k.open(dst, h.CTR, frame[:n], metadata, frame[n:])
	if err != nil {
		return nil, err
	}
	rk.win.accept(h.CTR)
	return out, nil
}
