// Package bot is a headless meeting participant: it joins through the
// control plane, takes part in the end-to-end key schedule, publishes the
// committed test clips in real time encrypted with SFrame, decrypts
// everyone else's media, and reports what arrived — packets, frames, loss,
// decryption failures and end-to-end frame latency. `oakmeet bot`, the load generator and the
// system tests are built on it.
package bot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/clip"
	"github.com/oakmeet/oakmeet/e2ee/group"
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
	HTTPClient   *http.Client
	Logger       *slog.Logger
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
	// malformed or replayed; NoKey counts frames that arrived before
	// their epoch's key (normal for a moment after a re-key or join).
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
// then leaves and reports. A refused join is returned as *client.APIError.
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
	if cfg.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, cfg.Duration)
		defer cancel()
	}
	// Publishing stops when ctx ends; receiving goes on for Linger more.
	pubCtx := ctx
	ctx, cancelRecv := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRecv()
	stopRecv := context.AfterFunc(pubCtx, func() {
		time.AfterFunc(cfg.Linger, cancelRecv)
	})
	defer stopRecv()
	jr, err := client.Join(pubCtx, cfg.HTTPClient, cfg.Server, cfg.Meeting, client.JoinRequest{Name: cfg.Name, Country: cfg.Country})
	if err != nil {
		return nil, err
	}
	rep := &Report{ParticipantID: jr.ParticipantID, Node: NodeRef{ID: jr.Node.ID, Country: jr.Node.Country, Region: jr.Node.Region}}
	sess, err := client.Connect(pubCtx, jr, client.Options{Logger: cfg.Logger, HTTPClient: cfg.HTTPClient, LoopbackOnly: cfg.LoopbackOnly})
	if err != nil {
		return rep, fmt.Errorf("connect to node %s: %w", jr.Node.ID, err)
	}

	id := cfg.Identity
	if id == nil {
		if id, err = identity.Generate(); err != nil {
			_ = sess.Close()
			return rep, err
		}
	}
	keys, err := newKeyring(sess, id, cfg.Logger)
	if err != nil {
		_ = sess.Close()
		return rep, fmt.Errorf("end-to-end encryption: %w", err)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()

	var wg sync.WaitGroup
	if cfg.MeasureFrom == nil {
		cfg.MeasureFrom = new(atomic.Int64)
	}
	rx := newReceiver(cfg.MeasureFrom, keys.m)
	// Ready comes before publishing, so a load generator can start every
	// publisher's clock at once.
	if cfg.Ready != nil {
		cfg.Ready(jr.ParticipantID)
	}
	if !cfg.NoPublish {
		if err := publish(pubCtx, sess, keys.m, &wg, &rep.Sent, cfg.MeasureFrom); err != nil {
			_ = sess.Close()
			return rep, err
		}
	}
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			keys.tick()
		case ev, ok := <-sess.Events():
			if !ok {
				break loop
			}
			switch ev.Type {
			case client.EventParticipantJoined:
				keys.joined(ev.Participant)
			case client.EventParticipantLeft:
				keys.left(ev.Participant)
			case client.EventRelay:
				keys.relay(ev.Participant.ID, ev.Payload)
			case client.EventTrackAdded:
				wg.Go(func() { rx.read(ev) })
			case client.EventClosed:
				if ev.Err != nil && !errors.Is(ev.Err, client.ErrClosed) {
					runErr = fmt.Errorf("session ended: %w", ev.Err)
				}
				break loop
			case client.EventError:
				cfg.Logger.Warn("node reported an error", "err", ev.Err)
			}
		}
	}
	keys.send(nil) // record the final epoch
	rep.SecurityCode, rep.Epoch, rep.KeyChanges = keys.code(), keys.m.Epoch(), keys.history
	_ = sess.Close() // ends the readers and publishers
	wg.Wait()
	rep.Tracks = rx.report()
	return rep, runErr
}

// publish starts real-time senders for the audio and video clips.
func publish(ctx context.Context, sess *client.Session, m *group.Member, wg *sync.WaitGroup, sent *SentCounts, from *atomic.Int64) error {
	video, err := clip.Video()
	if err != nil {
		return err
	}
	audio, err := clip.Audio()
	if err != nil {
		return err
	}
	vt, err := sess.PublishVideo(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish video: %w", err)
	}
	at, err := sess.PublishAudio(client.TrackOptions{})
	if err != nil {
		return fmt.Errorf("publish audio: %w", err)
	}
	wg.Go(func() {
		var plain []byte
		sent.VideoFrames = play(ctx, video, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			plain = stamp.AppendVP8(plain[:0], f.Data, now)
			return m.Protect(buf, mediaframe.VP8, plain)
		}, vt, from)
	})
	wg.Go(func() {
		var plain []byte
		sent.AudioFrames = play(ctx, audio, func(buf []byte, f clip.Frame, now time.Time) ([]byte, error) {
			var err error
			if plain, err = stamp.AppendOpus(plain[:0], f.Data, now); err != nil {
				plain = append(plain[:0], f.Data...)
			}
			return m.Protect(buf, mediaframe.Opus, plain)
		}, at, from)
	})
	return nil
}

// play sends a clip's frames at their real pace until ctx ends, answering
// key-frame requests by skipping ahead to the next key frame.
func play(ctx context.Context, c *clip.Clip, frame func([]byte, clip.Frame, time.Time) ([]byte, error), t *client.LocalTrack, from *atomic.Int64) int64 {
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
		} else if now.UnixNano() >= from.Load() {
			sent++
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

func summarize(lat []float64) Latency {
	s := append([]float64(nil), lat...)
	sort.Float64s(s)
	return Latency{P50: percentile(s, 0.50), P95: percentile(s, 0.95), P99: percentile(s, 0.99)}
}

// Latencies are the track's latency samples in milliseconds, for callers
// that aggregate percentiles over many tracks.
func (t TrackReport) Latencies() []float64 { return t.latencies }

// Summarize computes latency percentiles over samples in milliseconds.
func Summarize(samples []float64) Latency { return summarize(samples) }
