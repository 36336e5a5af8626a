package sfu_test

import (
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// errorCount is how many error messages with code p has received.
func errorCount(p *participant, code string) int {
	p.recv.mu.Lock()
	defer p.recv.mu.Unlock()
	n := 0
	for _, e := range p.recv.events {
		var se *client.ServerError
		if e.Type == client.EventError && errors.As(e.Err, &se) && se.Code == code {
			n++
		}
	}
	return n
}

func TestBadInputGetsErrorAndMeetingStaysIntact(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	mallory := join(t, srv, "m", "mallory", client.Options{})
	mallory.publish(mediaOpts{keyEvery: 30})
	eventually(t, 10*time.Second, "media both ways", func() bool {
		return alice.recv.packets("mallory", video) > 10 && mallory.recv.packets("alice", video) > 10
	})

	bad := []struct {
		msg  string
		code string
	}{
		{`{"v":1,"type":"offer","sdp":"this is not sdp"}`, sfu.CodeBadSDP},
		{`{"v":1,"type":"offer","sdp":"v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"}`, sfu.CodeBadSDP},
		// No subscribe offer is outstanding (the client answered it), so
		// any answer is unexpected before its SDP is looked at.
		{`{"v":1,"type":"answer","sdp":"garbage"}`, sfu.CodeUnexpectedAnswer},
		{`{"v":1,"type":"teleport"}`, signal.CodeUnknownType},
		{`{"v":1,"type":"offer","sdp":"v=0","sources":{"0":"webcam"}}`, signal.CodeBadSources},
		{`{"v":1,"type":"welcome","id":"x"}`, sfu.CodeUnexpectedType},
		{`{"v":7,"type":"chat","text":"hi"}`, signal.CodeUnsupportedVersion},
		{`{"v":1,"type":"chat","text":`, signal.CodeBadJSON},
		{`{"v":1,"type":"chat","text":"` + strings.Repeat("x", 100<<10) + `"}`, signal.CodeTooLarge},
		{`{"v":1,"type":"candidate","target":"publish","candidate":{"candidate":"candidate:nonsense"}}`, sfu.CodeBadCandidate},
		{`{"v":1,"type":"relay","to":"nobody","payload":{}}`, sfu.CodeUnknownTarget},
		{`{"v":1,"type":"subscribe","track_id":"nope","layer":"low"}`, sfu.CodeUnknownTrack},
	}
	for _, b := range bad {
		// Counted, not merely seen: several messages share a code, and each
		// must get its own answer.
		before := errorCount(mallory, b.code)
		if err := mallory.s.SendRaw([]byte(b.msg)); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "error "+b.code+" for "+b.msg[:min(len(b.msg), 60)], func() bool {
			return errorCount(mallory, b.code) > before
		})
	}

	// Nobody was disconnected and media still flows both ways.
	if got := srv.SFU.Participants("m"); len(got) != 2 {
		t.Fatalf("participants after bad input: %v", got)
	}
	a, m := alice.recv.packets("mallory", video), mallory.recv.packets("alice", video)
	eventually(t, 5*time.Second, "media keeps flowing", func() bool {
		return alice.recv.packets("mallory", video) > a+10 && mallory.recv.packets("alice", video) > m+10
	})
	// Signaling still works too.
	if err := mallory.s.SendChat("still here"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "alice gets the chat", func() bool {
		return alice.recv.has(func(e client.Event) bool {
			return e.Type == client.EventChat && e.Text == "still here" && e.Participant.ID == "mallory" && !e.Time.IsZero()
		})
	})
}

func TestRelayIsOpaqueAndStampedWithSender(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	a := join(t, srv, "m", "a", client.Options{})
	b := join(t, srv, "m", "b", client.Options{})
	c := join(t, srv, "m", "c", client.Options{})
	eventually(t, 5*time.Second, "everyone joined", func() bool { return len(srv.SFU.Participants("m")) == 3 })

	// A forged "from" is replaced by the node.
	if err := a.s.SendRaw([]byte(`{"v":1,"type":"relay","to":"b","from":"c","payload":{"epoch":1,"sealed":"AAEC"}}`)); err != nil {
		t.Fatal(err)
	}
	if err := a.s.SendRelay("", []byte{0, 1, 2, 0xff}); err != nil {
		t.Fatal(err)
	}
	relay := func(p *participant, payload string) func() bool {
		return func() bool {
			return p.recv.has(func(e client.Event) bool {
				return e.Type == client.EventRelay && e.Participant.ID == "a" && string(e.Payload) == payload
			})
		}
	}
	eventually(t, 5*time.Second, "b gets the directed relay", relay(b, `{"epoch":1,"sealed":"AAEC"}`))
	eventually(t, 5*time.Second, "b gets the broadcast relay", relay(b, `"AAEC/w=="`))
	eventually(t, 5*time.Second, "c gets the broadcast relay", relay(c, `"AAEC/w=="`))
	if c.recv.has(func(e client.Event) bool {
		return e.Type == client.EventRelay && strings.Contains(string(e.Payload), "epoch")
	}) {
		t.Fatal("a relay addressed to b reached c")
	}
	if a.recv.has(func(e client.Event) bool { return e.Type == client.EventRelay }) {
		t.Fatal("a broadcast relay came back to its sender")
	}
}

func TestKickAndReconnect(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	a := join(t, srv, "m", "a", client.Options{})
	b := join(t, srv, "m", "b", client.Options{})
	eventually(t, 5*time.Second, "both joined", func() bool { return len(srv.SFU.Participants("m")) == 2 })

	srv.SFU.Kick("m", "b", "policy moved the meeting")
	eventually(t, 5*time.Second, "b is told why it was removed", func() bool {
		return b.recv.has(func(e client.Event) bool {
			return e.Type == client.EventClosed && errors.Is(e.Err, client.ErrRemoved) && strings.Contains(e.Err.Error(), "policy moved")
		})
	})
	// Serve returns once the WebSocket close handshake is done; the Go
	// client answers it only when closed, so the node waits out the
	// WebSocket library's 5 s close timeout.
	eventually(t, 10*time.Second, "Serve returns ErrKicked", func() bool {
		err, ok := srv.Result("b")
		return ok && errors.Is(err, sfu.ErrKicked)
	})
	eventually(t, 5*time.Second, "a sees b leave", func() bool {
		return a.recv.has(func(e client.Event) bool { return e.Type == client.EventParticipantLeft && e.Participant.ID == "b" })
	})

	// The same participant connecting twice: the newer connection wins.
	a2 := join(t, srv, "m", "a", client.Options{})
	eventually(t, 5*time.Second, "the older connection is replaced", func() bool {
		return a.recv.has(func(e client.Event) bool { return e.Type == client.EventClosed && errors.Is(e.Err, client.ErrRemoved) })
	})
	if got := srv.SFU.Participants("m"); len(got) != 1 || got[0] != "a" {
		t.Fatalf("participants = %v", got)
	}
	_ = a2
}

// A kick that comes before the participant's connection reaches its room
// (the control plane hears of the connection first and may remove it at
// once) still holds: the connection is refused with the kick's reason,
// and nobody sees it join.
func TestKickBeforeTheConnectionArrives(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	srv.SFU.Kick("m", "early", "removed by the host")
	a := join(t, srv, "m", "a", client.Options{})
	srv.SFU.Kick("m", "b", "removed by the host")
	for _, id := range []string{"early", "b"} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		jr := client.JoinResult{ParticipantID: id, Node: client.NodeInfo{ID: "n1", URL: srv.URL}, Token: sfutest.Token("m", id, "name-"+id)}
		s, err := client.Connect(ctx, jr, client.Options{LoopbackOnly: true})
		cancel()
		if err == nil {
			_ = s.Close()
			t.Fatalf("%s: a kicked participant connected", id)
		}
		if !strings.Contains(err.Error(), "removed by the host") {
			t.Fatalf("%s: refused with %v", id, err)
		}
		eventually(t, 10*time.Second, id+": Serve returns ErrKicked", func() bool {
			err, ok := srv.Result(id)
			return ok && errors.Is(err, sfu.ErrKicked)
		})
	}
	if a.recv.has(func(e client.Event) bool { return e.Type == client.EventParticipantJoined && e.Participant.ID == "b" }) {
		t.Fatal("a saw the kicked participant join")
	}
}

func TestNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		srv := sfutest.Start(t, sfu.Config{})
		ps := []*participant{join(t, srv, "m", "a", client.Options{}), join(t, srv, "m", "b", client.Options{})}
		for _, p := range ps {
			p.publish(mediaOpts{simulcast: []string{"q", "f"}})
		}
		eventually(t, 10*time.Second, "media flows", func() bool {
			return ps[0].recv.packets("b", video) > 10 && ps[1].recv.packets("a", video) > 10
		})
		for _, p := range ps {
			p.close()
		}
		srv.Close()
	}()
	eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= before
	})
}
