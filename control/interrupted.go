package control

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
)

// A join cut in half. A join stores its participant (the meeting's
// compare-and-set), then appends its placement to the audit log, then
// answers with the join token; a lobby admission, a rejoin that replaces
// someone and the host's own join take the same path (joinOnce). A control
// plane that dies between the store and the append leaves a participant in
// the record that the log never placed and that no token names. The next
// control plane on the store (a restart, or the next leader of replicas)
// records it gone at once, before its state is loaded, so that its seat is
// never held: it logs the drop (kindJoinInterrupted, which claims no
// placement), then stores the departure with api.ReasonJoinInterrupted.
// The log first: a start that dies in between finds the drop logged and
// only stores it.
//
// One that dies after the append but before the answer leaves a
// participant logged placed and not answered: it keeps its seat until the
// seat's hold passes, and is then recorded "never connected", as any
// placed participant that never came.
//
// A join in a living control plane whose store or log failed after the
// participant may have been stored is dropped the same way at once
// (dropJoin), so it does not linger in the record without a seat.

// kindJoinInterrupted is the audit entry of a stored join dropped before it
// was answered. It names the participant and, in its reason, the node it
// was stored for, but leaves Node empty: it is not a placement, and no
// reader of the log (the web app's audit view, `oakmeet audit verify`, the
// meeting report) counts it as one.
const kindJoinInterrupted = "join_interrupted"

// interruptedMargin covers the difference between two processes' clocks
// (the previous control plane may have run on another host) and the time
// between a join's store and its append.
const interruptedMargin = time.Minute

// joinCut are the points of a join where a test makes its control plane
// die: after the participant is stored and before its placement is
// appended (stored), and after the append and before the answer (logged).
// A test's hook closes that control plane's NATS connection, a real crash
// of its I/O, and returns an error so the join goes no further, as a dead
// process would. Nil outside tests.
type joinCut struct {
	stored func() error
	logged func() error
}

func cutAt(hook func() error) error {
	if hook == nil {
		return nil
	}
	return hook()
}

// finishInterruptedJoins records gone every participant in all that was
// stored by a join its control plane never answered and whose placement
// the log does not hold, and returns all as it is afterwards (each meeting
// changed replaced by its stored value). Only joins recent enough to still
// hold a seat are looked at: an older unconnected participant's hold has
// passed, and the first tick releases it. Called once, before the state is
// loaded and anything is served.
func (s *Server) finishInterruptedJoins(ctx context.Context, all []*meeting) ([]*meeting, error) {
	now := s.now()
	window := s.cfg.TokenTTL + s.cfg.Timing.SeatGrace + interruptedMargin
	type candidate struct {
		meeting int // index in all
		p       participant
	}
	var cands []candidate
	var pids []string
	for i, m := range all {
		for _, p := range m.Participants {
			if p.Left == nil && p.Connected == nil && p.Joined.After(now.Add(-window)) {
				cands = append(cands, candidate{i, p})
				pids = append(pids, p.ID)
			}
		}
	}
	if len(cands) == 0 {
		return all, nil
	}
	// A join this process is carrying out (served before the state was
	// loaded) holds a seat already: it is not interrupted.
	ours, err := s.owner.seatsHeld(ctx, pids)
	if err != nil {
		return nil, err
	}
	// The placement of a candidate was appended after it was stored, so no
	// later than a window back (by the writer's clock; the margin again
	// for the reader's).
	logged, err := s.audit.recentJoins(ctx, now.Add(-window-interruptedMargin))
	if err != nil {
		return nil, fmt.Errorf("read the recent audit log: %w", err)
	}
	drop := map[int][]participant{}
	for _, c := range cands {
		if ours[c.p.ID] || logged.placed[c.p.ID] {
			continue
		}
		if !logged.dropped[c.p.ID] {
			reason := fmt.Sprintf("%s: stored %s for node %s (%s); the control plane stopped before its placement was logged, so no join token was issued: recorded gone",
				api.ReasonJoinInterrupted, c.p.Joined.UTC().Format(time.RFC3339Nano), c.p.Node.ID, c.p.Node.Country)
			if _, err := s.audit.append(ctx, interruptedEntry(all[c.meeting].ID, c.p.ID, reason)); err != nil {
				return nil, fmt.Errorf("audit interrupted join: %w", err)
			}
		}
		drop[c.meeting] = append(drop[c.meeting], c.p)
	}
	for i, ps := range drop {
		m, err := s.recordInterrupted(ctx, all[i].ID, ps, now)
		if err != nil {
			return nil, fmt.Errorf("record interrupted joins of meeting %s: %w", all[i].ID, err)
		}
		for _, p := range ps {
			s.log.Warn("join interrupted: participant stored but never logged placed, recorded gone", "meeting", m.ID, "participant", p.ID, "node", p.Node.ID)
		}
		all[i] = m
	}
	return all, nil
}

func interruptedEntry(meetingID, pid, reason string) audit.Entry {
	return audit.Entry{Kind: kindJoinInterrupted, Meeting: meetingID, Participant: pid, Reason: reason}
}

// recordInterrupted stores the departure of each of ps still there and
// never connected, and returns the meeting as stored.
func (s *Server) recordInterrupted(ctx context.Context, meetingID string, ps []participant, now time.Time) (*meeting, error) {
	m, _, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		changed := false
		for _, q := range ps {
			p := m.participant(q.ID)
			if p == nil || p.Left != nil || p.Connected != nil {
				continue
			}
			t := now.UTC()
			p.Left, p.LeftReason = &t, api.ReasonJoinInterrupted
			changed = true
		}
		if !changed {
			return errNoChange
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		m, _, err = s.meetings.get(ctx, meetingID)
	}
	return m, err
}

// dropJoinTimeout bounds dropJoin, which runs after a failure, on a
// context of its own.
const dropJoinTimeout = 10 * time.Second

// dropJoin records gone, at once, a participant whose join failed after it
// may have been stored (cause is why), and gives back its seat. It is
// logged first, as at a start. Best effort: with the store unreachable
// nothing can be done now, and the next control plane to start does it
// (or, past its window, its first tick ends it "never connected").
func (s *Server) dropJoin(ctx context.Context, meetingID, pid string, cause error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), dropJoinTimeout)
	defer cancel()
	m, _, err := s.meetings.get(ctx, meetingID)
	if err != nil {
		s.log.Warn("join failed: its participant may be stored; the next start records it gone", "meeting", meetingID, "participant", pid, "cause", cause, "err", err)
		return
	}
	p := m.participant(pid)
	if p == nil || p.Left != nil || p.Connected != nil {
		return // not stored, or already gone
	}
	reason := fmt.Sprintf("%s: stored %s for node %s (%s); the join failed before its answer (%v), so no join token was issued: recorded gone",
		api.ReasonJoinInterrupted, p.Joined.UTC().Format(time.RFC3339Nano), p.Node.ID, p.Node.Country, cause)
	if _, err := s.audit.append(ctx, interruptedEntry(meetingID, pid, reason)); err != nil {
		// Recorded gone all the same: a participant left in the record
		// without a seat would count on its node (relays, reuse) until
		// the next start. The log then only lacks the drop; it claims
		// nothing that did not happen.
		s.log.Warn("audit interrupted join", "meeting", meetingID, "participant", pid, "err", err)
	}
	if _, err := s.recordInterrupted(ctx, meetingID, []participant{*p}, s.now()); err != nil {
		s.log.Warn("record interrupted join", "meeting", meetingID, "participant", pid, "err", err)
		return
	}
	_ = s.owner.release(ctx, pid)
	s.log.Info("join failed after it was stored: participant recorded gone", "meeting", meetingID, "participant", pid, "cause", cause)
}

// seatsHeld reports which of pids hold a seat on the owner: joins this
// process is carrying out, before the state of a previous run is loaded.
func (o *owner) seatsHeld(ctx context.Context, pids []string) (map[string]bool, error) {
	out := map[string]bool{}
	err := o.mbox.call(ctx, func() {
		for _, pid := range pids {
			if _, ok := o.seats[pid]; ok {
				out[pid] = true
			}
		}
	})
	return out, err
}
