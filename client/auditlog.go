package client

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/mailbox"
)

// DefaultAuditEvery is how often a watcher asks for a new checkpoint when
// neither its options nor the join answer say.
const DefaultAuditEvery = 2 * time.Second

// auditRequestTimeout bounds one request of a watcher: a control plane
// that does not answer leaves the check for the next round.
const auditRequestTimeout = 10 * time.Second

// AuditState is how a watcher's view of the log stands.
type AuditState string

// Audit states.
const (
	// AuditUnchecked: no checkpoint held yet (or the control plane gives
	// none), so nothing has been checked.
	AuditUnchecked AuditState = "unchecked"
	// AuditConsistent: every checkpoint held extends the one before, and
	// every entry checked is in the log.
	AuditConsistent AuditState = "consistent"
	// AuditInconsistent: the log contradicts itself or what this client
	// was told (Reason says how). It stays so.
	AuditInconsistent AuditState = "inconsistent"
	// AuditStale: what is held is consistent, but the control plane has
	// not let it be checked for a while — polls in a row failed, or an
	// entry this client must see proved (its own placement or migration,
	// a policy change) has stayed unproved too long (Reason says which).
	// A control plane hiding a fork can answer errors or freeze its
	// checkpoint, so this is not "consistent"; nor is it proof of a lie,
	// and a later successful check returns to consistent.
	AuditStale AuditState = "stale"
)

// DefaultAuditStaleAfter is how many polls in a row may fail before a
// watcher is stale.
const DefaultAuditStaleAfter = 5

// minAuditStaleBound is the least default time an entry may stay
// unproved: checkpoints follow entries within Every, but a busy or
// restarting control plane may skip a few.
const minAuditStaleBound = 30 * time.Second

// AuditStatus is where a watcher stands. Field names are part of `oakmeet
// bot --json` ("audit").
type AuditStatus struct {
	State AuditState `json:"state"`
	// Reason says what contradicts what when inconsistent, why nothing is
	// checked when unchecked, what could not be checked when stale, and
	// the last check that could not be made
	// (a request that failed; it is tried again) when consistent.
	Reason string `json:"reason,omitempty"`
	// Size is the number of entries of the newest checkpoint held.
	Size int64 `json:"size"`
	// EntriesProved counts the meeting's entries proved included: this
	// participant's placements and migrations, and the policy changes.
	EntriesProved int `json:"entries_proved"`
	// EntriesPending counts this participant's placements not yet in a
	// checkpoint held (a checkpoint follows within a few seconds).
	EntriesPending int `json:"entries_pending"`
	// Offered counts the checkpoints from elsewhere (other participants,
	// witnesses) checked to be views of the same log.
	Offered int `json:"offered"`
	// VerifierKey is the log's key the watcher holds the log to.
	VerifierKey string `json:"verifier_key,omitempty"`
}

// AuditOptions configure a call's watch of the transparency log.
type AuditOptions struct {
	// Key is the log's verifier key (name+hash+key, as GET /api/config
	// names audit_verifier_key) the caller insists on; empty takes the
	// first join answer's. A join answer naming another key is an alarm.
	Key string
	// Held are signed checkpoints held from before (a bot's --checkpoints
	// file), oldest first: the log must extend the newest of them.
	Held [][]byte
	// Every is how often to ask for a new checkpoint; zero takes the join
	// answer's EveryMS, or DefaultAuditEvery.
	Every time.Duration
	// OnCheckpoint, if set, is told each checkpoint newly held (not the
	// ones of Held), as signed, once it has been checked. It runs on the
	// watcher's goroutine: it must not block for long, and must not call
	// OfferCheckpoint.
	OnCheckpoint func(signed []byte)
	// StaleAfter is how many polls in a row may fail (a request refused or
	// unanswered) before the watcher is stale; zero takes
	// DefaultAuditStaleAfter.
	StaleAfter int
	// StaleBound is how long this participant's placement or migration
	// entry, or a policy change of the meeting, may stay unproved before
	// the watcher is stale; zero takes 10 × Every, at least 30 s.
	StaleBound time.Duration
	// OnState, if set, is told the status each time its state changes
	// (to stale and back, say). It runs on the watcher's goroutine: it
	// must not block for long, and must not call the watcher.
	OnState func(AuditStatus)
}

// auditSource is the control plane's log as a watcher reads it
// (*apiclient.Client, with the meeting's join secret as bearer).
type auditSource interface {
	Checkpoint(ctx context.Context) ([]byte, error)
	InclusionProof(ctx context.Context, index, size int64) (api.InclusionProof, error)
	ConsistencyProof(ctx context.Context, from, to int64) (api.ConsistencyProof, error)
	AuditEntries(ctx context.Context, meeting string, start int64, limit int) (api.AuditPage, error)
}

// AuditWatcher holds a call's view of the deployment's transparency log:
// the checkpoints it saw, oldest first, each checked to extend the one
// before with a consistency proof, and the entries of its meeting it can
// see — its own placement of every join and the meeting's policy changes —
// each checked against its signature and proved included. It starts with
// the first join answer that carries a checkpoint and asks for a new one
// while the call runs. One goroutine owns the view; commands reach it
// through a mailbox, and Status and Checkpoints read a copy.
type AuditWatcher struct {
	src     auditSource
	meeting string
	opts    AuditOptions
	log     *slog.Logger

	cmds   *mailbox.Queue[func()]
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns
	alarm  chan struct{} // closed on the first contradiction

	mu    sync.Mutex // guards the copies below, which run writes
	snap  AuditStatus
	notes []string

	// Owned by run.
	started    bool
	every      time.Duration
	vkey       string
	verifier   note.Verifier
	pub        ed25519.PublicKey
	held       []heldCheckpoint
	joins      []joinEntry
	entries    []audit.Entry // the meeting's chain as read so far, by Index
	next       int64         // where the next read of the meeting's entries starts
	verified   int           // entries of the chain verified so far
	proved     map[int64]bool
	alarmWhy   string
	alarmed    bool // alarm is closed
	offered    int
	uncheckWhy string
	lastErr    string
	staleAfter int
	staleBound time.Duration
	pollFailed bool // a check failed in the current poll
	// pending is a checkpoint from elsewhere newer than any held, offered
	// while the control plane's own could not be had: it is compared once
	// a poll succeeds, so that an unanswered request is no alarm and a
	// control plane that answers again cannot leave it unchecked.
	pending    *audit.Checkpoint
	failures   int                 // polls in a row with a failed check
	policySeen map[int64]time.Time // when each policy change was read
	state      AuditState          // as last published
}

type heldCheckpoint struct {
	signed []byte
	cp     audit.Checkpoint
}

// joinEntry is a join answer's claim about its own entry in the log.
// The node of a placement the call refused is not compared: what the
// call was told of it is in its refusal, which the log records as the
// call reports it.
type joinEntry struct {
	index                      int64
	participant, node, country string
	refused                    bool
	done                       bool
	since                      time.Time // when the answer came
}

// newAuditWatcher starts a watcher of meeting's view of the log src
// serves.
func newAuditWatcher(src auditSource, meeting string, opts AuditOptions, log *slog.Logger) *AuditWatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &AuditWatcher{
		src: src, meeting: meeting, opts: opts, log: log,
		cmds: mailbox.New[func()](), done: make(chan struct{}), alarm: make(chan struct{}),
		proved:     map[int64]bool{},
		policySeen: map[int64]time.Time{},
		uncheckWhy: "no join answer yet",
		state:      AuditUnchecked, // the first state, which OnState is not told
	}
	w.ctx, w.cancel = context.WithCancel(context.Background())
	w.publish()
	go w.run()
	return w
}

// Status is where the watcher stands.
func (w *AuditWatcher) Status() AuditStatus {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.snap
}

// Checkpoints are the signed checkpoints held, oldest first (those given
// as AuditOptions.Held first).
func (w *AuditWatcher) Checkpoints() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.notes...)
}

// Alarm is closed once the log has contradicted itself or this client:
// Status says how.
func (w *AuditWatcher) Alarm() <-chan struct{} { return w.alarm }

// Close stops the watcher.
func (w *AuditWatcher) Close() {
	w.cancel()
	<-w.done
}

// ErrAuditNotStarted is OfferCheckpoint's answer before the watcher holds
// a checkpoint of its own to compare with.
var ErrAuditNotStarted = errors.New("client: no checkpoint of the log held yet")

// OfferCheckpoint checks a signed checkpoint from elsewhere (another
// participant, a witness) against the ones held: it must verify with the
// log's key and be a view of the same log, older or newer, with the
// consistency proof fetched from the control plane. A contradiction is an
// alarm and is returned as an error wrapping audit.ErrInconsistent; a
// checkpoint that cannot be checked (a bad signature, no proof to be had)
// is an error that raises no alarm.
func (w *AuditWatcher) OfferCheckpoint(signed []byte) error {
	res := make(chan error, 1)
	w.cmds.Put(func() {
		err := w.offer(signed)
		if err == nil {
			w.offered++
		}
		w.publish() // before the answer, so Status tells the same
		res <- err
	})
	select {
	case err := <-res:
		return err
	case <-w.done:
		return ErrClosed
	}
}

// joined hands the watcher a join answer, once the call has connected to
// the node it names or refused it.
func (w *AuditWatcher) joined(jr JoinResult, refused bool) {
	w.cmds.Put(func() { w.join(jr, refused) })
}

func (w *AuditWatcher) run() {
	defer close(w.done)
	var tick *time.Ticker
	var ticks <-chan time.Time
	defer func() {
		if tick != nil {
			tick.Stop()
		}
	}()
	for {
		select {
		case <-w.ctx.Done():
			return
		case <-w.cmds.Ready():
			for _, f := range w.cmds.Take() {
				f()
			}
		case <-ticks:
			w.poll()
		}
		switch {
		case w.alarmWhy != "" && tick != nil:
			tick.Stop() // nothing more to learn
			ticks = nil
		case w.started && w.alarmWhy == "" && tick == nil:
			tick = time.NewTicker(w.every)
			ticks = tick.C
		}
		w.publish()
	}
}

// publish copies the view for Status and Checkpoints.
func (w *AuditWatcher) publish() {
	s := AuditStatus{VerifierKey: w.vkey, EntriesProved: len(w.proved), Offered: w.offered}
	switch {
	case w.alarmWhy != "":
		s.State, s.Reason = AuditInconsistent, w.alarmWhy
	case len(w.held) == 0:
		s.State, s.Reason = AuditUnchecked, w.uncheckWhy
		if w.lastErr != "" {
			s.Reason = w.lastErr
		}
	default:
		s.State, s.Reason = AuditConsistent, w.lastErr
		if why := w.stale(time.Now()); why != "" {
			s.State, s.Reason = AuditStale, why
		}
	}
	if n := len(w.held); n > 0 {
		s.Size = w.held[n-1].cp.Size
	}
	for _, j := range w.joins {
		if !j.done {
			s.EntriesPending++
		}
	}
	notes := make([]string, len(w.held))
	for i, h := range w.held {
		notes[i] = string(h.signed)
	}
	w.mu.Lock()
	w.snap, w.notes = s, notes
	w.mu.Unlock()
	if w.alarmWhy != "" && !w.alarmed {
		// After the copy, so that whoever wakes on Alarm reads why.
		w.alarmed = true
		close(w.alarm)
	}
	if s.State != w.state {
		prev := w.state
		w.state = s.State
		if s.State == AuditStale {
			w.log.Warn("transparency log not checked", "meeting", w.meeting, "reason", s.Reason)
		} else if prev == AuditStale {
			w.log.Info("transparency log checked again", "meeting", w.meeting, "state", s.State)
		}
		if w.opts.OnState != nil {
			w.opts.OnState(s)
		}
	}
}

// stale says what has not been checked for too long, or "".
func (w *AuditWatcher) stale(now time.Time) string {
	if !w.started || len(w.held) == 0 {
		return ""
	}
	size := w.held[len(w.held)-1].cp.Size
	var why string
	for _, j := range w.joins {
		if !j.done && now.Sub(j.since) > w.staleBound {
			why = fmt.Sprintf("entry %d, the placement of %s on node %s, is not proved included after %s (the newest checkpoint held has %d entries)",
				j.index, j.participant, j.node, w.staleBound, size)
			break
		}
	}
	if why == "" {
		for _, e := range w.entries {
			if seen, ok := w.policySeen[e.Index]; ok && !w.proved[e.Index] && now.Sub(seen) > w.staleBound {
				why = fmt.Sprintf("the policy_change entry %d of meeting %s is not proved included after %s (the newest checkpoint held has %d entries)",
					e.Index, w.meeting, w.staleBound, size)
				break
			}
		}
	}
	if why == "" && w.failures >= w.staleAfter {
		why = fmt.Sprintf("%d polls in a row could not check the log", w.failures)
	}
	if why != "" && w.lastErr != "" {
		why += "; the last check that failed: " + w.lastErr
	}
	return why
}

// raise records a contradiction and returns it as an error. The first
// one stays the reason.
func (w *AuditWatcher) raise(format string, args ...any) error {
	why := fmt.Sprintf(format, args...)
	if w.alarmWhy == "" {
		w.alarmWhy = why
		w.log.Warn("transparency log inconsistent", "meeting", w.meeting, "reason", why)
	}
	return fmt.Errorf("%w: %s", audit.ErrInconsistent, w.alarmWhy)
}

// failed records a check that could not be made now.
func (w *AuditWatcher) failed(format string, args ...any) {
	w.lastErr = fmt.Sprintf(format, args...)
	w.pollFailed = true
	w.log.Debug("transparency log check postponed", "meeting", w.meeting, "reason", w.lastErr)
}

func (w *AuditWatcher) reqCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(w.ctx, auditRequestTimeout)
}

func (w *AuditWatcher) join(jr JoinResult, refused bool) {
	if w.alarmWhy != "" {
		return
	}
	a := jr.Audit
	if a.Checkpoint == "" && a.VerifierKey == "" {
		if !w.started {
			w.uncheckWhy = "the control plane's join answer carries no checkpoint of its log"
		} else {
			w.log.Warn("a join answer without a log checkpoint", "meeting", w.meeting, "participant", jr.ParticipantID)
		}
		return
	}
	if !w.started {
		if !w.start(a) {
			return
		}
	} else if a.VerifierKey != w.vkey {
		_ = w.raise("the join answer for %s names the log key %q, not %q as before", jr.ParticipantID, a.VerifierKey, w.vkey)
		return
	}
	w.joins = append(w.joins, joinEntry{index: a.Index, participant: jr.ParticipantID, node: jr.Node.ID, country: jr.Node.Country, refused: refused, since: time.Now()})
	if w.consider([]byte(a.Checkpoint), "the join answer's checkpoint", false) == nil {
		w.checkEntries()
	}
}

// start pins the log's key and takes the checkpoints held from before.
func (w *AuditWatcher) start(a api.JoinAudit) bool {
	if w.opts.Key != "" && strings.TrimSpace(w.opts.Key) != a.VerifierKey {
		_ = w.raise("the control plane names the log key %q, not the expected %q", a.VerifierKey, strings.TrimSpace(w.opts.Key))
		return false
	}
	v, err := audit.NewVerifier(a.VerifierKey)
	if err == nil {
		w.pub, err = verifierPublicKey(a.VerifierKey)
	}
	if err != nil {
		_ = w.raise("the join answer's log key: %v", err)
		return false
	}
	w.vkey, w.verifier, w.started = a.VerifierKey, v, true
	w.every = w.opts.Every
	if w.every <= 0 {
		w.every = time.Duration(a.EveryMS) * time.Millisecond
	}
	if w.every <= 0 {
		w.every = DefaultAuditEvery
	}
	w.staleAfter = w.opts.StaleAfter
	if w.staleAfter <= 0 {
		w.staleAfter = DefaultAuditStaleAfter
	}
	w.staleBound = w.opts.StaleBound
	if w.staleBound <= 0 {
		w.staleBound = max(10*w.every, minAuditStaleBound)
	}
	for i, signed := range w.opts.Held {
		cp, err := audit.OpenCheckpoint(signed, v)
		if err != nil {
			_ = w.raise("checkpoint %d of the %d held from before does not verify with the log's key %s (the log was re-signed with another key, or the checkpoint is another log's): %v",
				i+1, len(w.opts.Held), a.VerifierKey, err)
			return false
		}
		if n := len(w.held); n > 0 && cp.Size <= w.held[n-1].cp.Size {
			// Checkpoints held are in the order they came; one no newer
			// than the last must be the same tree.
			if err := audit.CheckConsistency(w.held[n-1].cp, cp, nil); err != nil {
				_ = w.raise("checkpoints held from before contradict each other: %v", err)
				return false
			}
			continue
		}
		w.held = append(w.held, heldCheckpoint{signed: signed, cp: cp})
	}
	return true
}

// consider checks a checkpoint the control plane gave against the newest
// held and holds it if it is newer. latest says it is the control plane's
// newest (GET /api/audit/checkpoint), which cannot be older than one it
// gave before; a join answer's was taken when the join began, and may be
// older than one held since, so it is checked as a view of the past. It
// returns an error only for a contradiction.
func (w *AuditWatcher) consider(signed []byte, what string, latest bool) error {
	cp, err := audit.OpenCheckpoint(signed, w.verifier)
	if err != nil {
		return w.raise("%s does not verify with the log key %s: %v", what, w.vkey, err)
	}
	n := len(w.held)
	if n == 0 {
		w.hold(signed, cp)
		return nil
	}
	newest := w.held[n-1].cp
	if cp.Size < newest.Size && !latest {
		_, err := w.older(cp, what)
		return err
	}
	if cp.Size <= newest.Size {
		// Same size, same tree; and the newest cannot shrink.
		if err := audit.CheckConsistency(newest, cp, nil); err != nil {
			return w.raise("%s (size %d) against the newest held (size %d): %v", what, cp.Size, newest.Size, err)
		}
		return nil
	}
	var proof api.ConsistencyProof
	if newest.Size > 0 {
		ctx, cancel := w.reqCtx()
		proof, err = w.src.ConsistencyProof(ctx, newest.Size, cp.Size)
		cancel()
		if err != nil {
			w.failed("no consistency proof from size %d to %d: %v", newest.Size, cp.Size, err)
			return nil
		}
	}
	if err := audit.CheckConsistency(newest, cp, proof.Proof); err != nil {
		return w.raise("%s (size %d) does not extend the newest held (size %d): %v", what, cp.Size, newest.Size, err)
	}
	w.hold(signed, cp)
	return nil
}

// older checks a checkpoint older than the newest held: one of the same
// size held must be the same tree, any other a prefix of the newest. A
// proof the control plane cannot give (it would, were the newest still in
// its log) is settled by its latest checkpoint, which must not be older;
// checked says whether cp itself could be checked.
func (w *AuditWatcher) older(cp audit.Checkpoint, what string) (checked bool, err error) {
	newest := w.held[len(w.held)-1].cp
	for _, h := range w.held {
		if h.cp.Size == cp.Size {
			if h.cp.Root != cp.Root {
				return true, w.raise("%s and one held here are two different trees of size %d: the log is forked or rewritten", what, cp.Size)
			}
			return true, nil
		}
	}
	if cp.Size == 0 {
		return true, nil
	}
	ctx, cancel := w.reqCtx()
	proof, err := w.src.ConsistencyProof(ctx, cp.Size, newest.Size)
	cancel()
	if err != nil {
		w.failed("no consistency proof from size %d to %d: %v", cp.Size, newest.Size, err)
		w.poll()
		if w.alarmWhy != "" {
			return false, fmt.Errorf("%w: %s", audit.ErrInconsistent, w.alarmWhy)
		}
		return false, nil
	}
	if err := audit.CheckConsistency(cp, newest, proof.Proof); err != nil {
		return true, w.raise("%s (size %d) is not a prefix of the log held here (size %d): the log is forked or rewritten: %v", what, cp.Size, newest.Size, err)
	}
	return true, nil
}

func (w *AuditWatcher) hold(signed []byte, cp audit.Checkpoint) {
	signed = append([]byte(nil), signed...)
	w.held = append(w.held, heldCheckpoint{signed: signed, cp: cp})
	w.lastErr = ""
	if w.opts.OnCheckpoint != nil {
		w.opts.OnCheckpoint(signed)
	}
}

// poll asks for the newest checkpoint and checks what it covers.
func (w *AuditWatcher) poll() {
	if !w.started || w.alarmWhy != "" {
		return
	}
	w.pollFailed = false
	defer func() {
		if w.pollFailed {
			w.failures++
			return
		}
		w.failures = 0
		w.lastErr = ""
	}()
	ctx, cancel := w.reqCtx()
	signed, err := w.src.Checkpoint(ctx)
	cancel()
	if err != nil {
		w.failed("no checkpoint: %v", err)
		return
	}
	if w.consider(signed, "the control plane's checkpoint", true) == nil {
		w.checkEntries()
	}
	if p := w.pending; p != nil && !w.pollFailed && w.alarmWhy == "" {
		w.pending = nil
		if err := w.compareOffered(*p); err != nil && w.alarmWhy == "" {
			w.log.Debug("offered checkpoint", "err", err)
		}
	}
}

// checkEntries reads the meeting's entries the newest checkpoint covers
// and checks this participant's placements and the policy changes among
// them.
func (w *AuditWatcher) checkEntries() {
	if len(w.held) == 0 || w.alarmWhy != "" {
		return
	}
	newest := w.held[len(w.held)-1].cp
	if !w.readEntries(newest.Size) {
		return
	}
	if w.verified < len(w.entries) {
		// The meeting's chain from its first entry: every signature and
		// link, so an entry here is one the log's key signed in place.
		if err := audit.Verify(w.pub, w.entries); err != nil {
			_ = w.raise("the meeting's log entries do not verify with the log key: %v", err)
			return
		}
		w.verified = len(w.entries)
	}
	for i := range w.joins {
		j := &w.joins[i]
		if j.done || j.index >= newest.Size {
			continue
		}
		e, ok := w.entry(j.index)
		if !ok {
			_ = w.raise("the log of size %d has no entry %d of meeting %s, which the join answer for %s named as its placement on node %s",
				newest.Size, j.index, w.meeting, j.participant, j.node)
			return
		}
		named := j.refused || e.Node == j.node && e.NodeCountry == j.country
		if (e.Kind != audit.KindPlacement && e.Kind != audit.KindMigration) || e.Participant != j.participant || !named {
			_ = w.raise("entry %d, the placement the join answer named, is a %s of %q on node %s (%s); the answer placed %s on node %s (%s)",
				e.Index, e.Kind, e.Participant, e.Node, e.NodeCountry, j.participant, j.node, j.country)
			return
		}
		if !w.prove(e, newest) {
			return
		}
		j.done = true
	}
	for _, e := range w.entries {
		if e.Kind == audit.KindPolicyChange && e.Index < newest.Size && !w.proved[e.Index] {
			if !w.prove(e, newest) {
				return
			}
		}
	}
}

// readEntries reads the meeting's entries below size not read yet. It
// reports whether they are all in.
func (w *AuditWatcher) readEntries(size int64) bool {
	for w.next < size {
		ctx, cancel := w.reqCtx()
		page, err := w.src.AuditEntries(ctx, w.meeting, w.next, 0)
		cancel()
		if err != nil {
			w.failed("the meeting's log entries from %d: %v", w.next, err)
			return false
		}
		for _, e := range page.Entries {
			if e.Meeting != w.meeting {
				_ = w.raise("the log's entries of meeting %s include entry %d of meeting %q", w.meeting, e.Index, e.Meeting)
				return false
			}
			if e.Index < w.next {
				_ = w.raise("the log's entries of meeting %s go back from index %d to %d", w.meeting, w.next, e.Index)
				return false
			}
			w.entries = append(w.entries, e)
			if e.Kind == audit.KindPolicyChange {
				w.policySeen[e.Index] = time.Now()
			}
			w.next = e.Index + 1
		}
		if !page.More {
			// No entry of the meeting between the last one and the
			// log's size when the page was read.
			w.next = max(w.next, page.Size)
			return true
		}
		if page.Next < w.next {
			w.failed("the meeting's log entries: a page ends before it starts (next %d)", page.Next)
			return false
		}
		w.next = page.Next
	}
	return true
}

// entry finds the meeting's entry of log index i among those read.
func (w *AuditWatcher) entry(i int64) (audit.Entry, bool) {
	k := sort.Search(len(w.entries), func(k int) bool { return w.entries[k].Index >= i })
	if k < len(w.entries) && w.entries[k].Index == i {
		return w.entries[k], true
	}
	return audit.Entry{}, false
}

// prove checks that e is in the tree of cp. It reports whether it is.
func (w *AuditWatcher) prove(e audit.Entry, cp audit.Checkpoint) bool {
	leaf, err := audit.LeafData(&e)
	if err != nil {
		_ = w.raise("entry %d: %v", e.Index, err)
		return false
	}
	ctx, cancel := w.reqCtx()
	p, err := w.src.InclusionProof(ctx, e.Index, cp.Size)
	cancel()
	if err != nil {
		w.failed("no inclusion proof of entry %d in the tree of size %d: %v", e.Index, cp.Size, err)
		return false
	}
	if err := audit.CheckInclusion(cp, e.Index, leaf, p.Proof); err != nil {
		_ = w.raise("the %s entry %d the control plane shows is not in its checkpoint of size %d: %v", e.Kind, e.Index, cp.Size, err)
		return false
	}
	w.proved[e.Index] = true
	return true
}

// offer checks a checkpoint from elsewhere (OfferCheckpoint).
func (w *AuditWatcher) offer(signed []byte) error {
	if w.alarmWhy != "" {
		return fmt.Errorf("%w: %s", audit.ErrInconsistent, w.alarmWhy)
	}
	if !w.started || len(w.held) == 0 {
		return ErrAuditNotStarted
	}
	cp, err := audit.OpenCheckpoint(signed, w.verifier)
	if err != nil {
		return fmt.Errorf("offered checkpoint: %w", err)
	}
	if cp.Size > w.held[len(w.held)-1].cp.Size {
		// Newer than any held: the control plane must have it by now.
		w.poll()
		if w.alarmWhy != "" {
			return fmt.Errorf("%w: %s", audit.ErrInconsistent, w.alarmWhy)
		}
		if newest := w.held[len(w.held)-1].cp; w.pollFailed && cp.Size > newest.Size {
			// Its newest could not be had (a request refused or timed
			// out, as under a burst of joins): no evidence either way yet.
			if w.pending == nil || cp.Size > w.pending.Size {
				w.pending = &cp
			}
			return fmt.Errorf("offered checkpoint of size %d, newer than the %d held: the control plane's newest could not be had to compare (%s); compared at the next poll that gets it",
				cp.Size, newest.Size, w.lastErr)
		}
	}
	return w.compareOffered(cp)
}

// compareOffered checks a checkpoint from elsewhere against the newest
// held, once that is as new as the control plane's own.
func (w *AuditWatcher) compareOffered(cp audit.Checkpoint) error {
	newest := w.held[len(w.held)-1].cp
	if cp.Size > newest.Size {
		return w.raise("a checkpoint from elsewhere has %d entries, but the control plane's newest has %d: the log it shows lost entries, or is another one",
			cp.Size, newest.Size)
	}
	if cp.Size == newest.Size {
		if cp.Root != newest.Root {
			return w.raise("a checkpoint from elsewhere and one held here are two different trees of size %d: the log is forked", cp.Size)
		}
		return nil
	}
	checked, err := w.older(cp, "a checkpoint from elsewhere")
	if err == nil && !checked {
		err = fmt.Errorf("offered checkpoint of size %d: no consistency proof to size %d to be had", cp.Size, newest.Size)
	}
	return err
}

// verifierPublicKey is the Ed25519 key of a note verifier string
// (name+hash+base64(alg 1 || key)), which also signs the log's entries.
func verifierPublicKey(vkey string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(vkey, "+", 3) // base64 may hold '+'
	if len(parts) != 3 {
		return nil, fmt.Errorf("verifier key %q: want name+hash+key", vkey)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
		return nil, fmt.Errorf("verifier key %q: not an Ed25519 key", vkey)
	}
	return ed25519.PublicKey(raw[1:]), nil
}
