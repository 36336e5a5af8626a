package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
)

// Leg is one connection of a call: a placement by the control plane and
// the session to the node it names.
type Leg struct {
	jr    JoinResult
	node  VerifiedNode
	fresh []hoststmt.Statement // host statements its join answer brought
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

// NodeCert is the node's certificate as the call verified it before
// connecting (against the enrollment key of the host-signed policy), and
// its text as the join answer carried it.
func (l *Leg) NodeCert() VerifiedNode { return l.node }

// HostStatements are the host statements the leg's join answer brought
// that were new to the call's HostView, oldest first: a user holding
// other legs applies them there too.
func (l *Leg) HostStatements() []hoststmt.Statement {
	return append([]hoststmt.Statement(nil), l.fresh...)
}

// MarkCarried tells the call that this leg has carried media, so a move to
// it may close the leg it replaces now. It may be called any number of
// times, from any goroutine.
func (l *Leg) MarkCarried() {
	l.carriedOnce.Do(func() { close(l.carried) })
}

// dial joins through the control plane, checks the node placed against
// the host-signed policy and connects to it. A move replaces the
// participant of leg from, proven by the rejoin secret its join answer
// handed out, and reports refused, the call's refusal of from's node, if
// set. A node the call refuses is reported in the next join, which
// replaces the refused placement, until MaxRefusals in a row: the error
// then wraps the last *RefusalError.
// maxFirstJoinLimited is how long a call's first join waits out 429s in
// all before it gives up.
const maxFirstJoinLimited = time.Minute

func (c *Call) dial(from *Leg, refused *RefusalError) (*Leg, error) {
	req := c.cfg.Join
	req.Replaces, req.RejoinSecret, req.Refused = "", "", nil
	if from != nil {
		req.Replaces, req.RejoinSecret = from.ID(), from.jr.RejoinSecret
	}
	// Host statements new to the view, from every answer of the loop: a
	// refused placement's answer may bring the newest.
	var fresh []hoststmt.Statement
	var limitedFor time.Duration
	for {
		if refused != nil {
			req.Refused = refused.refusal()
		}
		jr, err := Join(c.ctx, c.cfg.HTTPClient, c.cfg.Server, c.cfg.Meeting, req)
		var ae *APIError
		if from == nil && errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests && limitedFor < maxFirstJoinLimited {
			// The control plane takes the first join later (many joins
			// from one address at once): wait as it says, as a person
			// would, rather than give up. Moves and rejoins wait in
			// Call.rejoin, against their own deadline.
			pause := max(time.Duration(ae.RetryAfter)*time.Second, time.Second)
			limitedFor += pause
			t := time.NewTimer(pause)
			select {
			case <-t.C:
				continue
			case <-c.ctx.Done():
				t.Stop()
				return nil, c.ctx.Err()
			}
		}
		if err != nil {
			if refused != nil {
				// Not wrapped: the refusal is reported, the join's
				// error is what the caller acts on.
				return nil, fmt.Errorf("join after refusing node %s (%s): %w", refused.Node, refused.Code, err)
			}
			return nil, err
		}
		f, _ := c.cfg.Host.Join(jr.Host) // a key that does not match leaves no policy: refused below
		fresh = append(fresh, f...)
		vn, policy, r := c.check(jr)
		if r == nil {
			l, err := c.connect(jr, vn, policy)
			if err == nil {
				l.fresh = fresh
				c.audit.joined(jr, false)
				return l, nil
			}
			// A welcome the certified key did not sign is a refusal of
			// the node like any other; other failures are the caller's.
			if !errors.As(err, &r) {
				return nil, err
			}
		}
		// A refused placement is in the log too; the node it names is the
		// refusal's business (the next join reports it).
		c.audit.joined(jr, true)
		if c.refused(jr.Node, r) >= MaxRefusals {
			return nil, &GaveUpError{Refusals: c.Refusals(), Last: r}
		}
		// The next join replaces the refused placement, which never
		// connected.
		refused = r
		req.Replaces, req.RejoinSecret = jr.ParticipantID, jr.RejoinSecret
	}
}

// check runs the checks a node must pass before the call connects to it
// (CheckNode), against the newest policy the call's HostView verified.
func (c *Call) check(jr JoinResult) (VerifiedNode, *hoststmt.Statement, *RefusalError) {
	policy, perr := c.cfg.Host.Policy()
	if perr != nil {
		return VerifiedNode{}, nil, &RefusalError{Code: api.CodeNoHostPolicy, Node: jr.Node.ID, Message: perr.Error()}
	}
	vn, err := CheckNode(jr.Node, policy, time.Now())
	if err != nil {
		r, _ := AsRefusal(err)
		return VerifiedNode{}, nil, r
	}
	return vn, policy, nil
}

// connect opens the session to a checked node: the join message names the
// host key and policy the node was checked against, and every SDP of the
// node must be signed by the certified identity key.
func (c *Call) connect(jr JoinResult, vn VerifiedNode, policy *hoststmt.Statement) (*Leg, error) {
	opts := c.cfg.Options
	opts.HostKey = c.cfg.Host.Key()
	stmt, err := json.Marshal(policy)
	if err != nil {
		return nil, fmt.Errorf("host policy statement: %w", err)
	}
	opts.Statement, opts.NodeKey = stmt, vn.Cert.IdentityKey
	sess, err := Connect(c.ctx, jr, opts)
	if err != nil {
		return nil, fmt.Errorf("connect to node %s: %w", jr.Node.ID, err)
	}
	return &Leg{
		jr: jr, node: vn, sess: sess,
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
func (c *Call) startPump(l *Leg) {
	c.wg.Go(func() { c.pump(l) })
	c.wg.Go(func() {
		select {
		case <-l.sess.Proven():
			c.proven()
		case <-l.closing:
		case <-c.quit:
		}
	})
}

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
		case EventHost:
			ev.Statement, ev.Err = c.cfg.Host.Statement(ev.Payload)
			if r := c.stillAllowed(l, ev.Statement); r != nil {
				// No more media to a node the host's policy now rules
				// out, while the call waits for the node's move message
				// and makes the next leg: it receives, but sends nothing.
				l.sess.StopSending()
				c.log.Warn("sending stopped: the newer host policy rules out the node", "node", l.jr.Node.ID, "code", r.Code)
				c.tell(l, legNote{leg: l, refused: r})
			}
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

// stillAllowed checks a leg's node against a host statement the call just
// accepted: a newer host-signed policy that does not allow it is a
// refusal, and the call moves by itself, whatever the servers say.
func (c *Call) stillAllowed(l *Leg, s *hoststmt.Statement) *RefusalError {
	if s == nil || s.Kind != hoststmt.KindPolicy {
		return nil
	}
	if _, err := CheckNode(l.jr.Node, s, time.Now()); err != nil {
		r, _ := AsRefusal(err)
		return r
	}
	return nil
}
