package group

import (
	"bytes"
	"container/heap"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// The churn simulation's world: a server that keeps the meeting's
// participants in join order and relays key messages and media with
// delays, reordering, duplicates and losses it draws from one seeded
// generator, over a fake clock. Everything that happens follows from the
// seed, so a failure is rerun exactly from it.

// churnParams are the knobs one seed draws.
type churnParams struct {
	maxDelay   time.Duration // key messages and views
	mediaDelay time.Duration
	fifo       bool    // key messages keep their order per sender and recipient
	dupRate    float64 // a key message is delivered twice
	dropRate   float64 // a retried key message (announcement, ack, commit) is lost
	glitchRate float64 // a view shows two participants swapped
	cfg        Config  // durations every member uses
}

// simEvent is one timed delivery: a key message to whoever holds the
// participant id then, a view to one member, or a frame to one member.
type simEvent struct {
	at      time.Time
	seq     int
	kind    int
	from    string
	to      string
	payload []byte
	target  *Member
	view    []string
	frame   *simFrame
}

const (
	evKey = iota
	evView
	evMedia
)

// simFrame is a protected frame and what its sender held when it sent it.
type simFrame struct {
	sender *Member
	kid    uint64
	digest [keymsg.DigestSize]byte
	number uint64
	sentAt time.Time
	bytes  []byte
}

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if !q[i].at.Equal(q[j].at) {
		return q[i].at.Before(q[j].at)
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// minted is what the world knows of an epoch a leader made.
type minted struct {
	number uint64
	leader string
	at     time.Time
	roster []keymsg.Entry
}

// leaver is a member that left and that a server keeps forwarding to: it
// must never be able to read frames of an epoch made after its leave.
type leaver struct {
	m    *Member
	left time.Time
}

type churnWorld struct {
	seed    uint64
	rng     *rand.Rand
	clock   *fakeClock
	p       churnParams
	members map[string]*Member // the instance holding each participant id now
	order   []string           // the server's participants, in join order
	leavers []leaver
	queue   eventQueue
	seq     int
	lastAt  map[string]time.Time  // last delivery scheduled per channel, for FIFO
	due     map[*Member]time.Time // when each member asked to be ticked next
	held    []heldKey             // scratch for checkKeys
	recv    []heldKey
	senders []string
	minted  map[[keymsg.DigestSize]byte]minted
	nextID  int
	ids     map[string]*identity.Identity
	trace   []string
	tracing bool
	stats   churnStats
	fail    error
}

// churnStats count what one seed did, for the run's summary.
type churnStats struct {
	epochs, frames, decrypted, noKey, joins, leaves, crashes, messages int
	settled                                                            time.Duration // summed time from the end of churn to agreement
}

func (w *churnWorld) logf(format string, args ...any) {
	if w.tracing {
		w.trace = append(w.trace, fmt.Sprintf("%8.3fs ", w.elapsed().Seconds())+fmt.Sprintf(format, args...))
	}
}

var simStart = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func (w *churnWorld) elapsed() time.Duration { return w.clock.Now().Sub(simStart) }

func (w *churnWorld) failf(format string, args ...any) {
	if w.fail == nil {
		w.fail = fmt.Errorf("at %.3fs: %s", w.elapsed().Seconds(), fmt.Sprintf(format, args...))
	}
}

func (w *churnWorld) delay(max time.Duration) time.Duration {
	if max <= 0 {
		return 0
	}
	return time.Duration(w.rng.Int64N(int64(max)))
}

func (w *churnWorld) schedule(e *simEvent, max time.Duration, channel string) {
	e.at = w.clock.Now().Add(w.delay(max))
	if channel != "" {
		if last, ok := w.lastAt[channel]; ok && e.at.Before(last) {
			e.at = last
		}
		w.lastAt[channel] = e.at
	}
	w.seq++
	e.seq = w.seq
	heap.Push(&w.queue, e)
}

// wireType is a key message's "type" field, read without decoding the
// message: the relay looks at every message, and a full decode would
// double the cost of a run under -race.
func wireType(payload []byte) string {
	const key = `"type":"`
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return ""
	}
	rest := payload[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// retried says whether the protocol sends a message of this type again
// when it is lost: only those may be dropped.
func retried(payload []byte) bool {
	switch wireType(payload) {
	case "announce", "ack", "commit":
		return true
	}
	return false
}

func isEpoch(payload []byte) bool { return wireType(payload) == "epoch" }

// send relays a member's outgoing messages: to one participant id, or to
// every participant the server lists (and every leaver it still forwards
// to) but the sender.
func (w *churnWorld) send(from string, out []Outgoing) {
	for _, o := range out {
		var to []string
		if o.To != "" {
			to = []string{o.To}
		} else {
			for _, p := range w.order {
				if p != from {
					to = append(to, p)
				}
			}
			if isEpoch(o.Payload) {
				// Epochs are all a leaver needs to read on: the rest would
				// only cost time.
				for _, l := range w.leavers {
					w.sendKey(from, "", l.m, o.Payload)
				}
			}
		}
		for _, p := range to {
			w.sendKey(from, p, nil, o.Payload)
		}
	}
}

func (w *churnWorld) sendKey(from, to string, target *Member, payload []byte) {
	copies := 1
	if w.rng.Float64() < w.p.dupRate {
		copies = 2
	}
	if w.rng.Float64() < w.p.dropRate && retried(payload) {
		copies--
	}
	channel := ""
	if w.p.fifo {
		channel = "k:" + from + ">" + to
		if target != nil {
			channel += target.Participant() + "(left)"
		}
	}
	for range copies {
		w.schedule(&simEvent{kind: evKey, from: from, to: to, target: target, payload: payload}, w.p.maxDelay, channel)
	}
}

// showView sends the server's current roster to m, possibly glitched:
// views reach members at different times (in order per member), and one
// may briefly list two participants the other way round.
func (w *churnWorld) showView(m *Member) {
	view := slices.Clone(w.order)
	if len(view) >= 2 && w.rng.Float64() < w.p.glitchRate {
		i := w.rng.IntN(len(view) - 1)
		view[i], view[i+1] = view[i+1], view[i]
	}
	w.schedule(&simEvent{kind: evView, target: m, view: view}, w.p.maxDelay, fmt.Sprintf("v:%p", m))
}

func (w *churnWorld) rosterChanged() {
	for _, p := range w.order {
		w.showView(w.members[p])
	}
	for _, l := range w.leavers {
		// A leaver told the roster follows its leader, as a client that
		// wants to keep reading would.
		w.schedule(&simEvent{kind: evView, target: l.m, view: slices.Clone(w.order)}, w.p.maxDelay, fmt.Sprintf("v:%p", l.m))
	}
}

// deliver runs every event due by now.
func (w *churnWorld) deliver() {
	now := w.clock.Now()
	for len(w.queue) > 0 && w.fail == nil && !w.queue[0].at.After(now) {
		e := heap.Pop(&w.queue).(*simEvent)
		switch e.kind {
		case evKey:
			m := e.target
			if m == nil {
				m = w.members[e.to]
			}
			if m == nil {
				continue
			}
			out, err := m.HandleMessage(e.from, e.payload)
			w.stats.messages++
			if w.tracing {
				w.logf("  %s > %s%s: %s %v", e.from, m.Participant(), leftMark(w.isLeaver(m)), msgType(e.payload), err)
			}
			w.after(m, out)
		case evView:
			if w.members[e.target.Participant()] != e.target && !w.isLeaver(e.target) {
				continue // crashed or left meanwhile
			}
			w.logf("  view %v > %s%s", e.view, e.target.Participant(), leftMark(w.isLeaver(e.target)))
			out, err := e.target.OnRosterChange(e.view)
			if err != nil && !errors.Is(err, ErrEpochExhausted) {
				w.failf("%s OnRosterChange: %v", e.target.Participant(), err)
			}
			w.after(e.target, out)
		case evMedia:
			w.receiveFrame(e.target, e.frame)
		}
	}
}

// after sends what a call on m returned and notes any epoch m just made.
func (w *churnWorld) after(m *Member, out []Outgoing) {
	if w.isLeaver(m) {
		return // a leaver's process is gone; only its keys are tested
	}
	w.noteMinted(m)
	w.due[m] = m.NextTick()
	w.send(m.Participant(), out)
}

func (w *churnWorld) isLeaver(m *Member) bool {
	return slices.ContainsFunc(w.leavers, func(l leaver) bool { return l.m == m })
}

func (w *churnWorld) noteMinted(m *Member) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.epochs {
		if !st.own(m) {
			continue
		}
		if _, ok := w.minted[st.digest]; ok {
			continue
		}
		w.minted[st.digest] = minted{number: st.number, leader: m.Participant(), at: w.clock.Now(), roster: slices.Clone(st.roster)}
		w.stats.epochs++
		var names []string
		for _, e := range st.roster {
			names = append(names, e.Participant)
		}
		w.logf("%s mints epoch %d %x for %v (view %v)", m.Participant(), st.number, st.digest[:3], names, m.view)
	}
}

// tickDue ticks every member whose NextTick has come.
func (w *churnWorld) tickDue() {
	now := w.clock.Now()
	for _, p := range slices.Clone(w.order) {
		m := w.members[p]
		if d, ok := w.due[m]; m == nil || (ok && d.After(now)) {
			continue
		}
		out, err := m.Tick()
		if err != nil && !errors.Is(err, ErrEpochExhausted) {
			w.failf("%s Tick: %v", p, err)
		}
		w.after(m, out)
	}
}

// sendingKey is the KID a member sends under and its epoch's digest; ok is
// false while it sends nothing.
func (m *Member) sendingKey() (kid uint64, digest [keymsg.DigestSize]byte, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sending == nil || m.sender.Load() == nil {
		return 0, digest, false
	}
	return m.sending.sender.KID(), m.sending.digest, true
}

// receiveKeys appends the KIDs a member's receiver holds, with the digest
// of the epoch each came from.
func (m *Member) receiveKeys(dst []heldKey) []heldKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, st := range m.epochs {
		for _, k := range st.kids {
			dst = append(dst, heldKey{k, st.digest})
		}
	}
	for _, r := range m.retired {
		for _, k := range r.kids {
			dst = append(dst, heldKey{k, r.digest})
		}
	}
	return dst
}

type heldKey struct {
	kid    uint64
	digest [keymsg.DigestSize]byte
}

// checkKeys is the first invariant, on state rather than on frames: no
// receive key any member holds is another epoch's key under the KID some
// member sends under.
func (w *churnWorld) checkKeys() {
	sending := w.held[:0]
	senders := w.senders[:0]
	for _, s := range w.order {
		if kid, d, ok := w.members[s].sendingKey(); ok {
			sending = append(sending, heldKey{kid, d})
			senders = append(senders, s)
		}
	}
	w.held, w.senders = sending, senders
	if len(sending) == 0 {
		return
	}
	for _, r := range w.order {
		w.recv = w.members[r].receiveKeys(w.recv[:0])
		for _, h := range w.recv {
			for i, s := range sending {
				if s.kid == h.kid && s.digest != h.digest {
					e, idx := SplitKID(s.kid)
					w.failf("%s sends under KID %#x (epoch %d index %d, %x) but %s holds that KID from epoch %x",
						senders[i], s.kid, e, idx, s.digest[:3], r, h.digest[:3])
					return
				}
			}
		}
	}
}

// sendFrame has m protect a frame and sends it to every other participant
// and every leaver.
func (w *churnWorld) sendFrame(m *Member) {
	sendKID, sendDigest, ok := m.sendingKey()
	if !ok {
		return
	}
	b, err := m.Protect(nil, mediaframe.VP8, testFrame)
	if err != nil {
		if !errors.Is(err, mediaframe.ErrNoKey) {
			w.failf("%s Protect: %v", m.Participant(), err)
		}
		return
	}
	hdr, _, err := sframe.ParseHeader(b[mediaframe.VP8KeyFramePrefix:])
	if err != nil || hdr.KID != sendKID {
		// The sender changed between holdings and Protect: nothing else
		// runs meanwhile in the simulation, so this is a bug.
		w.failf("%s protected under KID %#x, holding %#x (%v)", m.Participant(), hdr.KID, sendKID, err)
		return
	}
	number, _ := SplitKID(hdr.KID)
	f := &simFrame{sender: m, kid: hdr.KID, digest: sendDigest, number: number, sentAt: w.clock.Now(), bytes: b}
	w.stats.frames++
	targets := []*Member{}
	for _, p := range w.order {
		if p != m.Participant() {
			targets = append(targets, w.members[p])
		}
	}
	for _, l := range w.leavers {
		targets = append(targets, l.m)
	}
	for _, t := range targets {
		w.schedule(&simEvent{kind: evMedia, target: t, frame: f}, w.p.mediaDelay, "")
	}
}

func (w *churnWorld) receiveFrame(r *Member, f *simFrame) {
	got, err := r.Unprotect(nil, mediaframe.VP8, f.bytes)
	leaving := w.isLeaver(r)
	switch {
	case err == nil:
		if string(got) != string(testFrame) {
			w.failf("%s decrypted %s's frame to other bytes", r.Participant(), f.sender.Participant())
		}
		if leaving {
			w.checkLeaverRead(r, f)
		} else {
			w.stats.decrypted++
		}
	case errors.Is(err, sframe.ErrUnknownKID) || errors.Is(err, mediaframe.ErrNoKey):
		// A replay would be another key's counters under a reused KID: no
		// frame is ever sent twice here, so it is a failure like ErrAuth.
		if !leaving {
			w.stats.noKey++
		}
	default:
		who := "member"
		if leaving {
			who = "leaver"
		}
		w.failf("%s %s: frame from %s under KID %#x (epoch %d %x, sent at %.3fs) fails: %v",
			who, r.Participant(), f.sender.Participant(), f.kid, f.number, f.digest[:3], f.sentAt.Sub(simStart).Seconds(), err)
	}
}

// checkLeaverRead fails if a leaver read a frame of an epoch whose leader
// made it after the leave had reached every view: the leader cannot have
// listed the leaver then.
func (w *churnWorld) checkLeaverRead(r *Member, f *simFrame) {
	i := slices.IndexFunc(w.leavers, func(l leaver) bool { return l.m == r })
	info, ok := w.minted[f.digest]
	if !ok {
		w.failf("frame under an epoch %x nobody minted", f.digest[:3])
		return
	}
	if info.at.After(w.leavers[i].left.Add(w.p.maxDelay)) {
		w.failf("%s left at %.3fs and reads epoch %d, made by %s at %.3fs",
			r.Participant(), w.leavers[i].left.Sub(simStart).Seconds(), info.number, info.leader, info.at.Sub(simStart).Seconds())
	}
}

func (w *churnWorld) describe() string {
	var b strings.Builder
	for _, p := range w.order {
		m := w.members[p]
		s := m.Status()
		code, _ := m.SecurityCode()
		var roster []string
		for _, e := range m.Roster() {
			roster = append(roster, e.Participant)
		}
		m.mu.Lock()
		view, heard := slices.Clone(m.view), slices.Sorted(maps.Keys(m.heard))
		m.mu.Unlock()
		fmt.Fprintf(&b, "\n  %s: sending %d newest %d code %s roster %v leader %s awaiting %v unheard %v view %v heard %v",
			p, s.Epoch, s.Newest, code.String()[:5], roster, m.Leader(), s.AwaitingAcks, s.Unheard, view, heard)
	}
	return b.String()
}

func leftMark(left bool) string {
	if left {
		return "(left)"
	}
	return ""
}

func msgType(payload []byte) string {
	msg, err := keymsg.Decode(payload)
	if err != nil {
		return "?"
	}
	if e, ok := msg.(*keymsg.Epoch); ok {
		d := e.Digest()
		return fmt.Sprintf("epoch %d %x", e.Epoch, d[:3])
	}
	return msg.Type()
}
