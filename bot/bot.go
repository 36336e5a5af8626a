// Package bot is a headless meeting participant: it joins through the
// control plane, takes part in the end-to-end key schedule, publishes the
// committed test clips in real time encrypted with SFrame, decrypts
// everyone else's media, and reports what arrived — packets, frames, loss,
// decryption failures and end-to-end frame latency. `oakmeet bot`, the load generator and the
// system tests are built on it.
package bot

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/clip"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/stamp"
)

// Config describes one bot.
type Config struct {
	Server  string // control plane URL
	Meeting string
	// Secret is the meeting's join secret (the link's #s=…).
	Secret string
	// HostFingerprint is the host key's fingerprint from the link (#h=…):
	// host statements are accepted only under the key it names, and every
	// node is checked against the newest host-signed policy. Without it
	// there is nothing to check a node against: the bot refuses every
	// node (api.CodeNoHostPolicy) and Run fails.
	HostFingerprint string
	Name            string
	Country         string // location hint, where the deployment trusts hints
	// Duration is how long the bot stays; zero means until ctx ends.
	Duration time.Duration
	// NoPublish makes a receive-only bot (load generator subscribers).
	NoPublish bool
	// Screen also publishes a second video track declared as a shared
	// screen (signal.SourceScreen), from the same synthetic clip.
	Screen bool
	// Synthetic, if set, publishes the load generator's synthetic video
	// (see Synthetic) instead of the test clip.
	Synthetic *Synthetic
	// NoAudio publishes no audio track, NoVideo no video track (a bot
	// with both publishes nothing).
	NoAudio bool
	NoVideo bool
	// NoE2EE sends frames without SFrame and counts received frames
	// without decrypting them: for load generation only, where every
	// client of the meeting does the same. A node forwards opaque payloads
	// either way, so its cost is the same; the clients' is not. Every
	// other part of the join, the key schedule included, runs as usual.
	NoE2EE bool
	// OnFrame, if set, is told of every frame the bot decrypts and
	// counts, by the publisher and the track's source; OnTrackEnded of
	// every remote track whose media ended, with what it counted of it.
	// Both are called on the track's reading goroutine and must not block
	// for long.
	OnFrame      func(participantID, source string)
	OnTrackEnded func(TrackReport)
	// Linger is how long the bot keeps receiving after it stops
	// publishing at the end, so frames in flight are counted.
	Linger time.Duration
	// LoopbackOnly keeps media on 127.0.0.1 (local demos and tests).
	LoopbackOnly bool
	// RelayOnly sends media only through the node's TURN server.
	RelayOnly  bool
	HTTPClient *http.Client
	Logger     *slog.Logger
	// MeasureFrom, if set, holds a time (Unix nanoseconds, 0 = from the
	// start): frames sent before it, and frames stamped and packets
	// arriving before it, are not counted. A load generator sets it once
	// every client is in, plus a warm-up.
	MeasureFrom *atomic.Int64
	// MeasureUntil, if set and not 0, ends that window: frames sent from
	// then on are not counted, so frames still in flight when the bot
	// stops do not count as lost.
	MeasureUntil *atomic.Int64
	// Identity is the bot's long-term identity key; nil makes a fresh one.
	Identity *identity.Identity
	// Ready, if set, is called once the bot is connected, before it
	// publishes; it may block to hold the bot back.
	Ready func(participantID string)
	// OnNode, if set, is told the node the bot first connected to, just
	// before Ready: a load generator finds the node's process by its port.
	OnNode func(client.NodeInfo)
	// OnLobby, if set, is told each time the join waits in the lobby.
	OnLobby func(api.LobbyWait)
	// OnKeys, if set, is handed each leg's key schedule member when the
	// leg starts: tests use it to try the bot's keys on frames it should
	// not be able to read.
	OnKeys func(participantID string, m *group.Member)
	// OnHost, if set, is told what the bot holds of the host's statements
	// each time that changes, once the change is in the keys of the legs
	// there are (a removal: nothing is sent under keys it could read).
	OnHost func(client.HostReport)
	// RejoinTimeout, RejoinPause and HandoverTimeout are the call's, for
	// when the bot moves (see client.CallConfig; zero takes its default).
	// A test cluster that notices a lost node in a second has the bot
	// retry sooner than production would.
	RejoinTimeout   time.Duration
	RejoinPause     time.Duration
	HandoverTimeout time.Duration
	// AuditKey is the transparency log's verifier key the bot insists on
	// (name+hash+key); empty takes the one the first join answer names.
	AuditKey string
	// Checkpoints are signed log checkpoints held from before, oldest
	// first: the log must extend the newest, so a log truncated or rebuilt
	// since is caught at the first join.
	Checkpoints [][]byte
	// OnCheckpoint, if set, is told each checkpoint the bot newly holds,
	// signed, once checked (`--checkpoints FILE` appends it to FILE). It
	// must not block for long.
	OnCheckpoint func(signed []byte)
	// OnAudit, if set, is handed the call's log watcher once the bot has
	// joined: the place to offer it checkpoints from elsewhere.
	OnAudit func(*client.AuditWatcher)
	// OnAuditState, if set, is told the log watcher's status each time its
	// state changes: `oakmeet bot` warns when it turns stale (the control
	// plane withholds proofs or freezes its checkpoint), which is no alarm.
	// It must not block for long.
	OnAuditState func(client.AuditStatus)
	// AuditStaleAfter and AuditStaleBound are when the watcher turns stale
	// (client.AuditOptions StaleAfter, StaleBound; zero takes the default).
	AuditStaleAfter int
	AuditStaleBound time.Duration
}

// Report is what a bot saw. Field names are part of `oakmeet bot --json`.
type Report struct {
	ParticipantID string  `json:"participant_id"`
	Node          NodeRef `json:"node"`
	// NodeCert is the certificate of the node the bot ended on, as the
	// bot verified it before connecting (and the node proved it holds its
	// key): the enrollment key the host signed vouches for where it is.
	NodeCert *NodeCert `json:"node_cert,omitempty"`
	// Refusals are the nodes the bot refused to connect to, oldest first.
	Refusals []Refusal `json:"refusals"`
	// SecurityCode and Epoch are the end-to-end encryption state when the
	// bot left: every member of the meeting shows the same code.
	Moves        []Move      `json:"moves,omitempty"`
	SecurityCode string      `json:"security_code"`
	Epoch        uint64      `json:"epoch"`
	KeyChanges   []KeyChange `json:"key_changes"`
	// People is the signed roster the bot holds, with everyone the server
	// lists, each flagged where the two disagree (see Person).
	People []Person `json:"people"`
	// Keys is where the bot's key schedule stood when it left.
	Keys KeyStatus `json:"keys"`
	// Host is what the bot holds of the host's signed statements.
	Host client.HostReport `json:"host"`
	// Checkpoints are the transparency log's checkpoints the bot held,
	// signed notes, oldest first (those it was given from before first).
	Checkpoints []string `json:"checkpoints"`
	// Audit is where the bot's check of the log stood when it left.
	Audit client.AuditStatus `json:"audit"`
	// Ended is the node's reason when it ended the bot's stay: "removed"
	// when the host removed it.
	Ended  string        `json:"ended,omitempty"`
	Sent   SentCounts    `json:"sent"`
	Tracks []TrackReport `json:"tracks"`
	// FramesBySource is how many frames the bot decrypted and counted, by
	// track source (signal.Source*), of every track together.
	FramesBySource map[string]int64 `json:"frames_by_source"`
	// JoinedAt is when the bot was first connected to its node, and
	// FirstFrameAt when it first decrypted a frame (absent if never).
	JoinedAt     time.Time  `json:"joined_at"`
	FirstFrameAt *time.Time `json:"first_frame_at,omitempty"`
}

// NodeRef names the node the bot was placed on.
type NodeRef struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
}

// NodeCert is what a verified node certificate says.
type NodeCert struct {
	Node     string    `json:"node"`
	Country  string    `json:"country"`
	Region   string    `json:"region,omitempty"`
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// Refusal is one node the bot refused, and why (Code is one of api's
// node_* or no_host_policy codes).
type Refusal struct {
	Node    string `json:"node"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

func refusals(rs []client.Refusal) []Refusal {
	out := []Refusal{}
	for _, r := range rs {
		out = append(out, Refusal{Node: r.Node.ID, Code: r.Code, Message: r.Message})
	}
	return out
}

func nodeRef(n client.NodeInfo) NodeRef {
	return NodeRef{ID: n.ID, Country: n.Country, Region: n.Region}
}

// SentCounts is what the bot published.
type SentCounts struct {
	VideoFrames  int64 `json:"video_frames"`
	AudioFrames  int64 `json:"audio_frames"`
	ScreenFrames int64 `json:"screen_frames,omitempty"`
	// VideoPackets and AudioPackets are the RTP packets of those frames.
	VideoPackets int64 `json:"video_packets"`
	AudioPackets int64 `json:"audio_packets"`
}

// TrackReport is one remote track the bot received.
type TrackReport struct {
	ParticipantID string `json:"participant_id"`
	TrackID       string `json:"track_id"`
	Kind          string `json:"kind"`   // "audio" or "video"
	Source        string `json:"source"` // signal.Source*: camera, microphone, screen, screen_audio
	Packets       int64  `json:"packets"`
	Bytes         int64  `json:"bytes"`
	Frames        int64  `json:"frames"`
	// FramePackets is the packets of those frames: counted by the frames'
	// send stamps, as the sender counts what it sent, rather than by when
	// a packet arrived.
	FramePackets int64 `json:"frame_packets"`
	Lost         int64 `json:"lost"` // packets never received, after retransmission
	// DecryptFailures counts frames that failed authentication or were
	// malformed; NoKey counts frames under a key this member did not hold
	// (normal for a moment after a re-key or join); Replayed counts frames
	// that arrived a second time and were dropped by SFrame's replay
	// check: while the bot moves make-before-break, its old and new
	// connections both carry a sender's frames for a moment, so the
	// second copy of a frame is expected, not a failure of integrity.
	DecryptFailures int64   `json:"decrypt_failures"`
	NoKey           int64   `json:"no_key"`
	Replayed        int64   `json:"replayed"`
	LatencyMs       Latency `json:"latency_ms"`
	latencies       []float64
}

// Latency summarises end-to-end frame latency in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
}

// Run joins, publishes and receives until the duration passes or ctx ends,
// then leaves and reports. When the node asks the bot to move, or its node
// is lost, the bot joins again through the control plane and carries on
// from the new node: the new connection carries media before the old one
// closes. A refused join is returned as *client.APIError. Every node is
// checked against the host-signed policy before the bot connects; after
// client.MaxRefusals refused nodes in a row Run returns a
// *client.GaveUpError with a report listing them.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Synthetic != nil {
		if err := cfg.Synthetic.Validate(); err != nil {
			return nil, err
		}
	}
	if cfg.NoAudio && cfg.NoVideo && !cfg.NoPublish {
		return nil, errors.New("no audio and no video: a publishing bot would send nothing")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = http.DefaultClient
	}
	if cfg.Name == "" {
		cfg.Name = "bot"
	}
	if cfg.MeasureFrom == nil {
		cfg.MeasureFrom = new(atomic.Int64)
	}
	if cfg.MeasureUntil == nil {
		cfg.MeasureUntil = new(atomic.Int64)
	}
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	id := cfg.Identity
	if id == nil {
		var err error
		if id, err = identity.Generate(); err != nil {
			return nil, err
		}
	}
	// Publishing stops when ctx ends; receiving goes on for Linger more.
	pubCtx := ctx
	recvCtx, cancelRecv := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRecv()
	stopRecv := context.AfterFunc(pubCtx, func() {
		time.AfterFunc(cfg.Linger, cancelRecv)
	})
	defer stopRecv()

	r := &runner{cfg: cfg, id: id, pubCtx: pubCtx, rx: newReceiver(window{cfg.MeasureFrom, cfg.MeasureUntil}, cfg.NoE2EE, cfg.OnFrame, cfg.OnTrackEnded), legs: map[*client.Leg]*leg{},
		host: client.NewHostView(cfg.HostFingerprint)}
	// The call joins, and moves, with pubCtx: a bot that is leaving does
	// not move any more.
	call, err := client.StartCall(pubCtx, client.CallConfig{
		Server: cfg.Server, Meeting: cfg.Meeting,
		Join: client.JoinRequest{Name: cfg.Name, Country: cfg.Country, Secret: cfg.Secret, Identity: id.Public(),
			OnLobby: cfg.OnLobby},
		Options:         client.Options{Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, LoopbackOnly: cfg.LoopbackOnly, RelayOnly: cfg.RelayOnly},
		HTTPClient:      cfg.HTTPClient,
		Host:            r.host,
		RejoinTimeout:   cfg.RejoinTimeout,
		RejoinPause:     cfg.RejoinPause,
		HandoverTimeout: cfg.HandoverTimeout,
		OnLeg:           r.onLeg,
		Audit: client.AuditOptions{Key: cfg.AuditKey, Held: cfg.Checkpoints, OnCheckpoint: r.onCheckpoint,
			StaleAfter: cfg.AuditStaleAfter, StaleBound: cfg.AuditStaleBound, OnState: cfg.OnAuditState},
	})
	if err != nil {
		var gave *client.GaveUpError
		if errors.As(err, &gave) {
			// Nothing was sent anywhere; the report says where the bot
			// was placed and why it refused each node.
			return &Report{Refusals: refusals(gave.Refusals), Host: r.host.Report(), Tracks: []TrackReport{}, Checkpoints: []string{},
				Audit: client.AuditStatus{State: client.AuditUnchecked}}, err
		}
		return nil, err
	}
	rep := &Report{JoinedAt: time.Now().UTC()}
	r.audit.Store(call.Audit())
	if cfg.OnAudit != nil {
		cfg.OnAudit(call.Audit())
	}
	if cfg.OnNode != nil {
		cfg.OnNode(call.Current().Node())
	}
	// Ready comes before publishing, so a load generator can start every
	// publisher's clock at once.
	if cfg.Ready != nil {
		cfg.Ready(call.Current().ID())
	}
	if err := r.startPublishing(); err != nil {
		_ = call.Close()
		return rep, err
	}
	var runErr error
	select {
	case <-recvCtx.Done():
	case <-call.Done():
		runErr = call.Err()
	case <-call.Audit().Alarm():
		// Nothing the control plane says of this meeting can be held to
		// a log that contradicts itself: the bot stops and says so.
		runErr = fmt.Errorf("%w: %s", ErrAuditAlarm, call.Audit().Status().Reason)
	}
	cur := r.legOf(call.Current())
	rep.ParticipantID = cur.call.ID()
	rep.Node = nodeRef(cur.call.Node())
	if c := cur.call.NodeCert().Cert; c.NodeID != "" {
		rep.NodeCert = &NodeCert{Node: c.NodeID, Country: c.Country, Region: c.Region, Serial: c.Serial, NotAfter: c.NotAfter.UTC()}
	}
	rep.Refusals = refusals(call.Refusals())
	for _, m := range call.Moves() {
		rep.Moves = append(rep.Moves, Move{At: m.At, Reason: m.Reason, From: nodeRef(m.From), To: nodeRef(m.To)})
	}
	rep.SecurityCode, rep.Epoch, _ = cur.keys.final()
	policy, _ := r.host.Policy()
	rep.People, rep.Keys = cur.keys.people(policy), cur.keys.status()
	_ = call.Close()
	rep.KeyChanges = r.history()
	rep.Sent = SentCounts{VideoFrames: r.sentVideo.Load(), AudioFrames: r.sentAudio.Load(), ScreenFrames: r.sentScreen.Load(),
		VideoPackets: r.sentVideoPkts.Load(), AudioPackets: r.sentAudioPkts.Load()}
	rep.Tracks, rep.FirstFrameAt = r.rx.report()
	rep.FramesBySource = map[string]int64{}
	for _, t := range rep.Tracks {
		rep.FramesBySource[t.Source] += t.Frames
	}
	rep.Host = r.host.Report()
	rep.Checkpoints = append([]string{}, call.Audit().Checkpoints()...)
	rep.Audit = call.Audit().Status()
	var left *client.LeftError
	if errors.As(runErr, &left) {
		rep.Ended = left.Reason
	}
	if client.RemovedByHost(runErr) {
		runErr = fmt.Errorf("%w: %w", ErrRemoved, runErr)
	}
	return rep, runErr
}

// ErrAuditAlarm is why a bot ended that found the control plane's
// transparency log inconsistent: truncated, forked, rebuilt or re-signed
// (Report.Audit says how).
var ErrAuditAlarm = errors.New("the control plane's audit log is inconsistent")

// ErrRemoved is why a bot the host removed ended (Report.Ended is
// "removed").
var ErrRemoved = errors.New("the host removed this participant")

// window is the measured time: [from, until), until 0 = open.
type window struct{ from, until *atomic.Int64 }

func (w window) has(t time.Time) bool {
	ns := t.UnixNano()
	u := w.until.Load()
	return ns >= w.from.Load() && (u == 0 || ns < u)
}

// started reports whether the window has begun at t.
func (w window) started(t time.Time) bool { return t.UnixNano() >= w.from.Load() }

// Move is one time the bot moved to another node.
type Move struct {
	At     time.Time `json:"at"`
	From   NodeRef   `json:"from"`
	To     NodeRef   `json:"to"`
	Reason string    `json:"reason"`
}

// carriedFrames is how many frames a new leg sends before the leg it
// replaces may close.
const carriedFrames = 10

// runner is one bot's state across the legs of its call.
type runner struct {
	cfg    Config
	id     *identity.Identity
	pubCtx context.Context
	rx     *receiver

	sentVideo, sentAudio, sentScreen atomic.Int64
	sentVideoPkts, sentAudioPkts     atomic.Int64

	mu         sync.Mutex
	legs       map[*client.Leg]*leg // every leg the call made
	publishing bool                 // Ready has returned: every leg publishes
	keyHist    []KeyChange
	host       *client.HostView // across legs (the call's too): the host key is the meeting's

	// audit is the call's log watcher, once the call has started: the
	// checkpoints other members share are offered to it.
	audit atomic.Pointer[client.AuditWatcher]
}

// leg is the bot's side of one leg of the call: its key schedule member
// and the goroutines that publish and read its media and tick its keys.
type leg struct {
	call    *client.Leg
	keys    *keyring
	pubCtx  context.Context
	stopPub context.CancelFunc
	done    chan struct{} // closed when the leg closes
	sent    atomic.Int64
	wg      sync.WaitGroup

	mu     sync.Mutex // orders publishing against closing
	closed bool
}

// onLeg prepares a new leg of the call: a key schedule member for its
// participant, and publishers once the bot publishes at all.
func (r *runner) onLeg(cl *client.Leg) (client.LegHooks, error) {
	policyHash, removals := r.hostJoin(cl)
	keys, err := newKeyring(cl.Session(), tokenIssued(cl.Join().Token), r.id, r.cfg.Name, policyHash, cl.NodeCert().Text, r.cfg.Logger)
	if err != nil {
		return client.LegHooks{}, fmt.Errorf("end-to-end encryption: %w", err)
	}
	for _, s := range removals {
		keys.remove(s.Participant, s.Identity)
	}
	if r.cfg.OnKeys != nil {
		r.cfg.OnKeys(cl.ID(), keys.m)
	}
	l := &leg{call: cl, keys: keys, done: make(chan struct{})}
	l.pubCtx, l.stopPub = context.WithCancel(r.pubCtx)
	l.wg.Go(func() { l.keys.run(l.done) })
	r.mu.Lock()
	r.legs[cl] = l
	publish := r.publishing
	r.mu.Unlock()
	if publish {
		if err := r.publishOn(l); err != nil {
			r.closeLeg(l)
			return client.LegHooks{}, err
		}
	}
	return client.LegHooks{
		Event:  func(ev client.Event) { r.event(l, ev) },
		Closed: func() { r.closeLeg(l) },
	}, nil
}

// event handles one leg's events: the key schedule, host statements and
// new tracks.
func (r *runner) event(l *leg, ev client.Event) {
	switch ev.Type {
	case client.EventParticipantJoined:
		l.keys.joined(ev.Participant)
	case client.EventParticipantLeft:
		l.keys.left(ev.Participant)
	case client.EventRelay:
		if cps := l.keys.relay(ev.Participant.ID, ev.Payload); len(cps) > 0 {
			r.offerCheckpoints(l, cps)
		}
	case client.EventHost:
		r.hostStatement(ev)
	case client.EventTrackAdded:
		l.wg.Go(func() { r.rx.read(ev, l.keys.m) })
	case client.EventError:
		r.cfg.Logger.Warn("node reported an error", "err", ev.Err)
	}
}

// onCheckpoint is told each checkpoint the call's watcher newly holds:
// the caller's hook, and every other member of the meeting through each
// leg's key schedule, so that a log forked between members is caught by
// the members themselves. It runs on the watcher's goroutine.
func (r *runner) onCheckpoint(signed []byte) {
	if r.cfg.OnCheckpoint != nil {
		r.cfg.OnCheckpoint(signed)
	}
	r.mu.Lock()
	legs := make([]*leg, 0, len(r.legs))
	for _, l := range r.legs {
		legs = append(legs, l)
	}
	r.mu.Unlock()
	for _, l := range legs {
		l.mu.Lock()
		closed := l.closed
		l.mu.Unlock()
		if !closed {
			l.keys.shareCheckpoint(string(signed))
		}
	}
}

// offerCheckpoints hands the checkpoints other members shared to the
// call's watcher, off the leg's event goroutine: checking one may take a
// request to the control plane. A contradiction is the watcher's alarm.
func (r *runner) offerCheckpoints(l *leg, cps []group.PeerCheckpoint) {
	w := r.audit.Load()
	if w == nil {
		return // the call is starting; the next checkpoint comes soon
	}
	l.wg.Go(func() {
		for _, c := range cps {
			if err := w.OfferCheckpoint([]byte(c.Checkpoint)); err != nil {
				r.cfg.Logger.Info("a checkpoint another member shared", "from", c.Participant, "err", err)
			}
		}
	})
}

// startPublishing makes every leg publish, the ones there are now and
// those to come.
func (r *runner) startPublishing() error {
	if r.cfg.NoPublish {
		return nil
	}
	r.mu.Lock()
	r.publishing = true
	legs := make([]*leg, 0, len(r.legs))
	for _, l := range r.legs {
		legs = append(legs, l)
	}
	r.mu.Unlock()
	for _, l := range legs {
		if err := r.publishOn(l); err != nil {
			return err
		}
	}
	return nil
}

// publishOn starts publishing on a leg unless it has closed meanwhile.
func (r *runner) publishOn(l *leg) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil
	}
	if err := r.publish(l); err != nil && !errors.Is(err, client.ErrClosed) {
		return err
	}
	return nil
}

func (r *runner) legOf(cl *client.Leg) *leg {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.legs[cl]
}

// closeLeg stops a leg's goroutines and keeps its key history. The call
// runs it once the leg's session has closed.
func (r *runner) closeLeg(l *leg) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.stopPub()
	close(l.done)
	l.wg.Wait()
	_, _, h := l.keys.final()
	r.mu.Lock()
	r.keyHist = append(r.keyHist, h...)
	r.mu.Unlock()
}

func (r *runner) history() []KeyChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := append([]KeyChange(nil), r.keyHist...)
	sort.SliceStable(h, func(i, j int) bool { return h[i].At.Before(h[j].At) })
	return h
}

// publish starts real-time senders for the audio and video clips on a
// leg, each frame stamped and, unless NoE2EE, encrypted. The call learns
// the leg carries media once it has sent carriedFrames frames.
func (r *runner) publish(l *leg) error {
	video, err := clip.Video()
	if err != nil {
		return err
	}
	audio, err := clip.Audio()
	if err != nil {
		return err
	}
	sess := l.call.Session()
	var vt *client.LocalTrack
	if !r.cfg.NoVideo {
		if vt, err = sess.PublishVideo(client.TrackOptions{}); err != nil {
			return fmt.Errorf("publish video: %w", err)
		}
	}
	var at *client.LocalTrack
	if !r.cfg.NoAudio {
		if at, err = sess.PublishAudio(client.TrackOptions{}); err != nil {
			return fmt.Errorf("publish audio: %w", err)
		}
	}
	m, from, ctx := l.keys.m, window{r.cfg.MeasureFrom, r.cfg.MeasureUntil}, l.pubCtx
	sent := func() {
		if l.sent.Add(1) == carriedFrames {
			l.call.MarkCarried()
		}
	}
	protect := func(buf []byte, codec mediaframe.Codec, plain []byte) ([]byte, error) {
		if r.cfg.NoE2EE {
			return append(buf, plain...), nil
		}
		return m.Protect(buf, codec, plain)
	}
	videoFrame := func() func([]byte, clip.Frame, time.Time) ([]byte, error) {
		var plain []byte
		return func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			plain = stamp.AppendVP8(plain[:0], f.Data, now)
			return protect(buf, mediaframe.VP8, plain)
		}
	}
	var src frameSource = clipSource{clip.NewPlayer(video)}
	if s := r.cfg.Synthetic; s != nil {
		src = newSynthSource(*s, rand.Uint64())
	}
	if vt != nil {
		l.wg.Go(func() {
			n, pkts := play(ctx, src, videoFrame(), vt, from, sent)
			r.sentVideo.Add(n)
			r.sentVideoPkts.Add(pkts)
		})
	}
	if at != nil {
		l.wg.Go(func() {
			var plain []byte
			n, pkts := play(ctx, clipSource{clip.NewPlayer(audio)}, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
				var err error
				if plain, err = stamp.AppendOpus(plain[:0], f.Data, now); err != nil {
					plain = append(plain[:0], f.Data...)
				}
				return protect(buf, mediaframe.Opus, plain)
			}, at, from, sent)
			r.sentAudio.Add(n)
			r.sentAudioPkts.Add(pkts)
		})
	}
	if r.cfg.Screen {
		st, err := sess.PublishVideo(client.TrackOptions{ID: "screen", Source: signal.SourceScreen})
		if err != nil {
			return fmt.Errorf("publish screen: %w", err)
		}
		l.wg.Go(func() {
			n, _ := play(ctx, clipSource{clip.NewPlayer(video)}, videoFrame(), st, from, func() {})
			r.sentScreen.Add(n)
		})
	}
	return nil
}

// play sends frames from src at their real pace until ctx ends, answering
// key-frame requests with a key frame. onSent is called for every frame
// written. It returns the frames, and their packets, sent in the window.
func play(ctx context.Context, src frameSource, frame func([]byte, clip.Frame, time.Time) ([]byte, error), t *client.LocalTrack, from window, onSent func()) (frames, packets int64) {
	buf := make([]byte, 0, 64<<10)
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return frames, packets
		case <-timer.C:
		}
		f := src.next(t.TakeKeyFrameRequest(""))
		now := time.Now()
		data, err := frame(buf[:0], f, now)
		if err != nil {
			// No key yet (before the first epoch): a frame is dropped,
			// never sent in the clear. The clock still advances.
			next = next.Add(f.Duration)
			timer.Reset(time.Until(next))
			continue
		}
		buf = data
		before := t.Packets()
		if err := t.WriteSample(media.Sample{Data: data, Duration: f.Duration}); err != nil {
			if errors.Is(err, client.ErrClosed) {
				return frames, packets
			}
		} else {
			onSent()
			if from.has(now) {
				frames++
				packets += t.Packets() - before
			}
		}
		next = next.Add(f.Duration)
		timer.Reset(time.Until(next))
	}
}

func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p * float64(len(sorted)-1))
	return sorted[i]
}

// Summarize computes latency percentiles over samples in milliseconds.
func Summarize(samples []float64) Latency {
	s := append([]float64(nil), samples...)
	sort.Float64s(s)
	return Latency{P50: percentile(s, 0.50), P95: percentile(s, 0.95), P99: percentile(s, 0.99)}
}

// Latencies are the track's latency samples in milliseconds, for callers
// that aggregate percentiles over many tracks.
func (t TrackReport) Latencies() []float64 { return t.latencies }

// tokenIssued reads the issue time (Unix ms) from a join token's payload,
// which the node also announces as this participant's since. The
// signature is the node's business; this only orders the roster.
func tokenIssued(tok string) int64 {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return 0
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return 0
	}
	var claims struct {
		IssuedAt time.Time `json:"iat"`
	}
	if json.Unmarshal(payload, &claims) != nil {
		return 0
	}
	return claims.IssuedAt.UnixMilli()
}
