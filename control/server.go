// Package control is oakmeet's control plane: the HTTP API for meetings and
// their routing policies, placement of participants on media nodes, join
// tokens, node health from heartbeats, and the audit log of every routing
// decision.
package control

import (
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/oakmeet/oakmeet/api"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
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
	// TokenTTL is how long a join token is valid; default 2 minutes.
	TokenTTL time.Duration
	// TrustClientLocation tells clients (the web app) whether a location
	// hint will be honoured; the Locator enforces it.
	TrustClientLocation bool
	Logger              *slog.Logger
	Now                 func() time.Time
	// Rand drives placement's tie-breaks; nil seeds one from crypto/rand.
	Rand *rand.Rand
}

// Server is the control plane. Build it with New, serve Handler, and Run
// its background work.
type Server struct {
	cfg      Config
	floor    policy.Policy
	log      *slog.Logger
	now      func() time.Time
	nodes    *registry
	meetings *meetings
	audit    *auditor
	metrics  *metrics
	ready    atomic.Bool

	randMu sync.Mutex
	rand   *rand.Rand

	// pending are placed participants that have not connected to their
	// node yet; their seat is released when the join token has expired.
	pendingMu sync.Mutex
	pending   map[string]pendingSeat

	enforcer *enforcer
	started  atomic.Int64 // Unix ns when Run began
}

type pendingSeat struct {
	meeting, node string
	deadline      time.Time
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
	s := &Server{
		cfg:      cfg,
		floor:    floor,
		log:      cfg.Logger,
		now:      cfg.Now,
		nodes:    newRegistry(),
		meetings: newMeetings(cfg.Store),
		audit:    newAuditor(cfg.Key, cfg.Store, cfg.Now),
		rand:     cfg.Rand,
		pending:  map[string]pendingSeat{},
		enforcer: newEnforcer(),
	}
	s.metrics = newMetrics(s.nodes.healthyCount)
	pub := cfg.Key.Public().(ed25519.PublicKey)
	if err := cfg.Store.PutControl(ctx, cluster.KeyTokenPublicKey, pub); err != nil {
		return nil, fmt.Errorf("control: publish token key: %w", err)
	}
	return s, nil
}

// PublicKey verifies join tokens and audit entries.
func (s *Server) PublicKey() ed25519.PublicKey { return s.cfg.Key.Public().(ed25519.PublicKey) }

// Run follows node heartbeats and health until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	hbSub, err := s.cfg.NATS.Subscribe(cluster.SubjectHeartbeat, func(m *nats.Msg) {
		hb, err := cluster.Decode[cluster.Heartbeat]("heartbeat", m.Data)
		if err != nil || cluster.ValidNodeID(hb.Node.ID) != nil {
			s.log.Warn("ignoring malformed heartbeat", "err", err)
			return
		}
		if s.nodes.heartbeat(hb, s.now()) {
			s.log.Info("node healthy", "node", hb.Node.ID, "country", hb.Node.Country)
		}
	})
	if err != nil {
		return fmt.Errorf("control: subscribe to heartbeats: %w", err)
	}
	defer hbSub.Unsubscribe()

	evSub, err := s.cfg.NATS.Subscribe(cluster.SubjectEvents, func(m *nats.Msg) {
		ev, err := cluster.Decode[cluster.Event]("node event", m.Data)
		if err != nil {
			s.log.Warn("ignoring malformed node event", "err", err)
			return
		}
		s.nodeEvent(ctx, ev)
	})
	if err != nil {
		return fmt.Errorf("control: subscribe to node events: %w", err)
	}
	defer evSub.Unsubscribe()

	if err := s.loadState(ctx); err != nil {
		return err
	}
	s.started.Store(s.now().UnixNano())
	s.ready.Store(true)
	defer s.ready.Store(false)

	tick := time.NewTicker(cluster.DefaultTiming().HeartbeatInterval / 2)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			for _, n := range s.nodes.expire(s.now()) {
				s.nodeDown(ctx, n)
			}
			s.expireSeats(ctx)
			s.enforceAll(ctx)
		}
	}
}

// loadState reads registrations and meetings left by a previous run.
func (s *Server) loadState(ctx context.Context) error {
	regs, err := s.cfg.Store.Nodes(ctx)
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	for _, r := range regs {
		info, err := cluster.Decode[cluster.NodeInfo]("node registration", r)
		if err != nil {
			s.log.Warn("skipping unreadable node registration", "err", err)
			continue
		}
		s.nodes.known(info)
	}
	all, err := s.meetings.all(ctx)
	if err != nil {
		return fmt.Errorf("control: load meetings: %w", err)
	}
	counts := map[string]int{}
	for _, m := range all {
		if len(m.active()) > 0 {
			s.enforcer.touch(m.ID)
		}
		for _, p := range m.active() {
			counts[p.Node.ID]++
			if p.Connected == nil {
				s.holdSeat(p.ID, m.ID, p.Node.ID, p.Joined)
			}
		}
	}
	s.nodes.resetAssigned(counts)
	s.log.Info("control plane state loaded", "nodes", len(regs), "meetings", len(all))
	return nil
}

func (s *Server) startedAt() time.Time { return time.Unix(0, s.started.Load()) }

// seatGrace is how long after its token expires a placed participant that
// never connected keeps its seat.
const seatGrace = 10 * time.Second

func (s *Server) holdSeat(pid, meeting, node string, joined time.Time) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	s.pending[pid] = pendingSeat{meeting: meeting, node: node, deadline: joined.Add(s.cfg.TokenTTL + seatGrace)}
}

func (s *Server) seatTaken(pid string) {
	s.pendingMu.Lock()
	defer s.pendingMu.Unlock()
	delete(s.pending, pid)
}

func (s *Server) expireSeats(ctx context.Context) {
	now := s.now()
	var expired map[string]pendingSeat
	s.pendingMu.Lock()
	for pid, p := range s.pending {
		if now.After(p.deadline) {
			if expired == nil {
				expired = map[string]pendingSeat{}
			}
			expired[pid] = p
			delete(s.pending, pid)
		}
	}
	s.pendingMu.Unlock()
	for pid, p := range expired {
		s.participantLeft(ctx, p.meeting, pid, p.node, "never connected", now)
	}
}

// nodeEvent follows participants connecting to and leaving their nodes.
func (s *Server) nodeEvent(ctx context.Context, ev cluster.Event) {
	if !validMeetingID(ev.Meeting) {
		return
	}
	switch ev.Kind {
	case cluster.EventConnected:
		s.seatTaken(ev.Participant)
		var old *participant
		_, err := s.meetings.update(ctx, ev.Meeting, func(m *meeting) error {
			p := m.participant(ev.Participant)
			if p == nil || p.Node.ID != ev.Node || p.Connected != nil {
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
		if err == nil && old != nil {
			s.replaced(ev.Meeting, old.ID, old.Node.ID)
		}
		if err != nil && !errors.Is(err, errNoChange) {
			s.log.Warn("record connection", "meeting", ev.Meeting, "participant", ev.Participant, "err", err)
		}
	case cluster.EventDisconnected:
		s.participantLeft(ctx, ev.Meeting, ev.Participant, ev.Node, ev.Reason, ev.Time)
	}
}

// participantLeft ends a participant's presence on a node, unless it has
// already moved elsewhere.
func (s *Server) participantLeft(ctx context.Context, meetingID, pid, nodeID, reason string, at time.Time) {
	_, err := s.meetings.update(ctx, meetingID, func(m *meeting) error {
		p := m.participant(pid)
		if p == nil || p.Left != nil || p.Node.ID != nodeID {
			return errNoChange
		}
		t := at.UTC()
		p.Left, p.LeftReason = &t, reason
		return nil
	})
	if errors.Is(err, errNoChange) {
		return
	}
	if err != nil {
		s.log.Warn("record departure", "meeting", meetingID, "participant", pid, "err", err)
		return
	}
	s.nodes.assign(nodeID, -1)
	s.log.Info("participant left", "meeting", meetingID, "participant", pid, "node", nodeID, "reason", reason)
}

func (s *Server) nodeDown(ctx context.Context, n cluster.NodeInfo) {
	s.log.Warn("node unhealthy: no heartbeat", "node", n.ID, "country", n.Country, "timeout", cluster.DefaultTiming().HeartbeatTimeout)
	_, err := s.audit.append(ctx, audit.Entry{
		Kind: audit.KindNodeDown, Node: n.ID, NodeCountry: n.Country,
		Reason: fmt.Sprintf("no heartbeat for %s", cluster.DefaultTiming().HeartbeatTimeout),
	})
	if err != nil {
		s.log.Error("audit node down", "node", n.ID, "err", err)
	}
}

// Handler is the HTTP API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", s.handleHealth)
	mux.HandleFunc("GET /api/config", s.handleConfig)
	mux.HandleFunc("GET /api/geo", s.handleGeo)
	mux.HandleFunc("GET /api/nodes", s.handleNodes)
	mux.HandleFunc("POST /api/policy/preview", s.handlePreview)
	mux.HandleFunc("POST /api/meetings", s.handleCreate)
	mux.HandleFunc("GET /api/meetings/{id}", s.handleGetMeeting)
	mux.HandleFunc("PUT /api/meetings/{id}/policy", s.handlePutPolicy)
	mux.HandleFunc("POST /api/meetings/{id}/join", s.handleJoin)
	mux.HandleFunc("GET /api/meetings/{id}/routing", s.handleRouting)
	mux.HandleFunc("GET /api/meetings/{id}/report", s.handleMeetingReport)
	mux.HandleFunc("GET /api/report", s.handleReport)
	mux.HandleFunc("GET /api/audit", s.handleAudit)
	mux.HandleFunc("GET /api/audit/export", s.handleAuditExport)
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.Handle("/", web.Handler())
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, apiErr(http.StatusNotFound, api.CodeNotFound, "no API endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.ready.Load() {
		writeError(w, apiErr(http.StatusServiceUnavailable, api.CodeUnavailable, "starting"))
		return
	}
	writeJSON(w, http.StatusOK, api.Health{Status: "ok", HealthyNodes: s.nodes.healthyCount()})
}

func (s *Server) pick(fn func(*rand.Rand)) {
	s.randMu.Lock()
	defer s.randMu.Unlock()
	fn(s.rand)
}

// decodeBody reads a JSON request body strictly: unknown fields and
// trailing data are errors, so typos do not silently weaken a policy.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) *api.Error {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apiErr(http.StatusRequestEntityTooLarge, api.CodeBadRequest, "request body larger than %d bytes", mbe.Limit)
		}
		return apiErr(http.StatusBadRequest, api.CodeBadJSON, "request body: %v", err)
	}
	if dec.More() {
		return apiErr(http.StatusBadRequest, api.CodeBadJSON, "request body: unexpected data after the JSON value")
	}
	return nil
}
