package audit

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"slices"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// VerifyOptions says what an export is verified against.
type VerifyOptions struct {
	// Log is the log's verifier, from [NewVerifier] with the key the
	// verifier trusts (GET /api/config audit_verifier_key); it checks the
	// checkpoints and, through its Ed25519 key, every entry and the
	// trailer. It may be nil only with TrustFileKey.
	Log note.Verifier
	// TrustFileKey takes the key from the export's header: evidence only
	// that the file is whole, not who wrote it.
	TrustFileKey bool
	// Witnesses must each have cosigned the export's checkpoint or one of
	// Checkpoints.
	Witnesses []note.Verifier
	// Checkpoints are signed checkpoints the verifier holds (from a bot,
	// a browser or a witness); the export must be consistent with each.
	Checkpoints [][]byte
	// CheckpointNames[i], if set, names Checkpoints[i] in errors (a file
	// name and the note's place in it).
	CheckpointNames []string
}

// Summary describes an export that verified.
type Summary struct {
	Entries int
	Chains  int
	// Meeting is set for a meeting's evidence pack.
	Meeting string
	// Checkpoint is the checkpoint the export is proved against.
	Checkpoint Checkpoint
	// VerifierKey is the header's key, the one verified with.
	VerifierKey string
	// Checkpoints is how many given checkpoints the export is consistent
	// with.
	Checkpoints int
	// Witnesses names the witnesses whose cosignature was checked.
	Witnesses []string
}

// exportCheckpoint names the header's checkpoint in errors.
const exportCheckpoint = "in the export"

// VerifyExport reads an export and verifies it (docs/AUDIT.md): every
// entry's hash, signature and chain link; entries in log order, a full
// export being exactly the entries 0..Size-1 of its checkpoint, whose
// root they must recompute, and a meeting pack holding only its meeting,
// each entry with a proof of inclusion; the policy-hash rule; the signed
// trailer; consistency with every checkpoint in opts; and each witness's
// cosignature.
//
// Errors: a *LineError for a line that cannot be read, a *VerifyError
// naming the file line of the first entry or trailer that fails, a
// *CheckpointError naming a checkpoint that is bad or contradicted; each
// wraps the sentinel of the check that failed.
func VerifyExport(r io.Reader, opts VerifyOptions) (Summary, error) {
	x, lines, leaves, err := readExport(r)
	if err != nil {
		return Summary{}, err
	}
	log, pub, err := logKey(x.Header, opts)
	if err != nil {
		return Summary{}, err
	}
	cp, err := OpenCheckpoint([]byte(x.Header.Checkpoint), log)
	if err != nil {
		return Summary{}, &CheckpointError{Name: exportCheckpoint, Err: err}
	}
	tree, err := checkEntries(pub, cp, x, lines, leaves)
	if err != nil {
		return Summary{}, err
	}
	trailerLine := 1 + len(x.Entries) + len(x.Proofs) + len(x.Consistency) + 1
	if err := checkTrailer(pub, cp, x.Header.Meeting, x.Entries, &x.Trailer, trailerLine); err != nil {
		return Summary{}, err
	}
	for i, signed := range opts.Checkpoints {
		name := fmt.Sprintf("#%d", i+1)
		if i < len(opts.CheckpointNames) && opts.CheckpointNames[i] != "" {
			name = opts.CheckpointNames[i]
		}
		held, err := OpenCheckpoint(signed, log)
		if err != nil {
			return Summary{}, &CheckpointError{Name: name, Err: err}
		}
		if err := checkHeld(cp, held, tree, x.Consistency); err != nil {
			return Summary{}, &CheckpointError{Name: name, Size: held.Size, Err: err}
		}
	}
	witnesses, err := checkWitnesses(x.Header.Checkpoint, log, opts)
	if err != nil {
		return Summary{}, err
	}
	return Summary{
		Entries: len(x.Entries), Chains: len(x.Trailer.Heads), Meeting: x.Header.Meeting,
		Checkpoint: cp, VerifierKey: x.Header.VerifierKey, Checkpoints: len(opts.Checkpoints), Witnesses: witnesses,
	}, nil
}

// logKey is the verifier and Ed25519 key the export is checked with.
func logKey(h Header, opts VerifyOptions) (note.Verifier, ed25519.PublicKey, error) {
	fileV, ferr := NewVerifier(h.VerifierKey)
	switch {
	case opts.Log == nil && !opts.TrustFileKey:
		return nil, nil, errors.New("audit: a log key is required (or trust the key in the file explicitly)")
	case opts.Log == nil && ferr != nil:
		return nil, nil, &LineError{Line: 1, Err: fmt.Errorf("header: verifier_key: %w", ferr)}
	case opts.Log == nil:
		return fileV, LogPublicKey(fileV), nil
	}
	pub := LogPublicKey(opts.Log)
	if ferr != nil || fileV.Name() != opts.Log.Name() || fileV.KeyHash() != opts.Log.KeyHash() ||
		(pub != nil && !pub.Equal(LogPublicKey(fileV))) {
		return nil, nil, &CheckpointError{Name: exportCheckpoint, Err: fmt.Errorf("%w: the export is of the log %q, not of the expected %s (signed with another key?)", ErrCheckpoint, h.VerifierKey, opts.Log.Name())}
	}
	if pub == nil {
		// A verifier of another kind: the header's key has its name and
		// key hash, and the entries are bound to a checkpoint it signed.
		pub = LogPublicKey(fileV)
	}
	return opts.Log, pub, nil
}

// checkEntries checks each entry in file order: its meeting, its place in
// the log, its hash, signature and chain link, the policy-hash rule and
// (pack) its inclusion proof; then that a full export is the whole tree,
// which it returns (nil for a pack).
func checkEntries(pub ed25519.PublicKey, cp Checkpoint, x Export, lines []int, leaves []tlog.Hash) (*Tree, error) {
	meeting := x.Header.Meeting
	pack := meeting != ""
	heads := map[string]Head{}
	policies := map[string]map[string]bool{}
	prevIndex := int64(-1)
	for i := range x.Entries {
		e := &x.Entries[i]
		fail := func(err error, format string, args ...any) error {
			return &VerifyError{Line: lines[i], Seq: e.Seq, Meeting: e.Meeting, Reason: fmt.Sprintf(format, args...), Err: err}
		}
		switch {
		case pack && e.Meeting != meeting:
			return nil, fail(ErrWrongMeeting, "entry of another chain in the export of meeting %q", meeting)
		case e.Index <= prevIndex:
			return nil, fail(ErrOrder, "index %d after index %d (entries reordered or repeated)", e.Index, prevIndex)
		case !pack && e.Index != int64(i):
			return nil, fail(ErrOrder, "index %d where the log's entry %d belongs (entries removed or inserted)", e.Index, i)
		case e.Index >= cp.Size:
			return nil, fail(ErrNotIncluded, "index %d is beyond the checkpoint's %d entries", e.Index, cp.Size)
		}
		prevIndex = e.Index
		if reason, check := checkEntry(pub, e, heads[e.Meeting]); check != nil {
			return nil, fail(check, "%s", reason)
		}
		heads[e.Meeting] = e.Head()
		if e.Meeting != "" {
			known := policies[e.Meeting]
			if known == nil {
				known = map[string]bool{}
				policies[e.Meeting] = known
			}
			if e.PolicyHash != "" && (e.Kind == KindMeetingCreated || e.Kind == KindPolicyChange) {
				known[e.PolicyHash] = true
			}
			if e.PolicyHash != "" && !known[e.PolicyHash] {
				return nil, fail(ErrPolicy, "policy hash changed without a policy_change entry (no earlier meeting_created or policy_change entry of the meeting has %q)", e.PolicyHash)
			}
		}
		if pack {
			if err := tlog.CheckRecord(x.Proofs[i], cp.Size, cp.Root, e.Index, leaves[i]); err != nil {
				return nil, fail(ErrNotIncluded, "not in the checkpoint's tree of %d entries (inclusion proof: %v)", cp.Size, err)
			}
		}
	}
	if pack {
		return nil, nil
	}
	end := 1 + len(x.Entries) + 1
	if int64(len(x.Entries)) != cp.Size {
		return nil, &VerifyError{Line: end, Reason: fmt.Sprintf("%d entries, but the checkpoint's log has %d (entries removed from the end?)", len(x.Entries), cp.Size), Err: ErrNotIncluded}
	}
	tree := &Tree{}
	for _, h := range leaves {
		tree.appendHash(h)
	}
	if root, _ := tree.Root(cp.Size); root != cp.Root {
		return nil, &VerifyError{Line: end, Reason: "the entries' tree is not the checkpoint's (an entry edited, moved or replaced)", Err: ErrNotIncluded}
	}
	return tree, nil
}

// checkHeld checks that a checkpoint someone holds and the export's are
// views of one log. A full export has its tree; a pack has consistency
// steps.
func checkHeld(cp, held Checkpoint, tree *Tree, steps []ConsistencyStep) error {
	if held.Origin != cp.Origin {
		return fmt.Errorf("%w: checkpoints of two logs (%q and %q)", ErrInconsistent, held.Origin, cp.Origin)
	}
	if held.Size == cp.Size || held.Size == 0 {
		return CheckConsistency(held, cp, nil)
	}
	if tree != nil {
		if held.Size > cp.Size {
			// Not called truncation: an honest export made before
			// the checkpoint reads exactly the same.
			return &olderError{have: fmt.Sprintf("%d entries", cp.Size)}
		}
		if root, _ := tree.Root(held.Size); root != held.Root {
			return fmt.Errorf("%w: the log's first %d entries are not the ones the checkpoint signed: forked, rewritten or rebuilt", ErrInconsistent, held.Size)
		}
		return nil
	}
	from, to := held, cp
	if held.Size > cp.Size {
		from, to = cp, held
	}
	i := slices.IndexFunc(steps, func(s ConsistencyStep) bool { return s.From == from.Size && s.To == to.Size })
	if i < 0 && held.Size > cp.Size {
		return &olderError{have: fmt.Sprintf("a checkpoint of %d entries", cp.Size)}
	}
	if i < 0 {
		return fmt.Errorf("%w: the pack has no consistency proof from size %d to %d (export it with this checkpoint)", ErrInconsistent, from.Size, to.Size)
	}
	return CheckConsistency(from, to, steps[i].Proof)
}

// checkWitnesses checks that each witness cosigned the export's
// checkpoint or a held one, and that no cosignature under a witness's
// name and key is forged.
func checkWitnesses(exported string, log note.Verifier, opts VerifyOptions) ([]string, error) {
	var names []string
	for _, w := range opts.Witnesses {
		cosigned := false
		all := append([][]byte{[]byte(exported)}, opts.Checkpoints...)
		for i, signed := range all {
			n, err := note.Open(signed, note.VerifierList(log, w))
			var bad *note.InvalidSignatureError
			if errors.As(err, &bad) {
				name := exportCheckpoint
				if i > 0 {
					name = fmt.Sprintf("#%d", i)
					if i-1 < len(opts.CheckpointNames) && opts.CheckpointNames[i-1] != "" {
						name = opts.CheckpointNames[i-1]
					}
				}
				return nil, &CheckpointError{Name: name, Err: fmt.Errorf("%w: invalid signature by %s (forged)", ErrWitness, bad.Name)}
			}
			if err != nil {
				continue // OpenCheckpoint has already said what is wrong
			}
			for _, s := range n.Sigs {
				cosigned = cosigned || s.Name == w.Name() && s.Hash == w.KeyHash()
			}
		}
		if !cosigned {
			return nil, fmt.Errorf("%w: no checkpoint cosigned by witness %s", ErrWitness, w.Name())
		}
		names = append(names, w.Name())
	}
	return names, nil
}

func checkTrailer(pub ed25519.PublicKey, cp Checkpoint, meeting string, entries []Entry, t *Trailer, line int) error {
	fail := func(meeting string, seq uint64, format string, args ...any) error {
		return &VerifyError{Line: line, Meeting: meeting, Seq: seq, Reason: fmt.Sprintf(format, args...), Err: ErrTrailer}
	}
	sig, err := sigEncoding.DecodeString(t.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || sigEncoding.EncodeToString(sig) != t.Sig {
		return fail("", 0, "trailer sig is not a base64 Ed25519 signature")
	}
	if !ed25519.Verify(pub, headsMessage(cp, meeting, t.Heads), sig) {
		return fail("", 0, "trailer signature does not verify with the log key for this export's checkpoint (%d entries) and meeting (a trailer from another export?)", cp.Size)
	}
	got := Heads(entries)
	ids := make([]string, 0, len(got)+len(t.Heads))
	for id := range got {
		ids = append(ids, id)
	}
	for id := range t.Heads {
		if _, ok := got[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // report the same chain every time
	for _, id := range ids {
		g, inFile := got[id]
		want, inTrailer := t.Heads[id]
		switch {
		case !inTrailer:
			return fail(id, g.Seq, "chain is in the file but not in the trailer")
		case !inFile:
			return fail(id, want.Seq, "trailer names a chain with no entries in the file (ends at seq %d)", want.Seq)
		case g != want:
			return fail(id, g.Seq, "chain ends at seq %d but the trailer says seq %d (entries removed from the end?)", g.Seq, want.Seq)
		}
	}
	return nil
}
