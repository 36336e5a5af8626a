package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"fmt"
)

// VerifyError names the first entry that fails verification.
type VerifyError struct {
	// Line is the 1-based index of the entry in the slice given to [Verify];
	// in errors from [VerifyExport] it is the line number in the file.
	Line    int
	Seq     uint64
	Meeting string
	Reason  string
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: line %d (meeting %q, seq %d): %s", e.Line, e.Meeting, e.Seq, e.Reason)
}

// sigEncoding rejects base64 with non-zero padding bits, which would
// otherwise give one signature several spellings.
var sigEncoding = base64.StdEncoding.Strict()

// Verify checks entries signed by pub. Entries are grouped by chain (their
// Meeting) in slice order, and each chain must start at seq 1, count up by
// one, link each prev_hash to the previous hash, and carry a hash and
// signature that recompute. It returns a *VerifyError naming the first bad
// entry in slice order.
//
// Verify cannot tell that entries were cut off the end of a chain; an export
// trailer does (see [VerifyExport]).
func Verify(pub ed25519.PublicKey, entries []Entry) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("audit: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	heads := make(map[string]Head)
	for i := range entries {
		if reason := checkEntry(pub, &entries[i], heads[entries[i].Meeting]); reason != "" {
			return &VerifyError{Line: i + 1, Seq: entries[i].Seq, Meeting: entries[i].Meeting, Reason: reason}
		}
		heads[entries[i].Meeting] = entries[i].Head()
	}
	return nil
}

// checkEntry checks e against the head of its chain so far and returns why it
// is bad, or "".
func checkEntry(pub ed25519.PublicKey, e *Entry, prev Head) string {
	wantPrev := prev.Hash
	if prev.Seq == 0 {
		wantPrev = GenesisHash
	}
	switch {
	case e.Seq != prev.Seq+1:
		return fmt.Sprintf("seq %d follows seq %d in this chain (removed, reordered or inserted entry)", e.Seq, prev.Seq)
	case e.PrevHash != wantPrev:
		return "prev_hash does not match the previous entry of this chain"
	case !isHexDigest(e.Hash):
		return "hash is not 64 lowercase hex digits"
	}
	sum := entryDigest(e)
	if hex.EncodeToString(sum[:]) != e.Hash {
		return "hash does not match the entry's content (edited entry)"
	}
	sig, err := sigEncoding.DecodeString(e.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || sigEncoding.EncodeToString(sig) != e.Sig {
		return "sig is not a base64 Ed25519 signature"
	}
	if !ed25519.Verify(pub, sum[:], sig) {
		return "signature does not verify with the log key"
	}
	return ""
}
