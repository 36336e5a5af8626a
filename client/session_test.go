package client_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

func connect(t *testing.T, srv *sfutest.Server, id string, opts client.Options) *client.Session {
	t.Helper()
	opts.LoopbackOnly = true
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := client.Connect(ctx, client.JoinResult{ParticipantID: id, Node: client.NodeInfo{URL: srv.URL}, Token: sfutest.Token("m", id, id)}, opts)
	if err != nil {
		t.Fatalf("connect %s: %v", id, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestSessionPublishTransformAndUnpublish(t *testing.T) {
	srv := sfutest.Start(t, sfu.Config{})
	marker := []byte("SFRAME")
	pub := connect(t, srv, "pub", client.Options{Transform: func(id string, kind webrtc.RTPCodecType, frame []byte) ([]byte, error) {
		return append(append([]byte(nil), frame...), marker...), nil
	}})
	sub := connect(t, srv, "sub", client.Options{})

	track, err := pub.PublishVideo(client.TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var sawMarker, removed, closed bool
	var chat string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range sub.Events() {
			switch e.Type {
			case client.EventTrackAdded:
				if e.Participant.ID != "pub" || e.Info.Kind != "video" {
					t.Errorf("track event %+v", e)
				}
				go func() {
					for {
						p, _, err := e.Track.ReadRTP()
						if err != nil {
							return
						}
						if bytes.HasSuffix(p.Payload, marker) {
							mu.Lock()
							sawMarker = true
							mu.Unlock()
						}
					}
				}()
			case client.EventTrackRemoved:
				mu.Lock()
				removed = true
				mu.Unlock()
			case client.EventChat:
				mu.Lock()
				chat = e.Participant.ID + ": " + e.Text
				mu.Unlock()
			case client.EventClosed:
				mu.Lock()
				closed = true
				mu.Unlock()
			}
		}
	}()
	feeding := true
	until := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			// Frames stand in for a camera: one every 33 ms.
			time.Sleep(33 * time.Millisecond)
			if !feeding {
				continue
			}
			key := track.TakeKeyFrameRequest("")
			frame := []byte{0x11, 0x02, 0x00, 1, 2, 3}
			if key {
				frame[0] = 0x10
			}
			if err := track.WriteSample(media.Sample{Data: frame, Duration: 33 * time.Millisecond}); err != nil {
				t.Fatalf("write sample: %v (cause %v)", err, pub.Err())
			}
		}
	}
	until("transformed frames at the subscriber", func() bool { return sawMarker })

	if err := pub.SendChat("hello"); err != nil {
		t.Fatal(err)
	}
	until("chat", func() bool { return chat == "pub: hello" })

	feeding = false
	if err := track.Stop(); err != nil {
		t.Fatal(err)
	}
	until("track removed", func() bool { return removed })
	if err := track.WriteSample(media.Sample{Data: []byte{0x10}}); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("write on a stopped track: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pub.SendChat("late"); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("chat after close: %v", err)
	}
	if err := sub.Close(); err != nil {
		t.Fatal(err)
	}
	<-done
	if !closed {
		t.Fatal("no closed event before Events was closed")
	}
}

func TestConnectRefused(t *testing.T) {
	srv := sfutest.Start(t, sfu.Config{})
	_, err := client.Connect(context.Background(), client.JoinResult{Node: client.NodeInfo{URL: srv.URL}, Token: "forged"}, client.Options{LoopbackOnly: true})
	var se *client.ServerError
	if !errors.As(err, &se) || se.Code != "bad_token" {
		t.Fatalf("Connect with a bad token: %v", err)
	}
}
