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

	r := &runner{cfg: cfg, id: id, pubCtx: pubCtx, rx: newReceiver(cfg.MeasureFrom), notes: make(chan note, 16)}
	cur, err := r.startLeg("")
	if err != nil {
		return nil, err
	}
	rep := &Report{}
	// Ready comes before publishing, so a load generator can start every
	// publisher's clock at once.
	if cfg.Ready != nil {
		cfg.Ready(cur.jr.ParticipantID)
	}
	if err := r.publishOn(cur); err != nil {
		r.closeLeg(cur)
		return rep, err
	}

	legs := make(chan legResult, 1)
	pending := false
	var runErr error
loop:
	for {
		select {
		case <-recvCtx.Done():
			break loop
		case n := <-r.notes:
			if n.leg != cur || pending {
				continue // an old leg closing, or a move already under way
			}
			var reason string
			switch {
			case n.move != "":
				reason = n.move
			case errors.Is(n.closed, client.ErrRemoved):
				runErr = fmt.Errorf("session ended: %w", n.closed)
				break loop
			case n.closed != nil:
				reason = "connection lost: " + n.closed.Error()
			default:
				continue
			}
			if pubCtx.Err() != nil {
				continue // leaving anyway
			}
			pending = true
			from := cur
			go func() {
				l, err := r.rejoin(from)
				legs <- legResult{leg: l, err: err, reason: reason}
			}()
		case res := <-legs:
			pending = false
			if res.err != nil {
				if pubCtx.Err() == nil { // not just the bot leaving mid-move
					runErr = fmt.Errorf("move after %s: %w", res.reason, res.err)
				}
				break loop
			}
			old := cur
			cur = res.leg
			rep.Moves = append(rep.Moves, Move{
				At: time.Now().UTC(), Reason: res.reason,
				From: nodeRef(old.jr.Node), To: nodeRef(cur.jr.Node),
			})
			if err := r.publishOn(cur); err != nil {
				runErr = err
				break loop
			}
			// Make before break: the old connection closes once the new
			// one has carried media, or after a few seconds at most.
			go func() {
				cur.waitSent(pubCtx, 10, 3*time.Second)
				r.closeLeg(old)
			}()
		}
	}
	if pending {
		// The bot is leaving (receiving ends only after publishing has):
		// the move under way fails soon, and a leg it made just before is
		// then in r.legs for closeAll.
		<-legs
	}
	rep.ParticipantID = cur.jr.ParticipantID
	rep.Node = nodeRef(cur.jr.Node)
	rep.SecurityCode, rep.Epoch, _ = cur.keys.final()
	r.closeAll()
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

// runner is one bot's state across its legs.
type runner struct {
	cfg    Config
	id     *identity.Identity
	pubCtx context.Context
	rx     *receiver
	notes  chan note

	sentVideo, sentAudio atomic.Int64

	mu      sync.Mutex
	legs    []*leg
	keyHist []KeyChange
}

// leg is one connection of the bot: a placement, its session, its key
// schedule member and the goroutines that publish and read its media.
type leg struct {
	jr        client.JoinResult
	sess      *client.Session
	keys      *keyring
	stopPub   context.CancelFunc
	sent      atomic.Int64
	wg        sync.WaitGroup
	done      chan struct{}
	closeOnce sync.Once
}

type note struct {
	leg    *leg
	move   string
	closed error
}

type legResult struct {
	leg    *leg
	err    error
	reason string
}

func (r *runner) startLeg(replaces string) (*leg, error) {
	cfg := r.cfg
	jr, err := client.Join(r.pubCtx, cfg.HTTPClient, cfg.Server, cfg.Meeting, client.JoinRequest{Name: cfg.Name, Country: cfg.Country, Replaces: replaces})
	if err != nil {
		return nil, err
	}
	sess, err := client.Connect(r.pubCtx, jr, client.Options{Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, LoopbackOnly: cfg.LoopbackOnly, RelayOnly: cfg.RelayOnly})
	if err != nil {
		return nil, fmt.Errorf("connect to node %s: %w", jr.Node.ID, err)
	}
	keys, err := newKeyring(sess, tokenIssued(jr.Token), r.id, cfg.Logger)
	if err != nil {
		_ = sess.Close()
		return nil, fmt.Errorf("end-to-end encryption: %w", err)
	}
	l := &leg{jr: jr, sess: sess, keys: keys, stopPub: func() {}, done: make(chan struct{})}
	r.mu.Lock()
	r.legs = append(r.legs, l)
	r.mu.Unlock()
	l.wg.Go(func() { r.follow(l) })
	return l, nil
}

// rejoin places the bot again, replacing the participant of leg from,
// retrying for a while: after a node is lost, the control plane needs a
// few seconds to notice.
func (r *runner) rejoin(from *leg) (*leg, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		l, err := r.startLeg(from.jr.ParticipantID)
		if err == nil {
			return l, nil
		}
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status < 500 || time.Now().After(deadline) || r.pubCtx.Err() != nil {
			return nil, err
		}
		r.cfg.Logger.Info("rejoin failed; retrying", "err", err)
		select {
		case <-time.After(time.Second):
		case <-r.pubCtx.Done():
			return nil, r.pubCtx.Err()
		}
	}
}

// follow handles one leg's events: the key schedule, new tracks, and the
// node's requests, which it passes to Run as notes.
func (r *runner) follow(l *leg) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	tell := func(n note) {
		select {
		case r.notes <- n:
		case <-l.done:
		}
	}
	for {
		select {
		case <-l.done:
			return
		case <-tick.C:
			l.keys.tick()
		case ev, ok := <-l.sess.Events():
			if !ok {
				return
			}
			switch ev.Type {
			case client.EventParticipantJoined:
				l.keys.joined(ev.Participant)
			case client.EventParticipantLeft:
				l.keys.left(ev.Participant)
			case client.EventRelay:
				l.keys.relay(ev.Participant.ID, ev.Payload)
			case client.EventTrackAdded:
				l.wg.Go(func() { r.rx.read(ev, l.keys.m) })
			case client.EventMove:
				r.cfg.Logger.Info("node asks to move", "reason", ev.Text)
				tell(note{leg: l, move: ev.Text})
			case client.EventClosed:
				tell(note{leg: l, closed: ev.Err})
				return
			case client.EventError:
				r.cfg.Logger.Warn("node reported an error", "err", ev.Err)
			}
		}
	}
}

func (r *runner) publishOn(l *leg) error {
	if r.cfg.NoPublish {
		return nil
	}
	ctx, cancel := context.WithCancel(r.pubCtx)
	l.stopPub = cancel
	return r.publish(ctx, l)
}

// waitSent returns once the leg has sent n frames, or after d.
func (l *leg) waitSent(ctx context.Context, n int64, d time.Duration) {
	deadline := time.Now().Add(d)
	for l.sent.Load() < n && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond) // polling a counter the publisher owns
	}
}

func (r *runner) closeLeg(l *leg) {
	l.closeOnce.Do(func() {
		l.stopPub()
		_, _, h := l.keys.final()
		r.mu.Lock()
		r.keyHist = append(r.keyHist, h...)
		r.mu.Unlock()
		close(l.done)
		_ = l.sess.Close() // ends its readers and publishers
		l.wg.Wait()
	})
}

func (r *runner) closeAll() {
	r.mu.Lock()
	legs := append([]*leg(nil), r.legs...)
	r.mu.Unlock()
	for _, l := range legs {
		r.closeLeg(l)
	}
}

func (r *runner) history() []KeyChange {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := append([]KeyChange(nil), r.keyHist...)
	sort.SliceStable(h, func(i, j int) bool { return h[i].At.Before(h[j].At) })
	return h
}

// publish starts real-time senders for the audio and video clips on a
// leg, each frame stamped and encrypted.
func (r *runner) publish(ctx context.Context, l *leg) error {
	video, err := clip.Video()
	if err != nil {
		return err
	}
	audio, err := clip.Audio()
	if err != nil {
		return err
	}
	vt, err := l.sess.PublishVideo(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish video: %w", err)
	}
	at, err := l.sess.PublishAudio(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish audio: %w", err)
	}
	m, from := l.keys.m, r.cfg.MeasureFrom
	l.wg.Go(func() {
		var plain []byte
		n := play(ctx, video, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			plain = stamp.AppendVP8(plain[:0], f.Data, now)
			return m.Protect(buf, mediaframe.VP8, plain)
		}, vt, from, &l.sent)
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
		}, at, from, &l.sent)
		r.sentAudio.Add(n)
	})
	return nil
}

// play sends a clip's frames at their real pace until ctx ends, answering
// key-frame requests by skipping ahead to the next key frame.
func play(ctx context.Context, c *clip.Clip, frame func([]byte, clip.Frame, time.Time) ([]byte, error), t *client.LocalTrack, from *atomic.Int64, legSent *atomic.Int64) int64 {
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
			legSent.Add(1)
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
