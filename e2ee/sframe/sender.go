package sframe

import (
	"math"
	"sync"
)

// Sender encrypts frames under one KID. It is safe for concurrent use, so
// several tracks may share it: the counter is taken under a lock, which is
// what guarantees a (key, KID, CTR) triple is never used twice.
type Sender struct {
	suite Suite
	kid   uint64

	mu        sync.Mutex
	k         *key
	next      uint64 // the CTR of the next frame
	exhausted bool   // every CTR value has been used
}

// NewSender returns a sender for the given suite, KID and base key. Its
// counter starts at 0; a base key must therefore never be given to two
// senders with the same KID.
func NewSender(suite Suite, kid uint64, baseKey []byte) (*Sender, error) {
	k, err := newKey(suite, kid, baseKey)
	if err != nil {
		return nil, err
	}
	return &Sender{suite: suite, kid: kid, k: k}, nil
}

// KID is the key id written into every frame.
func (s *Sender) KID() uint64 { return s.kid }

// Suite is the sender's cipher suite.
func (s *Sender) Suite() Suite { return s.suite }

// Encrypt appends header ‖ ciphertext ‖ tag for plaintext to dst and returns
// the extended slice. metadata is authenticated but not encrypted and not
// included in the output; the receiver must supply the same bytes. dst's
// spare capacity must not overlap plaintext or metadata. When every counter
// value has been used it returns ErrCounterExhausted and nothing else.
func (s *Sender) Encrypt(dst, metadata, plaintext []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.exhausted {
		return nil, ErrCounterExhausted
	}
	ctr := s.next
	if ctr == math.MaxUint64 {
		s.exhausted = true
	} else {
		s.next++
	}
	start := len(dst)
	dst = Header{KID: s.kid, CTR: ctr}.Append(dst)
	return s.k.seal(dst, ctr, dst[start:], metadata, plaintext), nil
}
