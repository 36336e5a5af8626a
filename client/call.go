package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
)

// Defaults of CallConfig.
const (
	DefaultRejoinTimeout   = 30 * time.Second
	DefaultRejoinPause     = time.Second
	DefaultHandoverTimeout = 3 * time.Second
	DefaultPolicyMoveGrace = 2 * time.Second
)

// CallConfig describes a call: who joins which meeting where, and how the
// call behaves when it has to move.
type CallConfig struct {
	Server  string // the control plane's base URL
	Meeting string
	// Join says who joins; Replaces and RejoinSecret are the call's to
	// set.
	Join JoinRequest
	// Options configure every leg's session; Options.Logger is also the
	// call's logger.
	Options Options
	// HTTPClient talks to the control plane (default http.DefaultClient).
	HTTPClient *http.Client
	// RejoinTimeout is how long a move keeps retrying a join that fails
	// with a network error or a 5xx (after a node is lost, the control
	// plane needs a few seconds to notice), or a 429, asked again after
	// its Retry-After (default DefaultRejoinTimeout).
	RejoinTimeout time.Duration
	// RejoinPause is the pause between those attempts, or the 429's
	// Retry-After if longer (default DefaultRejoinPause).
	RejoinPause time.Duration
	// HandoverTimeout bounds how long the leg a move replaces stays open
	// while the new leg has not carried media (default
	// DefaultHandoverTimeout).
	HandoverTimeout time.Duration
	// PolicyMoveGrace is how long the call waits, after a newer host-signed
	// policy that does not allow its node, for the node's move message
	// before it moves by itself and reports the refusal: an honest control
	// plane moves it first, make before break, and the audit log keeps
	// refusals for the placements that broke the host's policy (default
	// DefaultPolicyMoveGrace).
	PolicyMoveGrace time.Duration
	// Host is the meeting's host key and statements as this participant
	// knows them, checked against the fingerprint of its link; the call
	// takes each join answer's host state and the host messages of its legs
	// into it, and checks every node against its newest policy statement.
	// nil is a view with no fingerprint: every node is refused
	// (api.CodeNoHostPolicy), as there is nothing to check it against.
	Host *HostView
	// OnLeg, if set, prepares each new leg before it becomes current and
	// before the leg it replaces closes: the place to set up keys and
	// publishers on the new session. An error fails the join or the move.
	OnLeg func(*Leg) (LegHooks, error)
	// Audit configures the call's watch of the transparency log (Audit):
	// it starts from the first join answer's checkpoint, and every join
	// answer's placement entry is checked to be in the log.
	Audit AuditOptions
}

// LegHooks are what the user of a call does with one leg.
type LegHooks struct {
	// Event receives each of the leg's events in order, on a goroutine of
	// the leg's own, so a slow leg does not hold up another. The call acts
	// on EventMove and EventClosed itself; Event sees them too.
	Event func(Event)
	// Closed runs once the leg's session has closed and Event will not be
	// called again.
	Closed func()
	// Neither hook may call Call.Close: Close waits for the goroutines
	// that run them. A hook that wants the call to end signals another
	// goroutine to close it.
}

// MaxRefusals is how many nodes in a row a call refuses before it gives
// up: a control plane that keeps placing it where it must not go gets no
// media, and the caller learns why.
const MaxRefusals = 3

// Refusal is one node the call refused (see RefusalError).
type Refusal struct {
	At      time.Time
	Node    NodeInfo
	Code    string
	Message string
}

// Move is one time a call moved to another node.
type Move struct {
	At       time.Time
	From, To NodeInfo
	// Reason is the node's reason for a move message (e.g.
	// "policy_change"), or "connection lost: " and the error.
	Reason string
}

// Call is one participant's presence in a meeting across nodes. It joins
// through the control plane and connects to the node it was placed on;
// when that node asks it to move, or the connection to it is lost, it joins
// again as the participant's replacement and connects to the new node
// (make before break: the old leg closes once the new one has carried
// media, or after HandoverTimeout). A removal by the node, a join refused
// with a 4xx other than 429 (asked again after its Retry-After), or a move
// not made within RejoinTimeout ends the call; its legs stay open until
// Close.
type Call struct {
	cfg CallConfig
	log *slog.Logger
	// ctx bounds joining: once it ends no new leg is made. Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	notes    chan legNote   // from the legs' event goroutines to run
	rejoined chan legResult // from the goroutine of a move to run
	quit     chan struct{}  // closed by Close
	done     chan struct{}  // closed when the call has ended
	wg       sync.WaitGroup // run, every leg's events, moves, handovers
	once     sync.Once      // Close
	endOnce  sync.Once      // done
	mu       sync.Mutex     // guards the view below, which run writes
	current  *Leg
	moves    []Move
	err      error
	refusals []Refusal
	// inARow counts refusals since a leg last proved its node.
	inARow int
	// audit holds the call's view of the transparency log; Close stops it.
	audit *AuditWatcher
}

type legNote struct {
	leg    *Leg
	move   string // the node's reason, for a move message
	closed error  // why the session ended, for EventClosed
	// refused: the call no longer accepts the leg's node (a newer host
	// policy does not allow it); graceOver once PolicyMoveGrace has passed
	// since.
	refused   *RefusalError
	graceOver bool
}

type legResult struct {
	leg    *Leg
	err    error
	reason string
}

// StartCall joins the meeting and connects to the node the control plane
// chose. ctx bounds the first join and every later one: once it ends the
// call makes no new legs, and a move under way gives up. The legs stay
// until Close, which must be called once the call is no longer needed. A
// refused join is returned as *APIError.
func StartCall(ctx context.Context, cfg CallConfig) (*Call, error) {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Options.Logger == nil {
		cfg.Options.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RejoinTimeout <= 0 {
		cfg.RejoinTimeout = DefaultRejoinTimeout
	}
	if cfg.RejoinPause <= 0 {
		cfg.RejoinPause = DefaultRejoinPause
	}
	if cfg.HandoverTimeout <= 0 {
		cfg.HandoverTimeout = DefaultHandoverTimeout
	}
	if cfg.PolicyMoveGrace <= 0 {
		cfg.PolicyMoveGrace = DefaultPolicyMoveGrace
	}
	if cfg.Host == nil {
		cfg.Host = NewHostView("")
	}
	c := &Call{
		cfg: cfg, log: cfg.Options.Logger,
		notes: make(chan legNote), rejoined: make(chan legResult),
		quit: make(chan struct{}), done: make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(ctx)
	if !cfg.Host.linked() {
		// Every node would be refused: say so before asking for any.
		c.cancel()
		_, err := cfg.Host.Policy()
		return nil, &RefusalError{Code: api.CodeNoHostPolicy, Message: err.Error()}
	}
	// The join secret reads the meeting's entries of the log.
	src := apiclient.New(cfg.Server, cfg.HTTPClient).WithBearer(cfg.Join.Secret)
	c.audit = newAuditWatcher(src, cfg.Meeting, cfg.Audit, c.log)
	first, err := c.dial(nil, nil)
	if err == nil {
		err = c.start(first)
	}
	if err != nil {
		c.cancel()
		c.audit.Close()
		return nil, err
	}
	c.current = first
	c.startPump(first)
	c.wg.Go(func() { c.run(first) })
	return c, nil
}

// Audit is the call's view of the transparency log.
func (c *Call) Audit() *AuditWatcher { return c.audit }

// Current is the leg the call is on: the newest one a move has completed.
func (c *Call) Current() *Leg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.current
}

// Moves are the moves the call made, oldest first.
func (c *Call) Moves() []Move {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Move(nil), c.moves...)
}

// Refusals are the nodes the call refused, oldest first.
func (c *Call) Refusals() []Refusal {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Refusal(nil), c.refusals...)
}

// refused records a refusal and says how many there were in a row.
func (c *Call) refused(node NodeInfo, r *RefusalError) int {
	c.log.Warn("node refused", "node", node.ID, "code", r.Code, "message", r.Message)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refusals = append(c.refusals, Refusal{At: time.Now().UTC(), Node: node, Code: r.Code, Message: r.Message})
	c.inARow++
	return c.inARow
}

// proven starts the count of refusals in a row again: a node proved it
// holds its certified key.
func (c *Call) proven() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inARow = 0
}

// Done is closed when the call has ended, by itself or by Close.
func (c *Call) Done() <-chan struct{} { return c.done }

// Err is why the call ended by itself: the node removed the participant
// (wrapping ErrRemoved), or a move failed (wrapping the join's error, e.g.
// an *APIError). It is nil while the call runs, and if Close ended it.
func (c *Call) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close leaves: it closes every leg, runs their Closed hooks and waits for
// every goroutine the call started.
func (c *Call) Close() error {
	c.once.Do(func() {
		c.cancel()
		close(c.quit)
	})
	c.wg.Wait()
	c.audit.Close()
	c.end(nil)
	return nil
}

// end marks the call ended, with err as its reason if it ended by itself.
func (c *Call) end(err error) {
	c.endOnce.Do(func() {
		c.mu.Lock()
		c.err = err
		c.mu.Unlock()
		close(c.done)
	})
}

// run owns which leg is current and whether a move is under way; legs
// report to it through notes, moves through rejoined.
func (c *Call) run(first *Leg) {
	cur, legs := first, []*Leg{first}
	pending, ended := false, false
	for {
		select {
		case <-c.quit:
			if pending {
				// The move gives up soon now that ctx is cancelled; a leg
				// it made just before is closed with the others.
				if res := <-c.rejoined; res.leg != nil {
					c.startPump(res.leg) // closeLeg waits for its events to end
					legs = append(legs, res.leg)
				}
			}
			for _, l := range legs {
				c.closeLeg(l)
			}
			return
		case n := <-c.notes:
			if n.leg != cur || pending || ended {
				continue // an old leg closing, or a move already under way
			}
			if n.refused != nil && !n.graceOver {
				// The node's move message may be on its way: give it
				// PolicyMoveGrace. A move meanwhile makes this leg old,
				// and the note at the end of the wait is dropped.
				l, r := n.leg, n.refused
				c.wg.Go(func() { c.graceThenRefuse(l, r) })
				continue
			}
			reason, refused, err := moveReason(n)
			if err != nil {
				ended = true
				c.end(err)
				continue
			}
			if reason == "" || c.ctx.Err() != nil {
				continue // nothing to do, or leaving anyway
			}
			if refused != nil {
				if c.refused(cur.jr.Node, refused) >= MaxRefusals {
					ended = true
					c.end(&GaveUpError{Refusals: c.Refusals(), Last: refused})
					continue
				}
			}
			pending = true
			from := cur
			c.wg.Go(func() {
				l, err := c.rejoin(from, refused)
				// run takes the result even when closing, to close l too.
				c.rejoined <- legResult{leg: l, err: err, reason: reason}
			})
		case res := <-c.rejoined:
			pending = false
			if res.err != nil {
				if c.ctx.Err() == nil { // not just the user leaving mid-move
					ended = true
					c.end(fmt.Errorf("move after %s: %w", res.reason, res.err))
				}
				continue
			}
			old := cur
			cur = res.leg
			legs = append(legs, cur)
			c.startPump(cur)
			c.mu.Lock()
			c.current = cur
			c.moves = append(c.moves, Move{At: time.Now().UTC(), From: old.jr.Node, To: cur.jr.Node, Reason: res.reason})
			c.mu.Unlock()
			next := cur
			c.wg.Go(func() { c.handover(old, next) })
		}
	}
}

// moveReason says what a note from the current leg asks for: a move (with
// its reason, and the refusal of the leg's node if that is why), nothing,
// or the end of the call.
func moveReason(n legNote) (string, *RefusalError, error) {
	if n.refused != nil {
		return n.refused.Code, n.refused, nil
	}
	if r, ok := AsRefusal(n.closed); ok {
		return r.Code, r, nil // the node failed its proof: the session is closed
	}
	switch {
	case n.move != "":
		return n.move, nil, nil
	case errors.Is(n.closed, ErrRemoved):
		return "", nil, fmt.Errorf("session ended: %w", n.closed)
	case n.closed != nil:
		return "connection lost: " + n.closed.Error(), nil, nil
	}
	return "", nil, nil
}

// graceThenRefuse tells run, once PolicyMoveGrace has passed, that the
// call refuses leg l's node.
func (c *Call) graceThenRefuse(l *Leg, r *RefusalError) {
	t := time.NewTimer(c.cfg.PolicyMoveGrace)
	defer t.Stop()
	select {
	case <-t.C:
		c.log.Info("no move after a host policy that does not allow the node; leaving it", "node", l.jr.Node.ID)
		c.tell(l, legNote{leg: l, refused: r, graceOver: true})
	case <-l.closing:
	case <-c.quit:
	}
}

// handover closes the leg a move replaced once the new one has carried
// media, or after HandoverTimeout at most: the old node is about to drop it
// anyway.
func (c *Call) handover(old, next *Leg) {
	t := time.NewTimer(c.cfg.HandoverTimeout)
	defer t.Stop()
	select {
	case <-next.carried:
	case <-t.C:
	case <-c.ctx.Done():
	}
	c.closeLeg(old)
}

// rejoin places the participant again, replacing the participant of leg
// from (whose node the call refused, if refused is set), retrying network
// errors, 5xx answers and 429s (after their Retry-After) until
// RejoinTimeout, and starts the new leg.
func (c *Call) rejoin(from *Leg, refused *RefusalError) (*Leg, error) {
	deadline := time.Now().Add(c.cfg.RejoinTimeout)
	for {
		l, err := c.dial(from, refused)
		if err == nil {
			if err := c.start(l); err != nil {
				return nil, err
			}
			return l, nil
		}
		var ae *APIError
		_, gaveUp := AsRefusal(err)
		limited := errors.As(err, &ae) && ae.Status == http.StatusTooManyRequests
		if gaveUp || ae != nil && ae.Status < 500 && !limited || !time.Now().Before(deadline) || c.ctx.Err() != nil {
			return nil, err
		}
		pause := c.cfg.RejoinPause
		if limited {
			// The control plane says when it takes the join: asking
			// sooner is refused again. Past the deadline, one last ask.
			pause = max(pause, time.Duration(ae.RetryAfter)*time.Second)
			pause = min(pause, time.Until(deadline))
		}
		c.log.Info("rejoin failed; retrying", "err", err, "in", pause)
		t := time.NewTimer(pause)
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil, c.ctx.Err()
		}
	}
}
