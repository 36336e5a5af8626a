// Package replica runs the control plane as one of several replicas on a
// NATS cluster. The replicas elect a leader through a lease in a JetStream
// KV bucket (cluster.BucketLeader); only the leader runs a control.Server,
// built fresh at each election, so all live state stays with one owner as
// in a single process. Every replica serves HTTP: the leader answers from
// its control.Server, the others forward each request to it over NATS
// (cluster.SubjectForward) and copy the answer back.
//
// # Concurrency
//
// Run's goroutine owns the lease machine (lease.go) and alone starts and
// stops leadership. Each leadership runs on a goroutine of its own (the
// control.Server's Run) with a subscription to forwarded requests whose
// handlers run on goroutines bounded by maxForwarded. Replica.mu guards
// only what the HTTP side reads (the status, the current Server and its
// handler, the channel closed at each change) and is never held across
// I/O. leadership.mu guards the forward subscription while it is made or
// undone; lock order: leadership.mu, then Replica.mu.
package replica

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/control"
)

// Config configures a replica.
type Config struct {
	// ID names the replica in the lease and in answers; it must stay the
	// same across restarts, so that a restarted leader takes its lease
	// back at once.
	ID   string
	NATS *nats.Conn
	// Key is the control plane's signing key, the same in every replica:
	// it signs the lease's forwarding key and each forwarded request, and
	// its public half checks them.
	Key ed25519.PrivateKey
	// ReplayWindow is how far from the leader's clock a forwarded
	// request's issue time may be; the leader remembers the requests it
	// took for that long. Default 30 s.
	ReplayWindow time.Duration
	// Replicas is the JetStream replica count of the lease bucket; 0 = 1.
	Replicas int
	// New builds the control plane at each election, on the leadership's
	// context.
	New func(ctx context.Context) (*control.Server, error)
	// Fatal says whether an error of a control plane that could not start
	// (or stopped on its own) is one no retry can cure; Run then ends with
	// it. Any other such error makes the replica step down, give up its
	// lease and stay in the election, taking the lease again only after a
	// back-off (RetryBackoff, doubling up to 8 lease TTLs): a store still
	// electing its own leaders after a NATS server died is no reason to
	// end the process. nil: every error is retried.
	Fatal func(error) bool
	// RetryBackoff is the first pause after a control plane failed;
	// default half the lease TTL.
	RetryBackoff time.Duration
	// LeaseTTL is how long a lease not renewed stays the holder's; default
	// 2 s.
	LeaseTTL time.Duration
	// ForwardWait is how long a forwarded request waits for a leader;
	// default 8 s.
	ForwardWait time.Duration
	// KeepAlive is how often the leader says it is still working on a
	// request it has not answered; default 1 s. ForwardTimeout is how long
	// a forwarding replica waits for the leader's next word; default 3
	// keep-alives.
	KeepAlive, ForwardTimeout time.Duration
	// Settle is how long the leader's control plane, once its state is
	// loaded, waits before it takes requests: long enough for every live
	// node's heartbeat to reach it, so no join is refused for want of a
	// node it has not heard yet.
	Settle time.Duration
	Logger *slog.Logger
	// Now is the clock of the lease; it must be monotonic (time.Now is).
	Now func() time.Time
}

// Status is what a replica knows of the leadership.
type Status struct {
	ID       string `json:"id"`
	Leader   string `json:"leader"` // "" while none is known
	Term     uint64 `json:"term"`
	IsLeader bool   `json:"is_leader"`
}

// Replica is one control-plane replica. Build it with New, serve Handler
// and call Run.
type Replica struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu      sync.Mutex
	status  Status
	srv     *control.Server
	handler http.Handler
	target  target        // where a forwarded request is sealed to
	changed chan struct{} // closed (and replaced) when status, srv or target changes

	// publish sends a part of a forwarded answer; tests make it misbehave.
	publish func(subject string, data []byte) error

	// handlerOf is the HTTP handler of a control plane; tests wrap it.
	handlerOf func(*control.Server) http.Handler
	// onRole, when set, hears each change of role at once (tests).
	onRole func(leader bool, term uint64)
	// abandon makes Run end without stepping down cleanly or deleting its
	// lease, as a killed process would (tests).
	abandon bool
}

// New checks cfg and builds a replica; Run starts it.
func New(cfg Config) (*Replica, error) {
	if cfg.ID == "" || !validID(cfg.ID) {
		return nil, fmt.Errorf("replica: id %q: 1 to 64 letters, digits, '-' or '_'", cfg.ID)
	}
	if cfg.NATS == nil || cfg.New == nil {
		return nil, errors.New("replica: NATS and New are required")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("replica: the control plane's Ed25519 key is required")
	}
	if cfg.ReplayWindow <= 0 {
		cfg.ReplayWindow = 30 * time.Second
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 2 * time.Second
	}
	if cfg.LeaseTTL < 20*time.Millisecond {
		return nil, fmt.Errorf("replica: lease TTL %s is too short", cfg.LeaseTTL)
	}
	if cfg.ForwardWait == 0 {
		cfg.ForwardWait = 8 * time.Second
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = cfg.LeaseTTL / 2
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = time.Second
	}
	if cfg.ForwardTimeout == 0 {
		cfg.ForwardTimeout = 3 * cfg.KeepAlive
	}
	if cfg.ForwardTimeout <= cfg.KeepAlive {
		return nil, fmt.Errorf("replica: forward timeout %s must be longer than the keep-alive %s", cfg.ForwardTimeout, cfg.KeepAlive)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Replica{cfg: cfg, log: cfg.Logger.With("replica", cfg.ID), metrics: newMetrics(),
		status: Status{ID: cfg.ID}, changed: make(chan struct{}),
		handlerOf: (*control.Server).Handler, publish: cfg.NATS.Publish}, nil
}

func validID(id string) bool {
	if len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Status is the replica's view of the leadership now.
func (r *Replica) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// Server is the control plane this replica runs while it leads and has
// started it; nil otherwise.
func (r *Replica) Server() *control.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

// local is the handler of our own control plane, and a channel closed at
// the next change of leadership.
func (r *Replica) local() (http.Handler, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handler, r.changed
}

// forwardTo is local's and where a forwarded request is sealed to.
func (r *Replica) forwardTo() (http.Handler, target, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.handler, r.target, r.changed
}

// observeTarget takes in where forwarded requests go from a watched entry
// of the lease.
func (r *Replica) observeTarget(e jetstream.KeyValueEntry) {
	if e == nil {
		return
	}
	var t target
	var l cluster.Lease
	if e.Operation() == jetstream.KeyValuePut && json.Unmarshal(e.Value(), &l) == nil && !l.Released {
		t = leaseTarget(r.cfg.Key.Public().(ed25519.PublicKey), l)
	}
	r.mu.Lock()
	same := r.target.same(t)
	r.mu.Unlock()
	if !same {
		if t.err != nil {
			r.log.Warn("not forwarding to the lease in force", "err", t.err)
		}
		r.update(func() { r.target = t })
	}
}

// update changes what the HTTP side sees and wakes those waiting for it.
func (r *Replica) update(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f()
	close(r.changed)
	r.changed = make(chan struct{})
}

// Handler serves the API and web app: from our own control plane while we
// lead, forwarded to the leader otherwise. GET /metrics is the replica's
// own.
func (r *Replica) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set(HeaderReplica, r.cfg.ID)
		if req.Method == http.MethodGet && req.URL.Path == "/metrics" {
			r.serveMetrics(w, req)
			return
		}
		if req.Method == http.MethodGet && req.URL.Path == api.PathHealth {
			r.serveHealth(w, req)
			return
		}
		r.serve(w, req)
	})
}

// serve answers req from our control plane, or forwards it.
func (r *Replica) serve(w http.ResponseWriter, req *http.Request) {
	if h, _ := r.local(); h != nil {
		w.Header().Set(HeaderLeader, r.cfg.ID)
		h.ServeHTTP(w, req)
		return
	}
	r.forward(w, req)
}

// serveHealth is the control plane's /healthz with the replica that
// answered and the leader. The answer is taken whole before anything is
// written: a leader's answer cut short after its status (silent, or its
// handler aborting) is a 503 here, never the status it began with.
func (r *Replica) serveHealth(w http.ResponseWriter, req *http.Request) {
	rec := httptest.NewRecorder()
	rec.Header().Set(HeaderReplica, r.cfg.ID)
	if !serveWhole(r.serve, rec, req) {
		r.metrics.failed.WithLabelValues("health_cut").Inc()
		w.Header().Set("Retry-After", "1")
		writeError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, msgSilent))
		return
	}
	maps.Copy(w.Header(), rec.Header())
	body := rec.Body.Bytes()
	var h api.Health
	if rec.Code == http.StatusOK && json.Unmarshal(body, &h) == nil && h.Status != "" {
		h.Replica, h.Leader = r.cfg.ID, rec.Header().Get(HeaderLeader)
		if b, err := json.Marshal(h); err == nil {
			body = append(b, '\n')
			w.Header().Del("Content-Length")
		}
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(body)
}

// serveWhole runs serve on w and says whether it ended without cutting
// its answer short (http.ErrAbortHandler).
func serveWhole(serve func(http.ResponseWriter, *http.Request), w http.ResponseWriter, req *http.Request) (whole bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			whole = false
		}
	}()
	serve(w, req)
	return true
}

// serveMetrics answers GET /metrics: the replica's own metrics, after
// the control plane's while it leads.
func (r *Replica) serveMetrics(w http.ResponseWriter, req *http.Request) {
	h, _ := r.local()
	if h == nil {
		r.metrics.handler.ServeHTTP(w, req)
		return
	}
	text := func(h http.Handler) []byte {
		rq := req.Clone(req.Context())
		rq.Header.Set("Accept", "text/plain")
		rq.Header.Del("Accept-Encoding")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, rq)
		return rec.Body.Bytes()
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	_, _ = w.Write(text(h))
	_, _ = w.Write(text(r.metrics.handler))
}

// Answer headers: the replica that answered, and the leader whose control
// plane did.
const (
	HeaderReplica = "Oakmeet-Replica"
	HeaderLeader  = "Oakmeet-Leader"
)

// Run takes part in the election until ctx ends, leading when it holds
// the lease. At the end it steps down and releases its lease, so another
// replica takes over at once. A control plane that cannot start (or stops
// on its own) while we lead makes us step down the same way, at once (a
// replica that cannot lead must not hold the lease), and stand again
// after a back-off; only an error cfg.Fatal names ends Run.
func (r *Replica) Run(ctx context.Context) error {
	js, err := jetstream.New(r.cfg.NATS)
	if err != nil {
		return fmt.Errorf("replica: %w", err)
	}
	kv, err := openLeaderBucket(ctx, js, r.cfg.Replicas)
	if err != nil {
		return err
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	w, err := kv.Watch(watchCtx, cluster.LeaderKey)
	if err != nil {
		return fmt.Errorf("replica: watch the lease: %w", err)
	}
	defer func() { _ = w.Stop() }()

	m := newMachine(r.cfg.ID, r.cfg.LeaseTTL)
	var lead *leadership
	var tk *termKey // the forwarding key of the term we lead or stand for
	backoff := r.cfg.RetryBackoff
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := r.cfg.Now()
		o, wake := m.next(now)
		if o.kind != opNone {
			if tk == nil || tk.term != o.lease.Term {
				if tk, err = newTermKey(o.lease.Term); err != nil {
					return err
				}
			}
			o.lease = signLease(r.cfg.Key, o.lease, tk)
			rev, res := r.write(ctx, kv, m, o)
			m.result(o, now, res, rev, r.cfg.Now())
			if res != written {
				r.log.Debug("lease write failed", "op", o.kind, "outcome", res)
			}
			continue
		}
		lead = r.setRole(ctx, m, now, lead, tk)
		timer.Reset(untilOrIdle(wake, now))
		var failed chan error
		if lead != nil {
			failed = lead.failed
		}
		select {
		case err := <-failed:
			if r.cfg.Fatal != nil && r.cfg.Fatal(err) {
				r.log.Error("stepping down for good", "err", err)
				r.shutdown(kv, m, lead)
				return err
			}
			if lead.wasReady() {
				backoff = r.cfg.RetryBackoff // it did serve: a new failure
			}
			r.log.Error("stepping down; standing again after a pause", "err", err, "pause", backoff)
			r.stepDown(kv, m, lead)
			lead = nil
			m.holdOff(r.cfg.Now().Add(backoff))
			backoff = min(2*backoff, 8*r.cfg.LeaseTTL)
		case <-ctx.Done():
			r.shutdown(kv, m, lead)
			return nil
		case e, ok := <-w.Updates():
			if !ok {
				r.shutdown(kv, m, lead)
				return errors.New("replica: the lease watch ended (NATS connection closed)")
			}
			observeEntry(m, e, r.cfg.Now())
			r.observeTarget(e)
		case <-timer.C:
		}
	}
}

func untilOrIdle(wake, now time.Time) time.Duration {
	if wake.IsZero() {
		return time.Hour
	}
	return max(wake.Sub(now), 0)
}

// observeEntry hands a watched entry to the machine; nil marks the end of
// the initial values, which for an absent key is the only news.
func observeEntry(m *machine, e jetstream.KeyValueEntry, now time.Time) {
	if e == nil {
		if !m.known {
			m.observe(false, 0, cluster.Lease{}, now)
		}
		return
	}
	if e.Operation() != jetstream.KeyValuePut {
		m.observe(false, e.Revision(), cluster.Lease{}, now)
		return
	}
	var l cluster.Lease
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		// A value no replica wrote: treat it as a lease of nobody's, to
		// be taken over once it has stood for a TTL.
		l = cluster.Lease{Replica: "", Term: 0}
	}
	m.observe(true, e.Revision(), l, now)
}

func openLeaderBucket(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, cluster.BucketLeader)
	if err == nil {
		return kv, nil
	}
	kv, err = js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.BucketLeader, History: 1,
		Replicas: replicas, Description: "oakmeet control-plane leader's lease"})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, cluster.BucketLeader)
	}
	if err != nil {
		return nil, fmt.Errorf("replica: lease bucket: %w", err)
	}
	return kv, nil
}

// write makes the machine's write, bounded so a renewal never outlasts our
// deadline.
func (r *Replica) write(ctx context.Context, kv jetstream.KeyValue, m *machine, o op) (uint64, outcome) {
	limit := r.cfg.LeaseTTL / 4
	if o.kind == opRenew {
		limit = min(limit, m.deadline().Sub(r.cfg.Now()))
	}
	wctx, cancel := context.WithTimeout(ctx, max(limit, time.Millisecond))
	defer cancel()
	data, _ := json.Marshal(o.lease) // a Lease always encodes
	var rev uint64
	var err error
	if o.kind == opCreate {
		rev, err = kv.Create(wctx, cluster.LeaderKey, data)
	} else {
		rev, err = kv.Update(wctx, cluster.LeaderKey, data, o.rev)
	}
	switch {
	case err == nil:
		return rev, written
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return 0, conflict
	default:
		return 0, unreachable
	}
}

// setRole starts or stops leadership as the machine says, and publishes
// the status.
func (r *Replica) setRole(ctx context.Context, m *machine, now time.Time, lead *leadership, tk *termKey) *leadership {
	leader := m.leader(now)
	st := Status{ID: r.cfg.ID, Leader: m.holder(now), Term: m.lease.Term, IsLeader: leader}
	if leader {
		st.Term = m.term
	}
	switch {
	case leader && lead == nil:
		r.log.Info("leading the control plane", "term", m.term)
		if r.onRole != nil {
			r.onRole(true, m.term)
		}
		lead = r.startLeading(ctx, m.term, tk)
	case !leader && lead != nil:
		r.log.Info("no longer leading the control plane", "term", lead.term, "leader", st.Leader)
		lead.stop()
		if r.onRole != nil {
			r.onRole(false, lead.term)
		}
		lead = nil
	}
	if r.Status() != st {
		r.update(func() { r.status = st })
		r.metrics.setRole(st)
	}
	return lead
}

// shutdown steps down and releases our lease.
func (r *Replica) shutdown(kv jetstream.KeyValue, m *machine, lead *leadership) {
	defer r.update(func() { r.status = Status{ID: r.cfg.ID} })
	r.stepDown(kv, m, lead)
}

// stepDown ends our leadership and marks our lease released at its
// revision, so another replica takes over at once.
func (r *Replica) stepDown(kv jetstream.KeyValue, m *machine, lead *leadership) {
	if lead != nil {
		lead.stop()
		if !r.abandon {
			lead.wait()
		}
		if r.onRole != nil {
			r.onRole(false, lead.term)
		}
	}
	if r.abandon {
		return
	}
	if o, ok := m.release(r.cfg.Now()); ok {
		ctx, cancel := context.WithTimeout(context.Background(), r.cfg.LeaseTTL)
		defer cancel()
		data, _ := json.Marshal(o.lease) // a Lease always encodes
		if _, err := kv.Update(ctx, cluster.LeaderKey, data, o.rev); err != nil {
			r.log.Warn("could not release the lease; another replica takes over when it expires", "err", err)
		}
	}
}

// leadership is one term of ours: the control plane and the subscription
// to forwarded requests.
type leadership struct {
	term   uint64
	cancel context.CancelFunc
	done   chan struct{}
	// failed says why the control plane could not start or stopped on
	// its own; the replica then steps down and Run returns it.
	failed chan error
	r      *Replica
	ready  chan struct{} // closed once it takes requests
	key    *termKey      // the term's forwarding key, in our lease

	mu  sync.Mutex // guards sub against stop racing the start
	sub *nats.Subscription
}

func (r *Replica) startLeading(ctx context.Context, term uint64, tk *termKey) *leadership {
	lctx, cancel := context.WithCancel(ctx)
	l := &leadership{term: term, cancel: cancel, done: make(chan struct{}), failed: make(chan error, 1), r: r,
		ready: make(chan struct{}), key: tk}
	go func() {
		defer close(l.done)
		r.lead(lctx, l)
	}()
	return l
}

// stop ends the leadership at once: no forwarded request reaches it and
// our own requests are forwarded from now on; what runs finishes on a
// cancelled context.
func (l *leadership) stop() {
	l.cancel()
	l.mu.Lock()
	if l.sub != nil {
		_ = l.sub.Unsubscribe()
		l.sub = nil
	}
	l.mu.Unlock()
	l.r.update(func() {
		if l.r.srv != nil {
			l.r.srv, l.r.handler = nil, nil
		}
	})
}

func (l *leadership) wait() { <-l.done }

// wasReady says whether the leadership got as far as taking requests.
func (l *leadership) wasReady() bool {
	select {
	case <-l.ready:
		return true
	default:
		return false
	}
}

// lead builds the control plane, runs it, and once it is ready takes
// requests: our own and forwarded ones.
func (r *Replica) lead(ctx context.Context, l *leadership) {
	began := time.Now()
	srv, err := r.cfg.New(ctx)
	if err != nil {
		if ctx.Err() == nil {
			l.failed <- fmt.Errorf("replica: could not start the control plane: %w", err)
		}
		return
	}
	h := r.handlerOf(srv)
	runDone := make(chan error, 1)
	go func() { runDone <- srv.Run(ctx) }()
	ready := waitReady(ctx, h, runDone)
	if ready && r.cfg.Settle > 0 {
		select {
		case <-ctx.Done():
			ready = false
		case <-time.After(r.cfg.Settle):
		}
	}
	if ready {
		r.log.Info("control plane ready; taking requests", "term", l.term, "start", time.Since(began).Round(time.Millisecond))
		l.mu.Lock()
		if ctx.Err() == nil {
			var sub *nats.Subscription
			var err error
			if l.key == nil || l.key.term != l.term {
				// Cannot be: every lease we write names the key of its term.
				err = fmt.Errorf("no forwarding key of term %d", l.term)
			} else {
				op := newOpener(r.cfg.ID, l.key, r.cfg.Key.Public().(ed25519.PublicKey), r.cfg.ReplayWindow, time.Now)
				sub, err = r.cfg.NATS.QueueSubscribe(cluster.SubjectForward, "leader", r.serveForwarded(ctx, h, op))
			}
			if err != nil {
				r.log.Error("cannot take forwarded requests", "err", err)
			}
			if sub != nil {
				_ = sub.SetPendingLimits(-1, -1)
			}
			l.sub = sub
			r.update(func() { r.srv, r.handler = srv, h })
			close(l.ready)
		}
		l.mu.Unlock()
	}
	if err := <-runDone; err != nil && ctx.Err() == nil {
		l.failed <- fmt.Errorf("replica: control plane stopped: %w", err)
	}
}

// waitReady polls the control plane's /healthz until it answers 200 (its
// state is loaded), Run ends or ctx does.
func waitReady(ctx context.Context, h http.Handler, runDone chan error) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		rec := httptest.NewRecorder()
		req := httptest.NewRequestWithContext(ctx, http.MethodGet, api.PathHealth, nil)
		h.ServeHTTP(rec, req)
		if rec.Code == http.StatusOK {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case err := <-runDone:
			runDone <- err // for the caller, which reads why it ended
			return false
		case <-t.C:
		}
	}
}
