package sfu_test

import (
	"errors"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// A participant that joins and then never negotiates (it reads, and so
// keeps its WebSocket alive, but answers no offer and sends none) is
// dropped at the negotiation deadline with a reason of its own, while a
// publisher and a subscriber that did connect their media stay.
func TestNegotiationDeadlineDropsSilentParticipant(t *testing.T) {
	const deadline = 300 * time.Millisecond
	srv := sfutest.Start(t, sfu.Config{NegotiationTimeout: deadline})

	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{})
	bob := join(t, srv, "m", "bob", client.Options{})
	eventually(t, 10*time.Second, "bob receives alice's audio", func() bool {
		return bob.recv.packets("alice", webrtc.RTPCodecTypeAudio) > 0
	})

	began := time.Now()
	mallory := sfutest.Join(t, srv.URL, "mallory", sfutest.Token("m", "mallory", "Mallory"))
	leave := mallory.WaitFor("a leave", func(m signal.Message) bool { return m.Type == signal.TypeLeave })
	took := time.Since(began)
	if leave.Reason != signal.ReasonNegotiationTimeout {
		t.Fatalf("leave reason %q, want %q", leave.Reason, signal.ReasonNegotiationTimeout)
	}
	if took < deadline || took > deadline+3*time.Second {
		t.Fatalf("dropped after %v, want about the %v deadline", took, deadline)
	}
	eventually(t, 5*time.Second, "mallory's Serve returns", func() bool {
		_, done := srv.Result("mallory")
		return done
	})
	if err, _ := srv.Result("mallory"); !errors.Is(err, sfu.ErrNotNegotiated) {
		t.Fatalf("mallory's Serve returned %v, want ErrNotNegotiated", err)
	}

	// The two who connected are past their own deadlines by now (they
	// joined first) and are still served, media still flowing.
	before := bob.recv.packets("alice", webrtc.RTPCodecTypeAudio)
	eventually(t, 10*time.Second, "more of alice's audio at bob", func() bool {
		return bob.recv.packets("alice", webrtc.RTPCodecTypeAudio) > before+10
	})
	for _, id := range []string{"alice", "bob"} {
		if err, done := srv.Result(id); done {
			t.Fatalf("%s was dropped: %v", id, err)
		}
	}
	if n := srv.SFU.Load().Participants; n != 2 {
		t.Fatalf("%d participants, want alice and bob", n)
	}
}

// Without a deadline a participant that never negotiates is not dropped
// for it (the node's WebSocket limits still apply).
func TestNegotiationDeadlineOff(t *testing.T) {
	srv := sfutest.Start(t, sfu.Config{})
	began := time.Now()
	p := sfutest.Join(t, srv.URL, "mallory", sfutest.Token("m", "mallory", "Mallory"))
	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{})
	// mallory is offered alice's tracks and never answers; after the
	// offer, and well past a short deadline, it is still there.
	p.WaitFor("an offer", func(m signal.Message) bool { return m.Type == signal.TypeOffer })
	eventually(t, 10*time.Second, "a second since mallory joined", func() bool { return time.Since(began) > time.Second })
	if !p.Open() {
		t.Fatal("mallory's connection was closed with no deadline set")
	}
	if _, done := srv.Result("mallory"); done {
		t.Fatal("mallory was dropped with no deadline set")
	}
}
