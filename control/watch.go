package control

import (
	"context"
	"time"
)

// watchMeetings follows the meetings bucket until ctx ends: every change,
// whoever stored it (this process, another control plane, an operator's
// tool), updates the decoded copy and makes the meeting due for a plan if
// enforcement follows it. A watch that fails is started again; until it
// has caught up, plans read the store.
func (s *Server) watchMeetings(ctx context.Context) {
	for ctx.Err() == nil {
		s.watchOnce(ctx)
		s.meetings.setWatched(false)
		select {
		case <-ctx.Done():
		case <-time.After(s.cfg.Timing.HeartbeatInterval):
		}
	}
}

func (s *Server) watchOnce(ctx context.Context) {
	changes, err := s.cfg.Store.WatchMeetings(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.log.Warn("watch meetings", "err", err)
		}
		return
	}
	for c := range changes {
		if c.Current {
			s.meetings.setWatched(true)
			continue
		}
		active, err := s.meetings.observe(c)
		if err != nil {
			s.log.Warn("watch meetings: skipping unreadable meeting", "meeting", c.ID, "err", err)
			continue
		}
		if c.Deleted {
			continue
		}
		s.owner.changed(c.ID, active)
	}
	if ctx.Err() == nil {
		s.log.Warn("watch meetings stopped; starting it again")
	}
}
