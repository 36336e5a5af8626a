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
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/clip"
	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/stamp"
)

// Config describes one bot.
type Config struct {
	Server  string // control plane URL
	Meeting string
	Name    string
	Country string // location hint, where the deployment trusts hints
	// Duration is how long the bot stays; zero means until ctx ends.
	Duration time.Duration
	// NoPublish makes a receive-only bot (load generator subscribers).
	NoPublish bool
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
	// Identity is the bot's long-term identity key; nil makes a fresh one.
	Identity *identity.Identity
	// Ready, if set, is called once the bot is connected, before it
	// publishes; it may block to hold the bot back.
	Ready func(participantID string)
	// RejoinTimeout, RejoinPause and HandoverTimeout are the call's, for
	// when the bot moves (see client.CallConfig; zero takes its default).
	// A test cluster that notices a lost node in a second has the bot
	// retry sooner than production would.
	RejoinTimeout   time.Duration
	RejoinPause     time.Duration
	HandoverTimeout time.Duration
}

// Report is what a bot saw. Field names are part of `oakmeet bot --json`.
type Report struct {
	ParticipantID string  `json:"participant_id"`
	Node          NodeRef `json:"node"`
	// SecurityCode and Epoch are the end-to-end encryption state when the
	// bot left: every member of the meeting shows the same code.
	Moves        []Move        `json:"moves,omitempty"`
	SecurityCode string        `json:"security_code"`
	Epoch        uint64        `json:"epoch"`
	KeyChanges   []KeyChange   `json:"key_changes"`
	Sent         SentCounts    `json:"sent"`
	Tracks       []TrackReport `json:"tracks"`
}

// NodeRef names the node the bot was placed on.
type NodeRef struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
}

func nodeRef(n client.NodeInfo) NodeRef {
	return NodeRef{ID: n.ID, Country: n.Country, Region: n.Region}
}

// SentCounts is what the bot published.
type SentCounts struct {
	VideoFrames int64 `json:"video_frames"`
	AudioFrames int64 `json:"audio_frames"`
}

// TrackReport is one remote track the bot received.
type TrackReport struct {
	ParticipantID string `json:"participant_id"`
	TrackID       string `json:"track_id"`
	Kind          string `json:"kind"` // "audio" or "video"
	Packets       int64  `json:"packets"`
	Bytes         int64  `json:"bytes"`
	Frames        int64  `json:"frames"`
	Lost          int64  `json:"lost"` // packets never received, after retransmission
	// DecryptFailures counts frames that failed authentication or were
	// malformed or replayed; NoKey counts frames under a key this member
	// did not hold (normal for a moment after a re-key or join).
	DecryptFailures int64   `json:"decrypt_failures"`
	NoKey           int64   `json:"no_key"`
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
// closes. A refused join is returned as *client.APIError.
func Run(ctx context.Context, cfg Config) (*Report, error) {
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

	r := &runner{cfg: cfg, id: id, pubCtx: pubCtx, rx: newReceiver(cfg.MeasureFrom), legs: map[*client.Leg]*leg{}}
	// The call joins, and moves, with pubCtx: a bot that is leaving does
	// not move any more.
	call, err := client.StartCall(pubCtx, client.CallConfig{
		Server: cfg.Server, Meeting: cfg.Meeting,
		Join:            client.JoinRequest{Name: cfg.Name, Country: cfg.Country},
		Options:         client.Options{Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, LoopbackOnly: cfg.LoopbackOnly, RelayOnly: cfg.RelayOnly},
		HTTPClient:      cfg.HTTPClient,
		RejoinTimeout:   cfg.RejoinTimeout,
		RejoinPause:     cfg.RejoinPause,
		HandoverTimeout: cfg.HandoverTimeout,
		OnLeg:           r.onLeg,
	})
	if err != nil {
		return nil, err
	}
	rep := &Report{}
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
	}
	cur := r.legOf(call.Current())
	rep.ParticipantID = cur.call.ID()
	rep.Node = nodeRef(cur.call.Node())
	for _, m := range call.Moves() {
		rep.Moves = append(rep.Moves, Move{At: m.At, Reason: m.Reason, From: nodeRef(m.From), To: nodeRef(m.To)})
	}
	rep.SecurityCode, rep.Epoch, _ = cur.keys.final()
	_ = call.Close()
	rep.KeyChanges = r.history()
	rep.Sent = SentCounts{VideoFrames: r.sentVideo.Load(), AudioFrames: r.sentAudio.Load()}
	rep.Tracks = r.rx.report()
	return rep, runErr
}

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

	sentVideo, sentAudio atomic.Int64

	mu         sync.Mutex
	legs       map[*client.Leg]*leg // every leg the call made
	publishing bool                 // Ready has returned: every leg publishes
	keyHist    []KeyChange
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
	keys, err := newKeyring(cl.Session(), tokenIssued(cl.Join().Token), r.id, r.cfg.Logger)
	if err != nil {
		return client.LegHooks{}, fmt.Errorf("end-to-end encryption: %w", err)
	}
	l := &leg{call: cl, keys: keys, done: make(chan struct{})}
	l.pubCtx, l.stopPub = context.WithCancel(r.pubCtx)
	l.wg.Go(func() {
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-l.done:
				return
			case <-tick.C:
				l.keys.tick()
			}
		}
	})
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

// event handles one leg's events: the key schedule and new tracks.
func (r *runner) event(l *leg, ev client.Event) {
	switch ev.Type {
	case client.EventParticipantJoined:
		l.keys.joined(ev.Participant)
	case client.EventParticipantLeft:
		l.keys.left(ev.Participant)
	case client.EventRelay:
		l.keys.relay(ev.Participant.ID, ev.Payload)
	case client.EventTrackAdded:
		l.wg.Go(func() { r.rx.read(ev, l.keys.m) })
	case client.EventError:
		r.cfg.Logger.Warn("node reported an error", "err", ev.Err)
	}
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
// leg, each frame stamped and encrypted. The call learns the leg carries
// media once it has sent carriedFrames frames.
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
	vt, err := sess.PublishVideo(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish video: %w", err)
	}
	at, err := sess.PublishAudio(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish audio: %w", err)
	}
	m, from, ctx := l.keys.m, r.cfg.MeasureFrom, l.pubCtx
	sent := func() {
		if l.sent.Add(1) == carriedFrames {
			l.call.MarkCarried()
		}
	}
	l.wg.Go(func() {
		var plain []byte
		n := play(ctx, video, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			plain = stamp.AppendVP8(plain[:0], f.Data, now)
			return m.Protect(buf, mediaframe.VP8, plain)
		}, vt, from, sent)
		r.sentVideo.Add(n)
	})
	l.wg.Go(func() {
		var plain []byte
		n := play(ctx, audio, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			var err error
			if plain, err = stamp.AppendOpus(plain[:0], f.Data, now); err != nil {
				plain = append(plain[:0], f.Data...)
			}
			return m.Protect(buf, mediaframe.Opus, plain)
		}, at, from, sent)
		r.sentAudio.Add(n)
	})
	return nil
}

// play sends a clip's frames at their real pace until ctx ends, answering
// key-frame requests by skipping ahead to the next key frame. onSent is
// called for every frame written.
func play(ctx context.Context, c *clip.Clip, frame func([]byte, clip.Frame, time.Time) ([]byte, error), t *client.LocalTrack, from *atomic.Int64, onSent func()) int64 {
	p := clip.NewPlayer(c)
	buf := make([]byte, 0, 64<<10)
	var sent int64
	next := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return sent
		case <-timer.C:
		}
		if t.TakeKeyFrameRequest("") {
			p.SkipToKey()
		}
		f := p.Next()
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
		if err := t.WriteSample(media.Sample{Data: data, Duration: f.Duration}); err != nil {
			if errors.Is(err, client.ErrClosed) {
				return sent
			}
		} else {
			onSent()
			if now.UnixNano() >= from.Load() {
				sent++
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
