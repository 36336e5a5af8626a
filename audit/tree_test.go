package audit

import (
	"crypto/sha256"
	"fmt"
	"math/bits"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// refRoot is RFC 6962's tree hash written out from the RFC, independently
// of tlog: MTH(D[n]) splits at the largest power of two below n.
func refRoot(leaves [][]byte) tlog.Hash {
	if len(leaves) == 1 {
		return sha256.Sum256(append([]byte{0}, leaves[0]...))
	}
	k := 1
	for k*2 < len(leaves) {
		k *= 2
	}
	l, r := refRoot(leaves[:k]), refRoot(leaves[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func leavesN(n int) [][]byte {
	out := make([][]byte, n)
	for i := range out {
		out[i] = fmt.Appendf(nil, `{"leaf":%d}`, i)
	}
	return out
}

func treeOf(leaves [][]byte) *Tree {
	var t Tree
	for _, l := range leaves {
		t.Append(l)
	}
	return &t
}

const maxExhaustive = 70

func TestTreeRootsMatchRFC6962(t *testing.T) {
	leaves := leavesN(maxExhaustive)
	tr := treeOf(leaves)
	if tr.Size() != maxExhaustive {
		t.Fatalf("size %d", tr.Size())
	}
	for n := 1; n <= maxExhaustive; n++ {
		got, err := tr.Root(int64(n))
		if err != nil {
			t.Fatal(err)
		}
		if want := refRoot(leaves[:n]); got != want {
			t.Fatalf("root of %d leaves = %v, want %v", n, got, want)
		}
	}
	if _, err := tr.Root(maxExhaustive + 1); err == nil {
		t.Fatal("root of a tree larger than the log")
	}
	if _, err := tr.Root(-1); err == nil {
		t.Fatal("root of size -1")
	}
}

// TestTreeInclusionExhaustive proves every leaf in every tree size up to
// maxExhaustive, and checks that any single changed bit of a proof, the
// leaf or its index is rejected.
func TestTreeInclusionExhaustive(t *testing.T) {
	leaves := leavesN(maxExhaustive)
	tr := treeOf(leaves)
	for n := int64(1); n <= maxExhaustive; n++ {
		root, _ := tr.Root(n)
		cp := Checkpoint{Origin: "o", Size: n, Root: root}
		for i := range n {
			p, err := tr.ProveInclusion(i, n)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckInclusion(cp, i, leaves[i], p); err != nil {
				t.Fatalf("leaf %d of %d: %v", i, n, err)
			}
			for j := range p {
				bad := append(tlog.RecordProof(nil), p...)
				bad[j] = flipHash(bad[j], int(i+n+int64(j)))
				if CheckInclusion(cp, i, leaves[i], bad) == nil {
					t.Fatalf("leaf %d of %d: proof with hash %d flipped verifies", i, n, j)
				}
			}
			if CheckInclusion(cp, i, append([]byte("x"), leaves[i]...), p) == nil {
				t.Fatalf("leaf %d of %d: another leaf verifies", i, n)
			}
			if other := (i + 1) % n; other != i && CheckInclusion(cp, other, leaves[i], p) == nil {
				t.Fatalf("leaf %d of %d verifies as leaf %d", i, n, other)
			}
			if len(p) > 0 && CheckInclusion(cp, i, leaves[i], p[:len(p)-1]) == nil {
				t.Fatalf("leaf %d of %d: a shortened proof verifies", i, n)
			}
		}
		if _, err := tr.ProveInclusion(n, n); err == nil {
			t.Fatalf("proof of leaf %d in a tree of %d", n, n)
		}
		if err := CheckInclusion(cp, n, leaves[0], nil); err == nil {
			t.Fatalf("leaf %d included in a tree of %d", n, n)
		}
	}
}

// TestTreeConsistencyExhaustive checks every pair of sizes, and that every
// single flipped hash, a wrong old root and a wrong new root are rejected.
func TestTreeConsistencyExhaustive(t *testing.T) {
	leaves := leavesN(maxExhaustive)
	tr := treeOf(leaves)
	cps := make([]Checkpoint, maxExhaustive+1)
	for n := range cps {
		root := tlog.Hash{}
		if n > 0 {
			root, _ = tr.Root(int64(n))
		}
		cps[n] = Checkpoint{Origin: "o", Size: int64(n), Root: root}
	}
	for n := int64(1); n <= maxExhaustive; n++ {
		for m := n; m <= maxExhaustive; m++ {
			p, err := tr.ProveConsistency(n, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckConsistency(cps[n], cps[m], p); err != nil {
				t.Fatalf("%d → %d: %v", n, m, err)
			}
			for j := range p {
				bad := append(tlog.TreeProof(nil), p...)
				bad[j] = flipHash(bad[j], int(n*m)+j)
				if CheckConsistency(cps[n], cps[m], bad) == nil {
					t.Fatalf("%d → %d: proof with hash %d flipped verifies", n, m, j)
				}
			}
			oldBad, newBad := cps[n], cps[m]
			oldBad.Root = flipHash(oldBad.Root, int(m))
			newBad.Root = flipHash(newBad.Root, int(n))
			if CheckConsistency(oldBad, cps[m], p) == nil {
				t.Fatalf("%d → %d: another old root verifies", n, m)
			}
			if CheckConsistency(cps[n], newBad, p) == nil {
				t.Fatalf("%d → %d: another new root verifies", n, m)
			}
			if m > n {
				if err := CheckConsistency(cps[m], cps[n], p); err == nil {
					t.Fatalf("%d → %d: a log that shrank is consistent", m, n)
				}
			}
		}
	}
	// A different log of the same size is a fork however it is proved.
	other := treeOf(leavesN(maxExhaustive + 1)[1:])
	for n := int64(1); n <= maxExhaustive; n++ {
		root, _ := other.Root(n)
		fork := Checkpoint{Origin: "o", Size: n, Root: root}
		if CheckConsistency(cps[n], fork, nil) == nil {
			t.Fatalf("fork of size %d is consistent", n)
		}
		for m := n + 1; m <= maxExhaustive; m++ {
			p, _ := other.ProveConsistency(n, m)
			root, _ := other.Root(m)
			if CheckConsistency(cps[n], Checkpoint{Origin: "o", Size: m, Root: root}, p) == nil {
				t.Fatalf("fork %d → %d is consistent", n, m)
			}
		}
	}
	if CheckConsistency(cps[3], Checkpoint{Origin: "other", Size: 3, Root: cps[3].Root}, nil) == nil {
		t.Fatal("checkpoints of two origins are consistent")
	}
	if _, err := tr.ProveConsistency(5, 4); err == nil {
		t.Fatal("consistency proof from a larger size")
	}
	if _, err := tr.ProveConsistency(1, maxExhaustive+1); err == nil {
		t.Fatal("consistency proof beyond the log")
	}
}

// TestProofSizes: proofs grow with the logarithm of the log's size.
func TestProofSizes(t *testing.T) {
	const n = 100000
	var tr Tree
	for i := range n {
		tr.Append(fmt.Appendf(nil, "%d", i))
	}
	limit := 2 * bits.Len(uint(n-1)) // 2·⌈log2 n⌉
	for _, i := range []int64{0, 1, 4095, 65535, 65536, 77777, n - 1} {
		p, err := tr.ProveInclusion(i, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > limit {
			t.Errorf("inclusion proof of %d in %d: %d hashes, more than %d", i, n, len(p), limit)
		}
	}
	for _, from := range []int64{1, 2, 3, 1000, 65536, 65537, 99999} {
		p, err := tr.ProveConsistency(from, n)
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > limit {
			t.Errorf("consistency proof %d → %d: %d hashes, more than %d", from, n, len(p), limit)
		}
	}
}

func BenchmarkTreeAppend(b *testing.B) {
	var tr Tree
	leaf := []byte(`{"seq":1}`)
	for b.Loop() {
		tr.Append(leaf)
	}
}
