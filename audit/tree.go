package audit

import (
	"fmt"
	"sync"

	"golang.org/x/mod/sumdb/tlog"
)

// Tree is the Merkle tree of a deployment's log (RFC 6962 hashing, as
// golang.org/x/mod/sumdb/tlog computes it), held in memory as tlog's
// stored hashes: about two hashes per entry, 64 bytes, so a million
// entries take 64 MB. Leaf i is [LeafData] of the entry with Index i.
//
// A Tree is safe for concurrent use: one writer appends while readers
// prove. Its lock is held only in memory, never across I/O, and no other
// lock is taken while it is held.
type Tree struct {
	mu     sync.RWMutex
	hashes []tlog.Hash
	n      int64
}

// Append adds the next leaf and returns its index.
func (t *Tree) Append(leaf []byte) int64 {
	return t.appendHash(tlog.RecordHash(leaf))
}

// appendHash adds the next leaf by its hash.
func (t *Tree) appendHash(h tlog.Hash) int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	// StoredHashes only reads hashes already stored, which the slice has.
	hs, err := tlog.StoredHashesForRecordHash(t.n, h, t.reader())
	if err != nil {
		panic(fmt.Sprintf("audit: tree of %d leaves lacks a stored hash: %v", t.n, err))
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
	return t.n - 1
}

// Size is the number of leaves.
func (t *Tree) Size() int64 {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.n
}

// Root is the tree hash of the first n leaves.
func (t *Tree) Root(n int64) (tlog.Hash, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 0 || n > t.n {
		return tlog.Hash{}, fmt.Errorf("audit: no tree of size %d (the log has %d entries)", n, t.n)
	}
	return tlog.TreeHash(n, t.reader())
}

// ProveInclusion proves leaf index in the tree of the first n leaves.
func (t *Tree) ProveInclusion(index, n int64) (tlog.RecordProof, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 1 || n > t.n || index < 0 || index >= n {
		return nil, fmt.Errorf("audit: no entry %d in a tree of size %d (the log has %d entries)", index, n, t.n)
	}
	return tlog.ProveRecord(n, index, t.reader())
}

// ProveConsistency proves that the tree of the first n leaves is a prefix
// of the tree of the first m.
func (t *Tree) ProveConsistency(n, m int64) (tlog.TreeProof, error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if n < 1 || n > m || m > t.n {
		return nil, fmt.Errorf("audit: no consistency proof from size %d to %d (the log has %d entries)", n, m, t.n)
	}
	return tlog.ProveTree(m, n, t.reader())
}

// reader reads stored hashes; the caller holds t.mu.
func (t *Tree) reader() tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		for i, x := range indexes {
			if x < 0 || x >= int64(len(t.hashes)) {
				return nil, fmt.Errorf("audit: stored hash %d not in a tree of %d hashes", x, len(t.hashes))
			}
			out[i] = t.hashes[x]
		}
		return out, nil
	})
}

// LeafData is the leaf an entry is in the tree as: its canonical JSON line
// (as an export spells it) without the newline. The leaf covers the
// entry's hash and signature, so the tree commits to exactly the signed
// entry.
func LeafData(e *Entry) ([]byte, error) {
	line, err := encodeLine(e)
	if err != nil {
		return nil, fmt.Errorf("audit: entry %d: %w", e.Index, err)
	}
	return line[:len(line)-1], nil
}

// CheckInclusion checks that leaf is entry index of the tree cp names.
func CheckInclusion(cp Checkpoint, index int64, leaf []byte, proof tlog.RecordProof) error {
	if cp.Size > MaxLogSize {
		return fmt.Errorf("%w: a tree of size %d is larger than any log (%d)", ErrCheckpoint, cp.Size, int64(MaxLogSize))
	}
	if index < 0 || index >= cp.Size {
		return fmt.Errorf("%w: entry %d is not in a tree of size %d", ErrNotIncluded, index, cp.Size)
	}
	if err := tlog.CheckRecord(proof, cp.Size, cp.Root, index, tlog.RecordHash(leaf)); err != nil {
		return fmt.Errorf("%w: entry %d in the tree of size %d: %v", ErrNotIncluded, index, cp.Size, err)
	}
	return nil
}

// CheckConsistency checks that next extends old: the same log, grown. Two
// checkpoints of one size must be identical; a smaller next is a log that
// lost entries.
func CheckConsistency(old, next Checkpoint, proof tlog.TreeProof) error {
	switch {
	case old.Size < 0 || next.Size < 0 || old.Size > MaxLogSize || next.Size > MaxLogSize:
		return fmt.Errorf("%w: tree sizes %d and %d: a size must be between 0 and %d", ErrCheckpoint, old.Size, next.Size, int64(MaxLogSize))
	case old.Origin != next.Origin:
		return fmt.Errorf("%w: checkpoints of two logs (%q and %q)", ErrInconsistent, old.Origin, next.Origin)
	case next.Size < old.Size:
		return fmt.Errorf("%w: the log has %d entries, fewer than the %d of an earlier checkpoint (entries removed, or the log rebuilt)", ErrInconsistent, next.Size, old.Size)
	case next.Size == old.Size:
		if next.Root != old.Root {
			return fmt.Errorf("%w: two different trees of size %d (a forked or rewritten log)", ErrInconsistent, old.Size)
		}
		return nil
	case old.Size == 0:
		return nil
	}
	if err := tlog.CheckTree(proof, next.Size, next.Root, old.Size, old.Root); err != nil {
		return fmt.Errorf("%w: the tree of size %d does not extend the one of size %d (a forked or rewritten log): %v", ErrInconsistent, next.Size, old.Size, err)
	}
	return nil
}
