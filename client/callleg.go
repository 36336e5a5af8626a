package client

import (
	"fmt"
	"sync"
)

// Leg is one connection of a call: a placement by the control plane and
// the session to the node it names.
type Leg struct {
	jr    JoinResult
	sess  *Session
	hooks LegHooks

	carried     chan struct{} // closed by MarkCarried
	carriedOnce sync.Once
	closing     chan struct{} // closed when the call starts closing the leg
	pumped      chan struct{} // closed when the leg's events have all been handled
	closeOnce   sync.Once
}

// Session is the leg's connection to its node.
func (l *Leg) Session() *Session { return l.sess }

// Join is the control plane's answer that placed this leg.
func (l *Leg) Join() JoinResult { return l.jr }

// ID is the leg's participant id.
func (l *Leg) ID() string { return l.jr.ParticipantID }

// Node is the node the leg is on.
func (l *Leg) Node() NodeInfo { return l.jr.Node }

// MarkCarried tells the call that this leg has carried media, so a move to
// it may close the leg it replaces now. It may be called any number of
// times, from any goroutine.
func (l *Leg) MarkCarried() {
	l.carriedOnce.Do(func() { close(l.carried) })
}

// dial joins through the control plane and connects to the node placed.
func (c *Call) dial(replaces string) (*Leg, error) {
	req := c.cfg.Join
	req.Replaces = replaces
	jr, err := Join(c.ctx, c.cfg.HTTPClient, c.cfg.Server, c.cfg.Meeting, req)
	if err != nil {
		return nil, err
	}
	sess, err := Connect(c.ctx, jr, c.cfg.Options)
	if err != nil {
		return nil, fmt.Errorf("connect to node %s: %w", jr.Node.ID, err)
	}
	return &Leg{
		jr: jr, sess: sess,
		carried: make(chan struct{}), closing: make(chan struct{}), pumped: make(chan struct{}),
	}, nil
}

// start lets the user prepare a dialled leg. On error the leg's session
// is closed. Its events are handed over only once run has made it current
// (startPump): a note from a leg run does not know yet would be dropped,
// and the call left on a leg whose node died while it was being prepared.
func (c *Call) start(l *Leg) error {
	if c.cfg.OnLeg != nil {
		hooks, err := c.cfg.OnLeg(l)
		if err != nil {
			_ = l.sess.Close()
			return err
		}
		l.hooks = hooks
	}
	return nil
}

// startPump starts handing a current leg's events over; the session keeps
// those that came before.
func (c *Call) startPump(l *Leg) { c.wg.Go(func() { c.pump(l) }) }

// pump hands a leg's events to the user and tells run about those it acts
// on, until the session's events end with its Close.
func (c *Call) pump(l *Leg) {
	defer close(l.pumped)
	for ev := range l.sess.Events() {
		switch ev.Type {
		case EventMove:
			c.log.Info("node asks to move", "node", l.jr.Node.ID, "reason", ev.Text)
			c.tell(l, legNote{leg: l, move: ev.Text})
		case EventClosed:
			c.tell(l, legNote{leg: l, closed: ev.Err})
		}
		if l.hooks.Event != nil {
			l.hooks.Event(ev)
		}
	}
}

func (c *Call) tell(l *Leg, n legNote) {
	select {
	case c.notes <- n:
	case <-l.closing:
	case <-c.quit:
	}
}

// closeLeg closes a leg's session and, once its events are handled, runs
// its Closed hook. Callers racing to close one leg all return after it.
func (c *Call) closeLeg(l *Leg) {
	l.closeOnce.Do(func() {
		close(l.closing)
		_ = l.sess.Close()
		<-l.pumped
		if l.hooks.Closed != nil {
			l.hooks.Closed()
		}
	})
}
