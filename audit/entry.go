package audit

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"
)

// Kinds of entry. The list is open: a writer may use other kinds, and they
// are hashed and verified like these.
const (
	KindPlacement      = "placement"
	KindRefusal        = "refusal"
	KindPolicyChange   = "policy_change"
	KindMigration      = "migration"
	KindNodeDown       = "node_down"
	KindDisconnect     = "disconnect"
	KindMeetingCreated = "meeting_created"
	KindMeetingEnded   = "meeting_ended"
	KindRelay          = "relay"
	// KindNodeRefused is a participant's client refusing the node it was
	// placed on (client-verified routing): Node, NodeCountry as certified,
	// Participant the placement refused, Reason the client's code and
	// message.
	KindNodeRefused = "node_refused"
)

// GenesisHash is the prev_hash of the first entry of every chain.
const GenesisHash = "0000000000000000000000000000000000000000000000000000000000000000"

const entryDomain = "oakmeet-audit-entry/2"

// Entry is one routing decision or event. Seq, Meeting, PrevHash, Hash and Sig
// are set by [Chain.Seal]; the writer fills in the rest, Index included.
type Entry struct {
	Seq uint64 `json:"seq"`
	// Index is the entry's place in the deployment's log, the Merkle
	// tree's leaf index (from 0): every entry of every chain, in the order
	// the log stores them. It is signed, so an entry cannot be moved.
	Index       int64     `json:"index"`
	Time        time.Time `json:"time"`
	Kind        string    `json:"kind"`
	Meeting     string    `json:"meeting"`
	Participant string    `json:"participant,omitempty"`
	Node        string    `json:"node,omitempty"`
	NodeCountry string    `json:"node_country,omitempty"`
	PolicyHash  string    `json:"policy_hash,omitempty"`
	Reason      string    `json:"reason,omitempty"`
	PrevHash    string    `json:"prev_hash"`
	Hash        string    `json:"hash"`
	Sig         string    `json:"sig"`
}

// Head is the last entry of a chain: all a writer needs to continue it, and
// what an export trailer signs.
type Head struct {
	Seq  uint64 `json:"seq"`
	Hash string `json:"hash"`
}

// Head returns the head of a chain whose last entry is e, for resuming a
// chain from storage.
func (e Entry) Head() Head {
	return Head{Seq: e.Seq, Hash: e.Hash}
}

// Heads returns the head of every chain in entries, taking each chain's last
// entry in slice order.
func Heads(entries []Entry) map[string]Head {
	heads := make(map[string]Head)
	for _, e := range entries {
		heads[e.Meeting] = e.Head()
	}
	return heads
}

// entryDigest computes the SHA-256 of e's canonical encoding (see the package
// documentation). Hash and Sig are not part of it.
func entryDigest(e *Entry) [sha256.Size]byte {
	var buf [512]byte // typical entries encode in place
	b := appendField(buf[:0], entryDomain)
	b = appendUint(b, e.Seq)
	b = appendUint(b, uint64(e.Index))
	var tbuf [64]byte
	b = appendField(b, string(e.Time.UTC().AppendFormat(tbuf[:0], time.RFC3339Nano)))
	for _, s := range [...]string{e.Kind, e.Meeting, e.Participant, e.Node, e.NodeCountry, e.PolicyHash, e.Reason, e.PrevHash} {
		b = appendField(b, s)
	}
	return sha256.Sum256(b)
}

func appendUint(b []byte, v uint64) []byte {
	return binary.BigEndian.AppendUint64(b, v)
}

func appendField(b []byte, s string) []byte {
	return append(appendUint(b, uint64(len(s))), s...)
}

// isHexDigest reports whether s is a SHA-256 digest in lowercase hex, the only
// spelling a sealed entry uses; accepting upper case would let a hash be
// rewritten without changing what it decodes to.
func isHexDigest(s string) bool {
	if len(s) != hex.EncodedLen(sha256.Size) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// validUTF8 returns s with invalid UTF-8 replaced, so that the hashed bytes
// are the bytes JSON will carry.
func validUTF8(s string) string {
	return strings.ToValidUTF8(s, "\uFFFD")
}
