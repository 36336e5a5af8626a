package audit

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
)

// Errors naming which check of an export failed; a *VerifyError or
// *CheckpointError wraps one of them or [ErrInconsistent],
// [ErrNotIncluded] or [ErrCheckpoint].
var (
	// ErrEntry: an entry whose hash or signature is wrong.
	ErrEntry = errors.New("audit: bad entry")
	// ErrChain: a chain whose seq or prev_hash does not continue from the
	// previous entry of the chain.
	ErrChain = errors.New("audit: broken chain")
	// ErrOrder: entries not in log order, or a full export that is not
	// exactly the entries 0..Size-1 of its checkpoint.
	ErrOrder = errors.New("audit: entries out of log order")
	// ErrPolicy: a meeting's policy hash that no meeting_created or
	// policy_change entry of its chain introduced.
	ErrPolicy = errors.New("audit: policy hash changed without a policy_change entry")
	// ErrTrailer: a trailer that does not sign exactly the chains' heads.
	ErrTrailer = errors.New("audit: bad trailer")
	// ErrWrongMeeting: a meeting's export holding another chain's entry.
	ErrWrongMeeting = errors.New("audit: entry of another meeting")
	// ErrWitness: a witness's cosignature missing or invalid.
	ErrWitness = errors.New("audit: witness cosignature")
	// ErrOlder: an export proved against a checkpoint smaller than one
	// held. An honest export made before the held checkpoint and an
	// export of a log truncated since read the same; a new export tells
	// them apart (docs/AUDIT.md).
	ErrOlder = errors.New("audit: export older than a held checkpoint")
)

// VerifyError names the entry or line that fails verification.
type VerifyError struct {
	// Line is the 1-based index of the entry in the slice given to [Verify];
	// in errors from [VerifyExport] it is the line number in the file.
	Line    int
	Seq     uint64
	Meeting string
	Reason  string
	// Err is the check that failed: [ErrEntry], [ErrChain], [ErrOrder], [ErrPolicy],
	// [ErrTrailer], [ErrWrongMeeting] or [ErrNotIncluded].
	Err error
}

func (e *VerifyError) Error() string {
	return fmt.Sprintf("audit: line %d (meeting %q, seq %d): %s", e.Line, e.Meeting, e.Seq, e.Reason)
}

func (e *VerifyError) Unwrap() error { return e.Err }

// CheckpointError is a checkpoint the export contradicts or that cannot
// be checked.
type CheckpointError struct {
	// Name says where the checkpoint came from (a file name), or
	// "the export's checkpoint".
	Name string
	Size int64
	Err  error
}

func (e *CheckpointError) Error() string {
	var o *olderError
	if errors.As(e.Err, &o) {
		return fmt.Sprintf("the export has %s, the checkpoint %s has %d: an export older than the checkpoint, or of a log truncated since, cannot be checked against it; export again", o.have, e.Name, e.Size)
	}
	if e.Size == 0 {
		return fmt.Sprintf("checkpoint %s: %v", e.Name, e.Err)
	}
	return fmt.Sprintf("checkpoint %s (size %d): %v", e.Name, e.Size, e.Err)
}

func (e *CheckpointError) Unwrap() error { return e.Err }

// olderError is [ErrOlder]; have says what the export holds ("N entries",
// or a pack's checkpoint of N entries).
type olderError struct{ have string }

func (e *olderError) Error() string { return ErrOlder.Error() + ": the export has " + e.have }
func (e *olderError) Unwrap() error { return ErrOlder }

// sigEncoding rejects base64 with non-zero padding bits, which would
// otherwise give one signature several spellings.
var sigEncoding = base64.StdEncoding.Strict()

// Verify checks entries signed by pub. Entries are grouped by chain (their
// Meeting) in slice order, and each chain must start at seq 1, count up by
// one, link each prev_hash to the previous hash, and carry a hash and
// signature that recompute. It returns a *VerifyError naming the first bad
// entry in slice order.
//
// Verify cannot tell that entries were cut off the end of a chain or
// that a log was rebuilt; [VerifyExport] with checkpoints does.
func Verify(pub ed25519.PublicKey, entries []Entry) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("audit: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	heads := make(map[string]Head)
	for i := range entries {
		if reason, check := checkEntry(pub, &entries[i], heads[entries[i].Meeting]); check != nil {
			return &VerifyError{Line: i + 1, Seq: entries[i].Seq, Meeting: entries[i].Meeting, Reason: reason, Err: check}
		}
		heads[entries[i].Meeting] = entries[i].Head()
	}
	return nil
}

// checkEntry checks e against the head of its chain so far and returns
// the check that fails and why, or nil.
func checkEntry(pub ed25519.PublicKey, e *Entry, prev Head) (string, error) {
	wantPrev := prev.Hash
	if prev.Seq == 0 {
		wantPrev = GenesisHash
	}
	switch {
	case e.Seq != prev.Seq+1:
		return fmt.Sprintf("seq %d follows seq %d in this chain (removed, reordered or inserted entry)", e.Seq, prev.Seq), ErrChain
	case e.PrevHash != wantPrev:
		return "prev_hash does not match the previous entry of this chain", ErrChain
	case !isHexDigest(e.Hash):
		return "hash is not 64 lowercase hex digits", ErrEntry
	}
	sum := entryDigest(e)
	if hex.EncodeToString(sum[:]) != e.Hash {
		return "hash does not match the entry's content (edited entry)", ErrEntry
	}
	sig, err := sigEncoding.DecodeString(e.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || sigEncoding.EncodeToString(sig) != e.Sig {
		return "sig is not a base64 Ed25519 signature", ErrEntry
	}
	if !ed25519.Verify(pub, sum[:], sig) {
		return "signature does not verify with the log key", ErrEntry
	}
	return "", nil
}
