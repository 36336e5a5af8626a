package control

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/token"
)

// relayTokenTTL bounds a relay token; links are ordered again well within
// it (RelayResend).
const relayTokenTTL = time.Minute

// enforce plans one meeting, read at revision rev, and waits until the
// plan is carried out.
func (s *Server) enforce(ctx context.Context, m *meeting, rev uint64, opts planOpts) (planned, error) {
	eff, err := policy.Combine(s.floor, m.Policy)
	if err != nil {
		s.log.Error("enforce: policy", "meeting", m.ID, "err", err)
		return planned{}, err
	}
	p, err := s.owner.plan(ctx, m, rev, eff, s.now(), opts)
	if err != nil {
		return planned{}, err
	}
	s.exec.wait(ctx, p.done)
	return p, nil
}

// housekeep is the periodic work on live state alone: silent nodes,
// stale seats, certificates and the safety sweep's next step. It reads no
// meeting; what it makes due is planned by planLoop.
func (s *Server) housekeep(ctx context.Context) {
	_, _, _, _ = s.owner.tick(ctx, s.now())
}

// planLoop plans the meetings that are due (due.go) until ctx ends: when
// the owner says something became due, and when the earliest deadline
// comes.
func (s *Server) planLoop(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		next, err := s.planDue(ctx)
		if err != nil {
			return
		}
		wait := time.Hour
		if !next.IsZero() {
			wait = max(next.Sub(s.now()), 0)
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-s.owner.sched.wake:
		case <-timer.C:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// planDue plans every meeting due now, reading each from the decoded
// copy the watch keeps current, and returns when the next deadline is. It
// waits for what it decided to be carried out, so plans never pile up
// behind a slow store.
func (s *Server) planDue(ctx context.Context) (time.Time, error) {
	ids, next, err := s.owner.due(ctx, s.now())
	if err != nil {
		return time.Time{}, err
	}
	// Meetings the cache does not hold are read a few at a time: one round
	// trip after another made a round of many meetings as slow as their
	// sum. The owner orders the plans and the executor their actions, so
	// reading in parallel changes no outcome.
	sem := make(chan struct{}, planReaders)
	var wg sync.WaitGroup
	for _, id := range ids {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			m, rev, err := s.meetings.forPlan(ctx, id)
			if err != nil {
				return
			}
			_, _ = s.enforce(ctx, m, rev, planOpts{})
		})
	}
	wg.Wait()
	return next, nil
}

// planReaders is how many meetings planDue reads and plans at once.
const planReaders = 8

// carryOut does what a plan decided, each action once, in order. It
// stops at the first action it finds ctx ended before: a control plane
// that lost its lease (ctx ends with it), however long it was frozen,
// sends no kick, move or relay token after.
func (s *Server) carryOut(ctx context.Context, acts []action) {
	for _, a := range acts {
		if ctx.Err() != nil {
			return
		}
		if a.Note != "" {
			lvl := s.log.Info
			if a.Warn {
				lvl = s.log.Warn
			}
			lvl(a.Note, "meeting", a.Meeting, "node", a.Node, "participant", a.Cmd.Participant, "peer", a.Cmd.Peer, "reason", a.Cmd.Reason)
		}
		switch a.Kind {
		case actCommand:
			s.command(ctx, a.Node, a.Cmd)
		case actRelay:
			s.orderRelay(ctx, a.Meeting, a.Relay)
		case actLeave:
			_ = s.participantLeft(ctx, a.Meeting, a.Left) // logged; the next plan decides again
		case actAudit:
			if _, err := s.audit.append(ctx, a.Entry); err != nil {
				s.log.Error("audit", "kind", a.Entry.Kind, "meeting", a.Entry.Meeting, "err", err)
				if a.Failed != nil {
					*a.Failed = err
				}
			}
		case actMigration:
			s.metrics.migrations.WithLabelValues(a.Reason).Inc()
		case actTraffic:
			s.recordTraffic(ctx, a.Meeting, a.Traffic, s.now())
		}
	}
}

// command sends c to node, unless ctx has ended.
func (s *Server) command(ctx context.Context, node string, c cluster.Command) {
	if ctx.Err() != nil {
		return
	}
	data, err := json.Marshal(c)
	if err != nil {
		return
	}
	if err := s.cfg.NATS.Publish(cluster.SubjectCommand(node), data); err != nil {
		s.log.Warn("send node command", "node", node, "kind", c.Kind, "err", err)
	}
}

// orderRelay asks r.From to open (or keep) a relay link to r.To, with a
// token that vouches for both ends, unless ctx has ended.
func (s *Server) orderRelay(ctx context.Context, meetingID string, r relayOrder) {
	if ctx.Err() != nil {
		return
	}
	now := s.now()
	a, b := r.From, r.To
	tok, err := token.SignRelay(s.cfg.Key, token.RelayClaims{
		Meeting: meetingID,
		From:    token.RelayNode{ID: a.ID, Country: a.Country, Region: a.Region, IdentityKey: a.IdentityKey},
		To:      token.RelayNode{ID: b.ID, Country: b.Country, Region: b.Region, IdentityKey: b.IdentityKey},
		Policy:  r.Policy.Policy(), IssuedAt: now.UTC(), Expires: now.Add(relayTokenTTL).UTC(),
	})
	if err != nil {
		s.log.Warn("relay token", "meeting", meetingID, "a", a.ID, "b", b.ID, "err", err)
		return
	}
	s.command(ctx, a.ID, cluster.Command{Kind: cluster.CommandRelay, Meeting: meetingID, Peer: b.ID, PeerURL: b.URL, Token: tok})
}

// participantLeft ends a participant's presence on a node in the store,
// unless it has already left or moved elsewhere. It returns the store's
// error when the departure could not be recorded.
func (s *Server) participantLeft(ctx context.Context, meetingID string, l leave) error {
	_, _, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		p := m.participant(l.Participant)
		if p == nil || p.Left != nil || p.Node.ID != l.Node || l.Unconnected && p.Connected != nil {
			return errNoChange
		}
		t := l.At.UTC()
		p.Left, p.LeftReason = &t, l.Reason
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		s.log.Warn("record departure", "meeting", meetingID, "participant", l.Participant, "err", err)
		_ = s.owner.leaveFailed(ctx, meetingID, l.Participant)
		return err
	}
	// Recorded: a retry would change nothing more, so the owner's answer
	// (only ever the end of ctx) is not the caller's concern.
	_ = s.owner.left(ctx, l.Node)
	s.log.Info("participant left", "meeting", meetingID, "participant", l.Participant, "node", l.Node, "reason", l.Reason)
	return nil
}
