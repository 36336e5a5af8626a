package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
)

// Chain seals the entries of one chain (one meeting, or "" for the
// deployment), linking each to the previous one.
//
// A Chain is not safe for concurrent use: a chain is a sequence, and two
// goroutines sealing at once would fork it. The writer that owns a meeting's
// log serialises its calls.
type Chain struct {
	key     ed25519.PrivateKey
	meeting string
	head    Head
}

// NewChain returns a Chain that continues the chain of meeting from head.
// The zero Head starts a new chain. key must be a valid Ed25519 private key.
func NewChain(key ed25519.PrivateKey, meeting string, head Head) *Chain {
	return &Chain{key: key, meeting: validUTF8(meeting), head: head}
}

// Seal appends e to the chain: it sets Meeting, Seq, PrevHash, Hash and Sig,
// normalises Time to UTC and invalid UTF-8 to U+FFFD, advances the head and
// returns the sealed entry. The caller sets Time; Seal reads no clock.
func (c *Chain) Seal(e Entry) Entry {
	e.Meeting = c.meeting
	e.Seq = c.head.Seq + 1
	e.PrevHash = c.head.Hash
	if c.head.Seq == 0 {
		e.PrevHash = GenesisHash
	}
	e.Time = e.Time.UTC()
	e.Kind = validUTF8(e.Kind)
	e.Participant = validUTF8(e.Participant)
	e.Node = validUTF8(e.Node)
	e.NodeCountry = validUTF8(e.NodeCountry)
	e.PolicyHash = validUTF8(e.PolicyHash)
	e.Reason = validUTF8(e.Reason)

	sum := entryDigest(&e)
	e.Hash = hex.EncodeToString(sum[:])
	e.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(c.key, sum[:]))
	c.head = e.Head()
	return e
}

// Head returns the chain's last sealed entry, or the zero Head if none.
func (c *Chain) Head() Head {
	return c.head
}
