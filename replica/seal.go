package replica

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// Sealing between replicas (cluster.SealedRequest): a follower seals each
// forwarded request to the HPKE key of the leader's term, named in the
// lease and signed with the control key every replica holds, and signs the
// sealed request with that key too; the leader checks sizes, then the
// signature, then the term and the replay window before it opens anything,
// and answers under an AEAD key exported from the same HPKE context, one
// nonce per part. So the bus carries no secret in the clear, only a
// replica can make a request the leader serves (and the client address it
// names stays trustworthy), and only the asking follower can read the
// answer, whose parts cannot be reordered, swapped or altered.

// suite is the HPKE cipher suite of forwarding.
func suite() (hpke.KEM, hpke.KDF, hpke.AEAD) {
	return hpke.DHKEM(ecdh.X25519()), hpke.HKDFSHA256(), hpke.ChaCha20Poly1305()
}

// termKey is the leader's HPKE key pair of one term; it never leaves the
// process.
type termKey struct {
	term uint64
	priv hpke.PrivateKey
	pub  []byte
}

func newTermKey(term uint64) (*termKey, error) {
	kem, _, _ := suite()
	priv, err := kem.GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("replica: forwarding key: %w", err)
	}
	return &termKey{term: term, priv: priv, pub: priv.PublicKey().Bytes()}, nil
}

// signLease puts tk's public key in l, signed with key.
func signLease(key ed25519.PrivateKey, l cluster.Lease, tk *termKey) cluster.Lease {
	l.ForwardKey = tk.pub
	l.ForwardKeySig = ed25519.Sign(key, cluster.LeaseKeySigned(l.Replica, l.Term, tk.pub))
	return l
}

// target is the leader a follower seals its requests to.
type target struct {
	present bool // a lease stands (not released, not deleted)
	leader  string
	term    uint64
	key     []byte
	pub     hpke.PublicKey
	err     error // why the lease in force is not forwarded to
}

func (t target) same(o target) bool {
	return t.present == o.present && t.leader == o.leader && t.term == o.term && bytes.Equal(t.key, o.key) &&
		(t.err == nil) == (o.err == nil) && (t.err == nil || t.err.Error() == o.err.Error())
}

// leaseTarget is where requests go while l stands; a key that pub did not
// sign for l's replica and term makes a target with an error.
func leaseTarget(pub ed25519.PublicKey, l cluster.Lease) target {
	t := target{present: true, leader: l.Replica, term: l.Term, key: l.ForwardKey}
	switch {
	case len(l.ForwardKey) == 0 || len(l.ForwardKeySig) == 0:
		t.err = fmt.Errorf("the control-plane lease of %q (term %d) names no signed forwarding key; requests are not forwarded to it", l.Replica, l.Term)
	case !ed25519.Verify(pub, cluster.LeaseKeySigned(l.Replica, l.Term, l.ForwardKey), l.ForwardKeySig):
		t.err = fmt.Errorf("the forwarding key in the control-plane lease of %q (term %d) is not signed with this deployment's control key; requests are not forwarded to it", l.Replica, l.Term)
	default:
		kem, _, _ := suite()
		pk, err := kem.NewPublicKey(l.ForwardKey)
		if err != nil {
			t.err = fmt.Errorf("the forwarding key in the control-plane lease of %q (term %d): %w", l.Replica, l.Term, err)
		}
		t.pub = pk
	}
	return t
}

// hpkeInfo binds a sealed request to the subject, the leader and its term.
func hpkeInfo(leader string, term uint64) []byte {
	b := append([]byte("oakmeet forward v1\x00"+cluster.SubjectForward+"\x00"+leader+"\x00"), 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint64(b[len(b)-8:], term)
	return b
}

const answerExport = "oakmeet forward answer v1"

// answerKey seals and opens the parts of one request's answer.
type answerKey struct {
	aead cipher.AEAD
	id   [16]byte
}

func newAnswerKey(secret []byte, id [16]byte) (*answerKey, error) {
	block, err := aes.NewCipher(secret)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &answerKey{aead: aead, id: id}, nil
}

func (k *answerKey) nonceAAD(seq uint32) ([]byte, []byte) {
	nonce := make([]byte, k.aead.NonceSize())
	binary.BigEndian.PutUint32(nonce[len(nonce)-4:], seq)
	aad := append([]byte("OMA1"), k.id[:]...)
	return nonce, binary.BigEndian.AppendUint32(aad, seq)
}

// seal is part seq of the answer, in its binary form.
func (k *answerKey) seal(seq uint32, plain []byte) []byte {
	nonce, aad := k.nonceAAD(seq)
	return cluster.SealedPart{Seq: seq, Sealed: k.aead.Seal(nil, nonce, plain, aad)}.Marshal()
}

// open reads a sealed part; it must be part seq.
func (k *answerKey) open(data []byte, seq uint32) ([]byte, error) {
	p, err := cluster.ParseSealedPart(data)
	if err != nil {
		return nil, err
	}
	if p.Seq != seq {
		return nil, fmt.Errorf("sealed answer part %d where %d was due", p.Seq, seq)
	}
	nonce, aad := k.nonceAAD(seq)
	plain, err := k.aead.Open(nil, nonce, p.Sealed, aad)
	if err != nil {
		return nil, fmt.Errorf("sealed answer part %d: %w", seq, err)
	}
	return plain, nil
}

// sealRequest seals plain (a ForwardRequest) to t and signs it with key;
// the answer key opens what the leader answers.
func sealRequest(key ed25519.PrivateKey, from string, t target, now time.Time, plain []byte) ([]byte, *answerKey, error) {
	_, kdf, aead := suite()
	sr := cluster.SealedRequest{Issued: now.UnixMilli(), Term: t.term, Leader: t.leader, From: from}
	_, _ = rand.Read(sr.ID[:])
	enc, s, err := hpke.NewSender(t.pub, kdf, aead, hpkeInfo(t.leader, t.term))
	if err != nil {
		return nil, nil, err
	}
	sr.Enc = enc
	if sr.Sealed, err = s.Seal(sr.Head(), plain); err != nil {
		return nil, nil, err
	}
	sr.Sig = ed25519.Sign(key, sr.SealedSigned(cluster.SubjectForward))
	secret, err := s.Export(answerExport, 32)
	if err != nil {
		return nil, nil, err
	}
	ak, err := newAnswerKey(secret, sr.ID)
	if err != nil {
		return nil, nil, err
	}
	return sr.Marshal(), ak, nil
}

// refusal is why the leader does not serve a sealed request; reason labels
// the metric, answer says whether the sender hears of it
// (cluster.HeaderForwardRefused), which only a well-signed request earns.
type refusal struct {
	reason string
	answer bool
	err    error
}

func (r *refusal) Error() string { return r.err.Error() }

func refuse(reason string, answer bool, format string, args ...any) *refusal {
	return &refusal{reason: reason, answer: answer, err: fmt.Errorf(format, args...)}
}

// opener is the leader's side of one term. It is used by the forward
// subscription's one delivery goroutine only, which owns seen.
type opener struct {
	id     string
	tk     *termKey
	verify ed25519.PublicKey
	window time.Duration
	now    func() time.Time

	seen  map[[16]byte]time.Time // the IDs taken, until they leave the window
	order []seenID
}

type seenID struct {
	id    [16]byte
	until time.Time
}

func newOpener(id string, tk *termKey, verify ed25519.PublicKey, window time.Duration, now func() time.Time) *opener {
	return &opener{id: id, tk: tk, verify: verify, window: window, now: now, seen: map[[16]byte]time.Time{}}
}

// open checks and opens a sealed request: what it asks, the key to answer
// with and its envelope.
func (o *opener) open(data []byte) ([]byte, *answerKey, cluster.SealedRequest, error) {
	sr, err := cluster.ParseSealedRequest(data)
	if err != nil {
		return nil, nil, sr, refuse("malformed", false, "%w", err)
	}
	if !ed25519.Verify(o.verify, sr.SealedSigned(cluster.SubjectForward), sr.Sig) {
		return nil, nil, sr, refuse("signature", false, "sealed request from %q: not signed with the control key", sr.From)
	}
	if sr.Leader != o.id || sr.Term != o.tk.term {
		return nil, nil, sr, refuse("term", true, "sealed request from %q: sealed to %q term %d, not to us (term %d)", sr.From, sr.Leader, sr.Term, o.tk.term)
	}
	now := o.now()
	o.forget(now)
	issued := time.UnixMilli(sr.Issued)
	if d := now.Sub(issued); d > o.window || d < -o.window {
		return nil, nil, sr, refuse("stale", true, "sealed request from %q: issued %s from now, outside the %s window (are the replicas' clocks apart?)", sr.From, d.Round(time.Millisecond), o.window)
	}
	if _, ok := o.seen[sr.ID]; ok {
		return nil, nil, sr, refuse("replay", false, "sealed request from %q: taken already", sr.From)
	}
	_, kdf, aead := suite()
	rcp, err := hpke.NewRecipient(sr.Enc, o.tk.priv, kdf, aead, hpkeInfo(o.id, o.tk.term))
	if err != nil {
		return nil, nil, sr, refuse("open", false, "sealed request from %q: %w", sr.From, err)
	}
	plain, err := rcp.Open(sr.Head(), sr.Sealed)
	if err != nil {
		return nil, nil, sr, refuse("open", false, "sealed request from %q: %w", sr.From, err)
	}
	secret, err := rcp.Export(answerExport, 32)
	if err != nil {
		return nil, nil, sr, refuse("open", false, "sealed request from %q: %w", sr.From, err)
	}
	ak, err := newAnswerKey(secret, sr.ID)
	if err != nil {
		return nil, nil, sr, refuse("open", false, "sealed request from %q: %w", sr.From, err)
	}
	until := issued.Add(o.window)
	o.seen[sr.ID] = until
	o.order = append(o.order, seenID{sr.ID, until})
	return plain, ak, sr, nil
}

// forget drops the IDs whose window has passed: a request that old is
// refused as stale anyway.
func (o *opener) forget(now time.Time) {
	i := 0
	for i < len(o.order) && now.After(o.order[i].until) {
		delete(o.seen, o.order[i].id)
		i++
	}
	if i > 0 {
		o.order = append(o.order[:0], o.order[i:]...)
	}
}

// isRefusal is the refusal in err, if any.
func isRefusal(err error) (*refusal, bool) {
	var r *refusal
	ok := errors.As(err, &r)
	return r, ok
}
