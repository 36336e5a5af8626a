// Package control is oakmeet's control plane: the HTTP API for meetings and
// their routing policies, placement of participants on media nodes, join
// tokens, node health from heartbeats, enforcement of each meeting's policy
// on its live participants and relay links, and the audit log of every
// routing decision.
//
// # Concurrency
//
// Live state (nodes, seats, pending moves and relay links, active meetings)
// belongs to one goroutine, the owner (owner.go), fed by a mailbox; it does
// no I/O. Enforcement is decided by a pure plan (plan.go) on the owner, which
// hands the plan's actions, in the same step, to the executor (executor.go):
// one goroutine that carries batches out in the order they were decided,
// on the control plane's context, never a request's. A meeting is planned
// when something it depends on changed (due.go): its record (a watch on
// the meetings bucket, watch.go, which also keeps the decoded meetings
// current so plans need no store round trip), a node it uses, its own next
// deadline; a slow safety sweep plans every active meeting besides. Node
// events come through a JetStream stream with one durable consumer
// (events.go), so none is lost while no control plane runs. The audit log has its
// own goroutine that alone appends, and signs its checkpoints
// (auditlog.go); proofs and reads of entries go to its Merkle tree, its
// index and the stream without waiting for it. The API reads
// nodes and pending moves from a view the owner publishes. Work a request
// starts that must not be left half done (a join once its seat is taken, a
// policy change once stored) runs on a context detached from the request
// (opContext), so a client that hangs up cannot leak a seat or skip an
// audit entry.
//
// Host actions (host.go: settings, removal, lobby decisions; a policy
// change) store the host's verified statement in the meeting's update, then
// hand what it asks for (the statement to each node, a kick, the audit
// entry) to the executor through the owner, like a plan's actions, and wait
// for them. A join held in the lobby (lobby.go) waits outside every lock,
// on a channel the owner closes when the meeting's lobby may have changed.
//
// Lock order. One lock remains: each meeting's update lock (meetings.go),
// held across the store's compare-and-set round trip. While holding it the
// join path calls the owner (reserve, release), which takes no lock and
// never waits for anything, so it cannot close a cycle. Nothing else is
// taken while it is held: audit appends, NATS commands, lobby waits and
// wake-ups, host actions' hand-over and other meetings' updates all happen
// outside it, and no code holds two meetings' locks.
// meetings.mu only guards the map of those locks and the decoded
// meetings (never held across a store round trip), owner.reportsMu only
// the heartbeats waiting for the owner, auditor.mu only the audit
// log's index (the tree's own lock is taken outside it), and each rate
// limit's buckets.mu only its table of addresses (limits.go); none is held
// with any other lock or across I/O. The mailboxes' own channels are not locks anyone holds.
package control

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/token"
	"github.com/oakmeet/oakmeet/web"
)

// Locator finds where a joining client is.
type Locator interface {
	Locate(r *http.Request, hint locate.Hint) (locate.Result, error)
}

// Config wires the control plane to its parts.
type Config struct {
	Store   *store.Store
	NATS    *nats.Conn
	Locator Locator
	// Floor is the deployment's policy; every meeting inherits it.
	Floor policy.Policy
	// Key signs join tokens and audit entries.
	Key ed25519.PrivateKey
	// EnrollmentKey is the public half of the deployment's enrollment key
	// (required): node certificates must verify against it.
	EnrollmentKey ed25519.PublicKey
	// Revocations is the revocation list in force at start (nodecert), if
	// any; SetRevocations takes newer ones.
	Revocations []byte
	// TokenTTL is how long a join token is valid; default 2 minutes.
	TokenTTL time.Duration
	// TrustClientLocation tells clients (the web app) whether a location
	// hint will be honoured; the Locator enforces it.
	TrustClientLocation bool
	Logger              *slog.Logger
	Now                 func() time.Time
	// Rand drives placement's tie-breaks; nil seeds one from crypto/rand.
	Rand *rand.Rand
	// Timing is every clock of enforcement and node health; zero fields
	// take cluster.DefaultTiming's.
	Timing cluster.Timing
	// OperatorToken opens what spans every meeting (GET /api/audit,
	// /api/audit/export and /api/report without a meeting); empty: nobody
	// may read those.
	OperatorToken string
	// PublicURL is where clients reach the control plane, for the links
	// of a new meeting; empty: the scheme and host a create request came
	// to.
	PublicURL string
	// LobbyWait is how long a join's ask from the lobby is held open for
	// the host's decision; default 20 s.
	LobbyWait time.Duration
	// AuditOrigin names the deployment's transparency log in its
	// checkpoints and verifier key; default audit.DefaultOrigin of the
	// public key. Changing it starts checkpoints no client holding the
	// old ones will accept.
	AuditOrigin string
	// Limits are the per-client limits (limits.go); the zero value is
	// DefaultLimits, NoLimits turns them off.
	Limits Limits
}

// Server is the control plane. Build it with New, serve Handler, and Run
// its background work.
type Server struct {
	cfg      Config
	floor    policy.Policy
	log      *slog.Logger
	now      func() time.Time
	owner    *owner
	meetings *meetings
	audit    *auditor
	exec     *executor
	// urgent carries out what a passed deadline asks (disconnecting and
	// recording the departure) apart from exec's queue, which a loaded
	// store can keep seconds behind.
	urgent  *executor
	metrics *metrics
	limits  *limiter
	ready   atomic.Bool
	// operatorHash is the hash of Config.OperatorToken ("" without one).
	operatorHash string
	report       reportCache // the deployment report, shared (report.go)
	// startup is how long each phase of the start took; written before
	// ready is set, read after it.
	startup startPhases
}

// startPhases is how long a start took, by phase: a new leader of
// replicas serves nothing until they are done.
type startPhases struct {
	Rebuild     time.Duration // the audit log read and checked (New)
	Meetings    time.Duration // registrations and every meeting read
	Interrupted time.Duration // joins cut in half found and recorded gone
	Load        time.Duration // the owner given the state, the floor audited
}

// New validates the configuration and publishes the token-verification key
// for nodes.
func New(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.NATS == nil || cfg.Locator == nil {
		return nil, errors.New("control: store, NATS connection and locator are required")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("control: an Ed25519 signing key is required")
	}
	certs, err := newCertifier(cfg.EnrollmentKey, cfg.Revocations)
	if err != nil {
		return nil, err
	}
	floor, err := cfg.Floor.Normalize()
	if err != nil {
		return nil, fmt.Errorf("control: deployment floor: %w", err)
	}
	if _, err := policy.Combine(floor, policy.Policy{}); err != nil {
		return nil, fmt.Errorf("control: deployment floor: %w", err)
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 2 * time.Minute
	}
	if cfg.LobbyWait <= 0 {
		cfg.LobbyWait = 20 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Rand == nil {
		var seed [16]byte
		_, _ = crand.Read(seed[:])
		cfg.Rand = rand.New(rand.NewPCG(binary.LittleEndian.Uint64(seed[:8]), binary.LittleEndian.Uint64(seed[8:])))
	}
	cfg.Timing = cfg.Timing.WithDefaults()
	cfg.Limits = cfg.Limits.withDefaults()
	if err := cfg.Limits.validate(); err != nil {
		return nil, err
	}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	if cfg.AuditOrigin == "" {
		cfg.AuditOrigin = audit.DefaultOrigin(pub)
	}
	auditor, err := newAuditor(cfg.Key, cfg.Store, cfg.Now, cfg.Logger, cfg.AuditOrigin, cfg.Timing.CheckpointEvery)
	if err != nil {
		return nil, err
	}
	// The log is read before anything is served: a log this process
	// cannot extend stops it here, and the first checkpoint is of what
	// is stored.
	rebuildStart := time.Now()
	if err := auditor.rebuild(ctx); err != nil {
		return nil, err
	}
	rebuilt := time.Since(rebuildStart)
	s := &Server{
		audit:    auditor,
		cfg:      cfg,
		floor:    floor,
		log:      cfg.Logger,
		now:      cfg.Now,
		owner:    newOwner(cfg.Timing, cfg.TokenTTL, cfg.Rand, certs, cfg.Logger),
		limits:   newLimiter(cfg.Limits),
		meetings: newMeetings(cfg.Store),
		exec:     newExecutor(),
		urgent:   newExecutor(),
		startup:  startPhases{Rebuild: rebuilt},
	}
	if cfg.OperatorToken != "" {
		s.operatorHash = token.HashHostToken(cfg.OperatorToken)
	}
	s.owner.pendingLimits(cfg.Limits)
	s.owner.submit = s.exec.submit
	s.owner.submitUrgent = s.urgent.submit
	// Until Run has loaded the state, a node not heard from yet is one
	// that has not had time to report, not one that is gone.
	s.owner.started = cfg.Now()
	s.metrics = newMetrics(func() int { return s.owner.live().healthy })
	if err := cfg.Store.PutControl(ctx, cluster.KeyTokenPublicKey, pub); err != nil {
		return nil, fmt.Errorf("control: publish token key: %w", err)
	}
	return s, nil
}

// SetRevocations takes a revocation list signed by the enrollment key and
// newer than the one held (the same one again changes nothing). Nodes it
// revokes are at once given nothing new, and their participants are moved
// off by the next plan; each is audited. It needs Run to be running.
func (s *Server) SetRevocations(ctx context.Context, list []byte) error {
	return s.owner.revocations(ctx, list, s.now())
}

// PublicKey verifies join tokens and audit entries.
func (s *Server) PublicKey() ed25519.PublicKey { return s.cfg.Key.Public().(ed25519.PublicKey) }

// Run starts the owner of live state and the audit appender, follows node
// heartbeats, node events (from their stream: those published while no
// control plane ran are taken in now) and the meetings bucket, and
// enforces every meeting's policy until ctx ends. It returns once
// everything it started has stopped.
func (s *Server) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { s.owner.run(ctx) })
	wg.Go(func() { s.audit.run(ctx) })
	wg.Go(func() { s.exec.run(ctx, s.carryOut) })
	wg.Go(func() { s.urgent.run(ctx, s.carryOut) })

	regs := newRegistrations()
	hbSub, err := s.cfg.NATS.Subscribe(cluster.SubjectHeartbeat("*"), func(m *nats.Msg) {
		hb, ok := fromNode(s, m, "heartbeat", func(hb cluster.Heartbeat) string { return hb.Node.ID })
		if !ok {
			return
		}
		regs.heartbeat(ctx, s, hb)
		s.owner.heartbeat(hb, s.now())
	})
	if err != nil {
		return fmt.Errorf("control: subscribe to heartbeats: %w", err)
	}
	defer hbSub.Unsubscribe()
	keySub, err := s.serveTokenKey(ctx)
	if err != nil {
		return err
	}
	defer keySub.Unsubscribe()

	events, err := s.openEvents(ctx)
	if err != nil {
		return err
	}
	if err := s.loadState(ctx); err != nil {
		return err
	}
	floorStart := time.Now()
	if err := s.auditFloorChanges(ctx); err != nil {
		return err
	}
	s.startup.Load += time.Since(floorStart)
	// Node events are taken in once the state is loaded: none is lost
	// meanwhile, as the stream keeps them until they are acknowledged.
	wg.Go(func() {
		for {
			err := s.consumeEvents(ctx, events)
			if ctx.Err() != nil {
				return
			}
			s.log.Error("node events: consuming again", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(s.cfg.Timing.HeartbeatInterval):
			}
		}
	})
	wg.Go(func() { s.watchMeetings(ctx) })
	wg.Go(func() { s.planLoop(ctx) })
	s.log.Info("control plane ready", "audit_rebuild", s.startup.Rebuild, "read_meetings", s.startup.Meetings,
		"interrupted_joins", s.startup.Interrupted, "load", s.startup.Load)
	s.ready.Store(true)
	defer s.ready.Store(false)

	// Move deadlines and silent nodes are kept on a clock of their own,
	// which reads no meeting: planning may take a while on a loaded
	// store.
	t := time.NewTicker(tickEvery(s.cfg.Timing))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			_, _ = s.owner.expire(ctx, s.now())
			s.housekeep(ctx)
		}
	}
}

// loadState reads registrations and meetings left by a previous run.
func (s *Server) loadState(ctx context.Context) error {
	phase := time.Now()
	regs, err := s.cfg.Store.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	var infos []cluster.NodeInfo
	for _, r := range regs {
		info, err := cluster.Decode[cluster.NodeInfo]("node registration", r)
		if err != nil {
			s.log.Warn("skipping unreadable node registration", "err", err)
			continue
		}
		infos = append(infos, info)
	}
	all, err := s.meetings.all(ctx)
	if err != nil {
		return fmt.Errorf("control: load meetings: %w", err)
	}
	s.startup.Meetings, phase = time.Since(phase), time.Now()
	if all, err = s.finishInterruptedJoins(ctx, all); err != nil {
		return fmt.Errorf("control: interrupted joins: %w", err)
	}
	s.startup.Interrupted, phase = time.Since(phase), time.Now()
	if err := s.owner.load(ctx, infos, all, s.now()); err != nil {
		return fmt.Errorf("control: load state: %w", err)
	}
	s.startup.Load = time.Since(phase)
	s.log.Info("control plane state loaded", "nodes", len(regs), "meetings", len(all))
	return nil
}

// nodeEvent follows participants connecting to and leaving their nodes.
// It returns an error when the event could not be taken in and may be
// later (the store failed, or ctx ended); an event that changes nothing,
// or names what does not exist, is taken in.
func (s *Server) nodeEvent(ctx context.Context, ev cluster.Event) error {
	if !validMeetingID(ev.Meeting) {
		return nil
	}
	// Events about meetings without participants are dropped without a
	// store read, so that a node flooding made-up meetings costs little
	// and delays others' events little: every meeting with participants
	// is held decoded while the watch runs. A departure from such a
	// meeting has nothing to record; a connection to one held idle is
	// checked (it is turned away), one to a meeting not held at all names
	// none or one long over.
	if active, known, watched := s.meetings.holds(ev.Meeting); watched && !active &&
		(ev.Kind == cluster.EventDisconnected || !known) {
		return nil
	}
	switch ev.Kind {
	case cluster.EventConnected:
		var old *participant
		removed, late, lateReason, onNode := false, false, "", false
		_, _, err := s.meetings.update(ctx, ev.Meeting, func(m *meeting) error {
			removed, late, onNode, old = false, false, false, nil // this attempt's findings alone
			p := m.participant(ev.Participant)
			if p != nil && p.Removed {
				// Removed before it got there, or back with its token:
				// it is not let stay.
				removed = true
				return errNoChange
			}
			if p != nil && p.Left != nil && p.Connected == nil && p.Node.ID == ev.Node {
				// Recorded gone before it came (mostly: its seat's hold
				// passed, and the seat went to others): it is not let
				// stay, and may join again.
				late, lateReason = true, api.ReasonPendingExpired
				if p.LeftReason != reasonNeverConnected {
					lateReason = p.LeftReason // recorded gone for another reason
				}
				return errNoChange
			}
			if p == nil {
				// Not in the record: folded away long after it was
				// recorded gone (every join is stored before its token is
				// handed out). It holds no seat, so it may not stay.
				late, lateReason = true, api.ReasonPendingExpired
				return errNoChange
			}
			if p.Node.ID != ev.Node {
				return errNoChange // another node's participant: its seat is not this node's to give back
			}
			onNode = p.Left == nil
			if p.Connected != nil {
				return errNoChange
			}
			t := ev.Time.UTC()
			p.Connected = &t
			if p.Replaces != "" {
				if o := m.participant(p.Replaces); o != nil && o.Left == nil {
					c := *o
					old = &c
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errNoChange) {
			s.log.Warn("record connection", "meeting", ev.Meeting, "participant", ev.Participant, "err", err)
			return retryable(err)
		}
		if onNode {
			// Only once the record says it is connected on this node:
			// its seat is no longer held for it.
			if err := s.owner.connected(ctx, ev.Participant); err != nil {
				return err
			}
		}
		if err == nil && old != nil {
			_ = s.owner.replaced(ctx, ev.Meeting, old.ID, old.Node.ID, s.now())
		}
		if removed {
			_, _ = s.owner.handOver(ctx, []action{{Kind: actCommand, Meeting: ev.Meeting, Node: ev.Node, Note: "removed participant connected: disconnecting",
				Cmd: cluster.Command{Kind: cluster.CommandKick, Meeting: ev.Meeting, Participant: ev.Participant, Reason: api.ReasonRemoved}}})
		}
		if late {
			s.log.Info("participant connected after it was recorded gone: disconnecting", "meeting", ev.Meeting, "participant", ev.Participant, "node", ev.Node, "reason", lateReason)
			_, _ = s.owner.handOver(ctx, []action{{Kind: actCommand, Meeting: ev.Meeting, Node: ev.Node, Note: "participant connected after it was recorded gone: disconnecting",
				Cmd: cluster.Command{Kind: cluster.CommandKick, Meeting: ev.Meeting, Participant: ev.Participant, Reason: lateReason}}})
		}
	case cluster.EventDisconnected:
		return retryable(s.participantLeft(ctx, ev.Meeting, leave{Participant: ev.Participant, Node: ev.Node, Reason: ev.Reason, At: ev.Time}))
	}
	return ctx.Err()
}

// retryable is err if trying again later may succeed: a store failure or
// an ended context, not an answer about the meeting (no such meeting, its
// record full), which a retry would only repeat.
func retryable(err error) error {
	var ae *api.Error
	if err == nil || errors.Is(err, errNoChange) || errors.As(err, &ae) {
		return nil
	}
	return err
}

// Handler is the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /api/config", s.handleConfig)
	mux.HandleFunc("GET /api/geo", s.handleGeo)
	mux.HandleFunc("GET /api/nodes", s.handleNodes)
	mux.HandleFunc("POST /api/policy/preview", s.limited(s.limits.preview, "policy preview", s.handlePreview))
	mux.HandleFunc("POST /api/meetings", s.limited(s.limits.create, "meeting creation", s.handleCreate))
	mux.HandleFunc("GET /api/meetings/{id}", s.handleGetMeeting)
	mux.HandleFunc("PUT /api/meetings/{id}/policy", s.handlePutPolicy)
	mux.HandleFunc("POST /api/meetings/{id}/join", s.limited(s.limits.join, "join", s.handleJoin))
	mux.HandleFunc("PUT /api/meetings/{id}/settings", s.handleSettings)
	mux.HandleFunc("DELETE /api/meetings/{id}/participants/{pid}", s.handleRemove)
	mux.HandleFunc("GET /api/meetings/{id}/lobby", s.handleLobby)
	mux.HandleFunc("POST /api/meetings/{id}/lobby/{ticket}", s.handleLobbyDecision)
	mux.HandleFunc("GET /api/meetings/{id}/routing", s.handleRouting)
	mux.HandleFunc("GET /api/meetings/{id}/report", s.handleMeetingReport)
	mux.HandleFunc("GET /api/report", s.handleReport)
	mux.HandleFunc("GET /api/audit", s.limited(s.limits.audit, "audit", s.handleAudit))
	mux.HandleFunc("GET /api/audit/export", s.limited(s.limits.audit, "audit", s.handleAuditExport))
	mux.HandleFunc("GET "+api.PathAuditCheckpoint, s.limited(s.limits.audit, "audit", s.handleAuditCheckpoint))
	mux.HandleFunc("GET "+api.PathAuditProof, s.limited(s.limits.audit, "audit", s.handleAuditProof))
	mux.HandleFunc("GET "+api.PathAuditConsistency, s.limited(s.limits.audit, "audit", s.handleAuditConsistency))
	mux.HandleFunc("GET "+api.PathAuditEntries, s.limited(s.limits.audit, "audit", s.handleAuditEntries))
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("/", web.Handler(s.signalingOrigins()))
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(http.StatusNotFound, api.CodeNotFound, "no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header().Set("Strict-Transport-Security", web.HSTS)
		}
		mux.ServeHTTP(w, r)
	})
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeError(w, apiErr(http.StatusServiceUnavailable, api.CodeUnavailable, "starting"))
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", HealthyNodes: s.owner.live().healthy})
}

// opTimeout bounds an operation a request started once it no longer
// depends on the request (see opContext).
const opTimeout = 30 * time.Second

// opContext is the context for work a request starts that must finish once
// begun: the request's values, not its cancellation.
func opContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(r.Context()), opTimeout)
}

// maxBody bounds every JSON request body the API reads.
const maxBody = 64 << 10

// decodeBody reads a JSON request body strictly (httpserve.DecodeJSON):
// unknown fields and trailing data are errors, so typos do not silently
// weaken a policy; a body over maxBody is refused with 413, one not sent
// within the server's read timeout with 408.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	err := httpserve.DecodeJSON(w, r, v, maxBody)
	if err == nil {
		return nil
	}
	var be *httpserve.BodyError
	if errors.As(err, &be) {
		switch be.Status {
		case http.StatusRequestEntityTooLarge:
			return apiErr(http.StatusRequestEntityTooLarge, api.CodeBadRequest, "%s", be.Error())
		case http.StatusRequestTimeout:
			return apiErr(http.StatusRequestTimeout, api.CodeBadRequest, "%s", be.Error())
		}
	}
	return apiErr(http.StatusBadRequest, api.CodeBadJSON, "%s", err.Error())
}
