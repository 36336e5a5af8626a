package control

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/store"
)

// auditor keeps the deployment's audit log: one Merkle tree (audit.Tree)
// of every entry of every chain, stored in the audit stream one record per
// entry, the record being the entry's leaf (audit.LeafData). One
// goroutine (Server.Run starts it) does every append, one after another,
// and alone owns the chain heads and the stream position: entries are
// numbered, linked and placed in the tree in the order they are stored,
// without a lock held across the store's round trip. Appends expect the
// stream's last sequence, so a second writer cannot fork the log: it
// loses the race, reads what won, and appends after it.
//
// Readers (proofs, pages of entries, exports) do not wait for the
// appender: they read the tree and the index (mu) and fetch records from
// the stream in batches. mu is held only in memory, never across I/O,
// and no other lock is taken while it is held (the tree's own lock is
// taken only outside it).
type auditor struct {
	key    ed25519.PrivateKey
	store  *store.Store
	now    func() time.Time
	log    *slog.Logger
	mbox   *mailbox
	queue  appendQueue // entries waiting for mbox's goroutine (auditbatch.go)
	signer note.Signer
	vkey   string
	every  time.Duration

	tree audit.Tree

	// Owned by the goroutine serving mbox (and by rebuild, before it runs).
	chains  map[string]*audit.Chain
	lastSeq uint64 // stream sequence of the log's newest record
	// policy is each meeting's newest policy hash that a meeting_created
	// or policy_change entry introduced; introduced every such hash.
	policy     map[string]string
	introduced map[string]map[string]bool
	timer      *time.Timer // the checkpoint due, nil while none is

	mu        sync.RWMutex
	seqs      []uint64           // entry index → stream sequence
	leaves    []tlog.Hash        // entry index → leaf hash, to check records read later
	byMeeting map[string][]int64 // chain → its entries' indexes, ascending

	checkpoint atomic.Pointer[signedCheckpoint]

	// cut is where a test makes the control plane die in the middle of a
	// join, either side of the placement's append (interrupted.go).
	cut joinCut
}

// signedCheckpoint is a checkpoint and its signed note.
type signedCheckpoint struct {
	audit.Checkpoint
	note []byte
}

// errAlteredLog is a stored log that this control plane cannot continue.
var errAlteredLog = errors.New("the stored audit log was altered or written by an older version of oakmeet")

func newAuditor(key ed25519.PrivateKey, st *store.Store, now func() time.Time, log *slog.Logger, origin string, every time.Duration) (*auditor, error) {
	signer, err := audit.NewSigner(origin, key)
	if err != nil {
		return nil, fmt.Errorf("control: audit origin: %w", err)
	}
	vkey, err := audit.VerifierKey(origin, key.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, fmt.Errorf("control: audit origin: %w", err)
	}
	return &auditor{
		key: key, store: st, now: now, log: log, mbox: newMailbox(), signer: signer, vkey: vkey, every: every,
		chains: map[string]*audit.Chain{}, policy: map[string]string{}, introduced: map[string]map[string]bool{}, byMeeting: map[string][]int64{},
	}, nil
}

func (a *auditor) run(ctx context.Context) {
	a.mbox.run(ctx, func() {})
	if a.timer != nil { // the goroutine that set it has returned from mbox.run
		a.timer.Stop()
	}
}

// rebuild reads the stored log into the tree and the index and signs a
// checkpoint of it. Every record must be an entry in canonical form
// (record == LeafData(entry)) whose Index is its place in the log and
// which continues its chain, and the log must extend the checkpoint
// this log's writer stored last: its first entries make that
// checkpoint's root, and each entry past them carries a hash and a
// signature of this control plane's key (the root of a signed checkpoint
// vouches for the ones it covers). Anything else is a log this process
// did not write and must not extend, and rebuild fails naming it.
func (a *auditor) rebuild(ctx context.Context) error {
	last, err := a.store.AuditLastSeq(ctx)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	stored, err := a.storedCheckpoint(ctx, last)
	if err != nil {
		return err
	}
	if err := a.catchUp(ctx, last, stored.Size); err != nil {
		return err
	}
	if err := a.checkSigned(stored); err != nil {
		return err
	}
	return a.sign(ctx)
}

// keyCheckpoint is the control bucket's key of the newest checkpoint this
// log's writer signed.
const keyCheckpoint = "audit_checkpoint"

// newLogHint says how to start a new log on purpose, which is the only
// way past a stored log this control plane refuses to extend.
const newLogHint = "to start a new log on purpose, move the stream " + cluster.StreamAudit + " aside and delete the control value " + keyCheckpoint

// storedCheckpoint opens the newest checkpoint signed before the restart.
// A stream without one (unless it is empty), or one this control plane's
// key and origin did not sign, is refused: whoever can write to the store
// without the key could otherwise delete or replace it and have a
// truncated or rebuilt log extended and signed with the honest key.
func (a *auditor) storedCheckpoint(ctx context.Context, last uint64) (audit.Checkpoint, error) {
	signed, err := a.store.Control(ctx, keyCheckpoint)
	if errors.Is(err, store.ErrNotFound) {
		if last == 0 {
			return audit.Checkpoint{}, nil // a new log
		}
		return audit.Checkpoint{}, fmt.Errorf("control: %w: the stream holds records (up to stream sequence %d) but the control value %s, the checkpoint signed before, is missing (deleted, or the log written by an older version); this control plane will not extend it (%s)", errAlteredLog, last, keyCheckpoint, newLogHint)
	}
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("control: %w", err)
	}
	v, err := audit.NewVerifier(a.vkey)
	if err != nil {
		return audit.Checkpoint{}, err
	}
	cp, err := audit.OpenCheckpoint(signed, v)
	if err != nil {
		return audit.Checkpoint{}, fmt.Errorf("control: %w: the control value %s is not a checkpoint signed with this control plane's key under origin %q (%v): overwritten, or the checkpoint of another log; this control plane will not extend the stored log (%s)", errAlteredLog, keyCheckpoint, a.signer.Name(), err, newLogHint)
	}
	return cp, nil
}

// checkSigned compares the rebuilt tree with the newest checkpoint signed
// before the restart: a record edited, removed or put in the stream by
// anyone without the key changes the root of that size, or leaves fewer
// entries than it counted.
func (a *auditor) checkSigned(cp audit.Checkpoint) error {
	if cp.Size == 0 {
		return nil // no entries to compare
	}
	if size := a.tree.Size(); cp.Size > size {
		return fmt.Errorf("control: %w: the stream holds %d entries, fewer than the %d of the checkpoint signed before (entries removed, or the stream rebuilt); this control plane will not extend it (%s)", errAlteredLog, size, cp.Size, newLogHint)
	}
	if root, err := a.tree.Root(cp.Size); err != nil || root != cp.Root {
		return fmt.Errorf("control: %w: its first %d entries are not the ones the checkpoint signed before names (an entry edited, or the stream rebuilt); this control plane will not extend it (%s)", errAlteredLog, cp.Size, newLogHint)
	}
	return nil
}

// catchUp adds the stored records after lastSeq, up to to, to the tree.
// Each entry of index signedFrom or later must carry this control
// plane's hash and signature; those before it are the caller's to check
// against a signed root.
//
// Records are taken a batch at a time: what needs no other record
// (decoding, the canonical form) is done for a whole batch on every core
// while the batch before it is checked, each entry against the log
// before it, in order. A start reads the whole log, and decoding is most
// of its cost.
func (a *auditor) catchUp(ctx context.Context, to uint64, signedFrom int64) error {
	if to <= a.lastSeq {
		return nil
	}
	var batch []store.AuditRecord
	var decoding *decodingBatch // decoded while the one before is checked
	check := func(b *decodingBatch) error {
		if b == nil {
			return nil
		}
		<-b.done
		for i, r := range b.recs {
			e, err := b.out[i].e, b.out[i].err
			if err == nil {
				err = a.follows(r, &e, a.tree.Size() >= signedFrom)
			}
			if err != nil {
				return fmt.Errorf("control: %w: stream sequence %d: %v; this control plane will not extend it (export it with the version that wrote it, then move the stream %s aside to start a new log)", errAlteredLog, r.Seq, err, cluster.StreamAudit)
			}
			a.add(r.Seq, r.Data, &e)
		}
		return nil
	}
	err := a.store.ReadAudit(ctx, "", true, a.lastSeq+1, to, 0, func(r store.AuditRecord) error {
		batch = append(batch, r)
		if len(batch) < catchUpBatch {
			return nil
		}
		prev := decoding
		decoding, batch = decodeBatch(batch), nil
		return check(prev)
	})
	if err == nil {
		err = check(decoding)
		decoding = nil
	}
	if err == nil {
		err = check(decodeBatch(batch))
	}
	if decoding != nil {
		<-decoding.done // nothing is left running
	}
	return err
}

// decodingBatch is a batch of records being decoded; out is its
// decoding's once done is closed.
type decodingBatch struct {
	recs []store.AuditRecord
	out  []decodedRecord
	done chan struct{}
}

// decodeBatch starts decoding recs (decodeRecords) on a goroutine of its
// own, which writes only the batch's out.
func decodeBatch(recs []store.AuditRecord) *decodingBatch {
	b := &decodingBatch{recs: recs, done: make(chan struct{})}
	go func() {
		defer close(b.done)
		b.out = decodeRecords(recs)
	}()
	return b
}

// catchUpBatch is how many records catchUp decodes at once: enough to
// share out among the cores, few enough that the first checks are not
// kept waiting.
const catchUpBatch = 1024

// decodedRecord is a stored record decoded as an entry, or why it is not
// one.
type decodedRecord struct {
	e   audit.Entry
	err error
}

// decodeRecords decodes each record (decodeRecord), sharing them out
// among GOMAXPROCS goroutines that touch only their own part of the
// result.
func decodeRecords(recs []store.AuditRecord) []decodedRecord {
	out := make([]decodedRecord, len(recs))
	workers := min(runtime.GOMAXPROCS(0), (len(recs)+127)/128)
	if workers <= 1 {
		for i, r := range recs {
			out[i].e, out[i].err = decodeRecord(r)
		}
		return out
	}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				out[i].e, out[i].err = decodeRecord(recs[i])
			}
		})
	}
	wg.Wait()
	return out
}

// decodeRecord decodes a stored record as an entry, which it must be in
// the canonical form of: the checks that need no other record.
func decodeRecord(r store.AuditRecord) (audit.Entry, error) {
	var e audit.Entry
	if err := json.Unmarshal(r.Data, &e); err != nil {
		return e, fmt.Errorf("not an entry: %v", err)
	}
	leaf, err := audit.LeafData(&e)
	if err != nil {
		return e, err
	}
	if string(leaf) != string(r.Data) {
		return e, errors.New("not in the canonical form of an entry")
	}
	return e, nil
}

// follows checks that e, decoded from r, is the next entry of the log and
// of its chain, and when signed is true that this control plane's key
// sealed it.
func (a *auditor) follows(r store.AuditRecord, e *audit.Entry, signed bool) error {
	if want := a.tree.Size(); e.Index != want {
		return fmt.Errorf("entry of meeting %q seq %d has index %d at position %d of the log", e.Meeting, e.Seq, e.Index, want)
	}
	if e.Meeting != r.Chain {
		return fmt.Errorf("entry of meeting %q stored in the chain of %q", e.Meeting, r.Chain)
	}
	head := audit.Head{}
	if c := a.chains[e.Meeting]; c != nil {
		head = c.Head()
	}
	prev := head.Hash
	if head.Seq == 0 {
		prev = audit.GenesisHash
	}
	if e.Seq != head.Seq+1 || e.PrevHash != prev {
		return fmt.Errorf("entry of meeting %q seq %d does not follow seq %d of its chain", e.Meeting, e.Seq, head.Seq)
	}
	if signed {
		if err := a.sealedHere(e, head); err != nil {
			return fmt.Errorf("entry of meeting %q seq %d (index %d): %v", e.Meeting, e.Seq, e.Index, err)
		}
	}
	return nil
}

// sealedHere checks e's hash and its signature with this control plane's
// key: a record that anyone with write access to the store, but not the
// key, put there must never be taken into the log and signed over. e
// follows head in its chain (checked before). Sealing e again computes
// the digest the hash must spell (audit keeps its encoding to itself).
func (a *auditor) sealedHere(e *audit.Entry, head audit.Head) error {
	again := audit.NewChain(a.key, e.Meeting, head).Seal(*e)
	if again.Hash != e.Hash {
		return errors.New("hash does not match the entry's content: not an entry this control plane sealed")
	}
	digest, err := hex.DecodeString(again.Hash)
	if err != nil {
		return err
	}
	// One spelling of a signature, as verifiers require.
	enc := base64.StdEncoding.Strict()
	sig, err := enc.DecodeString(e.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || enc.EncodeToString(sig) != e.Sig ||
		!ed25519.Verify(a.key.Public().(ed25519.PublicKey), digest, sig) {
		return errors.New("signature does not verify with this control plane's key: not an entry it sealed")
	}
	return nil
}

// add puts a stored entry in the tree and the index and makes it its
// chain's head. On the appender goroutine (or in rebuild).
func (a *auditor) add(seq uint64, leaf []byte, e *audit.Entry) {
	a.tree.Append(leaf)
	a.mu.Lock()
	a.seqs = append(a.seqs, seq)
	a.leaves = append(a.leaves, tlog.RecordHash(leaf))
	a.byMeeting[e.Meeting] = append(a.byMeeting[e.Meeting], e.Index)
	a.mu.Unlock()
	a.chains[e.Meeting] = audit.NewChain(a.key, e.Meeting, e.Head())
	a.lastSeq = seq
	if e.Kind == audit.KindMeetingCreated || e.Kind == audit.KindPolicyChange {
		a.policy[e.Meeting] = e.PolicyHash
		if a.introduced[e.Meeting] == nil {
			a.introduced[e.Meeting] = map[string]bool{}
		}
		a.introduced[e.Meeting][e.PolicyHash] = true
	}
}

// maxAppendAttempts bounds how often one append loses the race to another
// writer before it gives up.
const maxAppendAttempts = 5

func (a *auditor) appendNow(ctx context.Context, e audit.Entry) (audit.Entry, error) {
	if e.Time.IsZero() {
		e.Time = a.now().UTC()
	}
	if a.unannounced(e) {
		// A decision made under a policy whose own policy_change entry is
		// still on its way here (a join that read the meeting just after
		// the change was stored): the change is recorded first, so that
		// a policy hash never appears in a chain before it is introduced.
		if _, err := a.appendNow(ctx, audit.Entry{
			Kind: audit.KindPolicyChange, Meeting: e.Meeting, PolicyHash: e.PolicyHash, Time: e.Time,
			Reason: "effective policy in force for a " + e.Kind + " recorded before its change",
		}); err != nil {
			return audit.Entry{}, err
		}
	}
	for attempt := 1; ; attempt++ {
		c := a.chains[e.Meeting]
		if c == nil {
			c = audit.NewChain(a.key, e.Meeting, audit.Head{})
		}
		e.Index = a.tree.Size()
		// Sealing a copy leaves the chain's head where it is until the
		// record is stored.
		sealed := audit.NewChain(a.key, e.Meeting, c.Head()).Seal(e)
		leaf, err := audit.LeafData(&sealed)
		if err != nil {
			return audit.Entry{}, fmt.Errorf("audit %s: %w", e.Kind, err)
		}
		seq, err := a.store.AppendAudit(ctx, sealed.Meeting, leaf, a.lastSeq)
		if err == nil {
			a.add(seq, leaf, &sealed)
			a.due()
			return sealed, nil
		}
		if !errors.Is(err, store.ErrConflict) || attempt >= maxAppendAttempts {
			return audit.Entry{}, fmt.Errorf("audit %s: %w", e.Kind, err)
		}
		// Another writer appended: take its records into the tree, then
		// seal again after them.
		// Every record read is checked as an entry this control plane
		// sealed: the other writer must hold the key.
		last, lerr := a.store.AuditLastSeq(ctx)
		if lerr == nil {
			lerr = a.catchUp(ctx, last, 0)
		}
		if lerr != nil {
			if errors.Is(lerr, errAlteredLog) {
				a.log.Error("audit log: a record appended by another writer is not one this control plane can extend; no entry is appended after it", "kind", e.Kind, "meeting", e.Meeting, "err", lerr)
			}
			return audit.Entry{}, fmt.Errorf("audit %s: %w", e.Kind, lerr)
		}
		a.due()
	}
}

// unannounced reports whether e carries a policy hash that no
// meeting_created or policy_change entry of its meeting's chain has
// introduced yet (the policy-hash rule every verifier checks). The
// deployment chain has no policy.
func (a *auditor) unannounced(e audit.Entry) bool {
	if e.Meeting == "" || e.PolicyHash == "" || e.Kind == audit.KindMeetingCreated || e.Kind == audit.KindPolicyChange {
		return false
	}
	return !a.introduced[e.Meeting][e.PolicyHash]
}

// due makes sure a checkpoint is signed within every of the newest entry.
// A timer rather than a checkpoint per entry: a burst of entries costs
// one signature.
func (a *auditor) due() {
	if a.timer != nil {
		return
	}
	a.timer = time.AfterFunc(a.every, func() {
		a.mbox.post(func() {
			a.timer = nil
			if err := a.sign(context.Background()); err != nil {
				a.log.Error("sign audit checkpoint", "err", err)
			}
		})
	})
}

// sign signs a checkpoint of the whole tree, unless the newest one has
// its size already, and keeps it in the store for the next start to check
// the stream against.
func (a *auditor) sign(ctx context.Context) error {
	n := a.tree.Size()
	if cp := a.checkpoint.Load(); cp != nil && cp.Size == n {
		return nil
	}
	root, err := a.tree.Root(n)
	if err != nil {
		return err
	}
	cp := audit.Checkpoint{Origin: a.signer.Name(), Size: n, Root: root}
	signed, err := audit.SignCheckpoint(a.signer, cp)
	if err != nil {
		return err
	}
	a.checkpoint.Store(&signedCheckpoint{Checkpoint: cp, note: signed})
	// Stored even for an empty log: a stream with records but without a
	// checkpoint is one this control plane refuses to start on, so a new
	// log has one before its first record.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return a.store.PutControl(ctx, keyCheckpoint, signed)
}

// signNow signs a checkpoint of every entry stored so far (unless the
// newest has that size) and returns it: an export is proved against the
// whole log as it was asked for, not one up to a timer behind.
func (a *auditor) signNow(ctx context.Context) (*signedCheckpoint, error) {
	var err error
	if cerr := a.mbox.call(ctx, func() { err = a.sign(ctx) }); cerr != nil {
		return nil, cerr
	}
	return a.latest(), err
}

// latest is the newest signed checkpoint.
func (a *auditor) latest() *signedCheckpoint { return a.checkpoint.Load() }

// policyHashes is each meeting's newest introduced policy hash, read on
// the appender goroutine.
func (a *auditor) policyHashes(ctx context.Context) (map[string]string, error) {
	var out map[string]string
	err := a.mbox.call(ctx, func() { out = maps.Clone(a.policy) })
	return out, err
}

// page is where a read of entries ends.
type page struct {
	Entries []audit.Entry
	More    bool
	Next    int64
	Size    int64
}

// readPage reads the entries with index ≥ start, of one chain or (all)
// of every chain, at most limit of them (limit ≤ 0: every one), from the
// index and one batched read of the stream. Each record read must be
// the leaf the tree holds.
func (a *auditor) readPage(ctx context.Context, meeting string, all bool, start int64, limit int) (page, error) {
	a.mu.RLock()
	size := int64(len(a.seqs))
	var idx []int64
	if all {
		end := size
		if limit > 0 && start < size {
			end = min(size, start+int64(limit))
		}
		for i := max(start, 0); i < end; i++ {
			idx = append(idx, i)
		}
	} else {
		list := a.byMeeting[meeting]
		from, _ := slices.BinarySearch(list, start)
		idx = list[from:]
		if limit > 0 && len(idx) > limit {
			idx = idx[:limit]
		}
		idx = slices.Clone(idx)
	}
	more := false
	if len(idx) > 0 {
		newest := size - 1
		if !all {
			list := a.byMeeting[meeting]
			newest = list[len(list)-1]
		}
		more = idx[len(idx)-1] < newest
	}
	seqs := make([]uint64, len(idx))
	leaves := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		seqs[i], leaves[i] = a.seqs[x], a.leaves[x]
	}
	a.mu.RUnlock()

	p := page{Entries: make([]audit.Entry, 0, len(idx)), More: more, Next: start, Size: size}
	if len(idx) == 0 {
		if start < size {
			p.Next = size
		}
		return p, nil
	}
	p.Next = idx[len(idx)-1] + 1
	i := 0
	err := a.store.ReadAudit(ctx, meeting, all, seqs[0], seqs[len(seqs)-1], len(seqs), func(r store.AuditRecord) error {
		if i >= len(seqs) || r.Seq != seqs[i] || tlog.RecordHash(r.Data) != leaves[i] {
			return fmt.Errorf("audit log: the stored record of entry %d (stream sequence %d) is not the one in the tree: the stream was altered", idx[min(i, len(idx)-1)], r.Seq)
		}
		var e audit.Entry
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("audit log: entry %d unreadable: %w", idx[i], err)
		}
		p.Entries = append(p.Entries, e)
		i++
		return nil
	})
	if err != nil {
		return page{}, err
	}
	if i != len(seqs) {
		return page{}, fmt.Errorf("audit log: read %d of the %d records of entries %d..%d", i, len(seqs), idx[0], idx[len(idx)-1])
	}
	return p, nil
}

// joinsLogged are the participants whose joins the newest part of the log
// names: placed (a placement or migration entry) or dropped (a
// join_interrupted entry).
type joinsLogged struct {
	placed, dropped map[string]bool
}

// recentBatch is how many entries recentJoins reads at a time.
const recentBatch = 4096

// recentJoins reads the log back from its newest entry, a batch at a
// time, to the first batch holding an entry older than since: the joins
// recent enough to still hold a seat. The rebuild reads the whole log but
// knows nothing of seats; reading the tail again afterwards keeps what is
// collected, and read, bounded by the joins of that window, however long
// the log. Entries are in the order they were stored, their times by
// their writers' clocks, so since must allow for those clocks.
func (a *auditor) recentJoins(ctx context.Context, since time.Time) (joinsLogged, error) {
	out := joinsLogged{placed: map[string]bool{}, dropped: map[string]bool{}}
	a.mu.RLock()
	end := int64(len(a.seqs))
	a.mu.RUnlock()
	for end > 0 {
		start := max(0, end-recentBatch)
		p, err := a.readPage(ctx, "", true, start, int(end-start))
		if err != nil {
			return joinsLogged{}, err
		}
		older := false
		for _, e := range p.Entries {
			switch {
			case e.Time.Before(since):
				older = true
			case e.Kind == audit.KindPlacement || e.Kind == audit.KindMigration:
				out.placed[e.Participant] = true
			case e.Kind == kindJoinInterrupted:
				out.dropped[e.Participant] = true
			}
		}
		if older {
			break
		}
		end = start
	}
	return out, nil
}

// entries reads a meeting's chain, or every chain when all is true.
func (a *auditor) entries(ctx context.Context, meeting string, all bool) ([]audit.Entry, error) {
	p, err := a.readPage(ctx, meeting, all, 0, 0)
	return p.Entries, err
}

// export is the log up to a checkpoint signed for it, with the trailer
// signing the exported chains' heads: every entry (all), or one meeting's
// entries, each with its inclusion proof in that checkpoint's tree.
func (a *auditor) export(ctx context.Context, meeting string, all bool) (audit.Export, error) {
	cp, err := a.signNow(ctx)
	if err != nil {
		return audit.Export{}, err
	}
	var entries []audit.Entry
	if !all || cp.Size > 0 {
		limit := 0
		if all {
			limit = int(cp.Size)
		}
		p, err := a.readPage(ctx, meeting, all, 0, limit)
		if err != nil {
			return audit.Export{}, err
		}
		entries = p.Entries
	}
	for len(entries) > 0 && entries[len(entries)-1].Index >= cp.Size {
		entries = entries[:len(entries)-1]
	}
	x := audit.Export{
		Header:  audit.Header{Format: audit.Format, VerifierKey: a.vkey, Meeting: meeting, Checkpoint: string(cp.note)},
		Entries: entries,
		Trailer: audit.SignHeads(a.key, cp.Checkpoint, meeting, audit.Heads(entries)),
	}
	if !all {
		x.Proofs = make([]tlog.RecordProof, len(entries))
		for i, e := range entries {
			if x.Proofs[i], err = a.tree.ProveInclusion(e.Index, cp.Size); err != nil {
				return audit.Export{}, err
			}
		}
	}
	return x, nil
}
