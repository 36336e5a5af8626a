package sfu_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtcp"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

func joinedEvent(p *participant, id string) func() bool {
	return func() bool {
		return p.recv.has(func(e client.Event) bool {
			return e.Type == client.EventParticipantJoined && e.Participant.ID == id && e.Participant.Since > 0
		})
	}
}

func relayed(p *participant, from, payload string) func() bool {
	return func() bool {
		return p.recv.has(func(e client.Event) bool {
			return e.Type == client.EventRelay && e.Participant.ID == from && string(e.Payload) == payload
		})
	}
}

// noRelays reports whether neither node lists a relay link.
func noRelays(a, b *sfutest.Server) func() bool {
	return func() bool { return len(a.SFU.Relays()) == 0 && len(b.SFU.Relays()) == 0 }
}

func receives(t *testing.T, rx *participant, rxID, tx string) {
	t.Helper()
	eventually(t, 20*time.Second, rxID+" receives "+tx, func() bool {
		return rx.recv.packets(tx, audio) >= 20 && rx.recv.packets(tx, video) >= 20
	})
}

func TestRelayLinkJoinsTwoNodes(t *testing.T) {
	t.Parallel()
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	bob := join(t, b, "m", "bob", client.Options{})
	bob.publish(mediaOpts{keyEvery: 30})
	carol := join(t, b, "m", "carol", client.Options{})
	done := sfutest.Link(t, "m", a, "node-a", b, "node-b")

	receives(t, bob, "bob", "alice")
	receives(t, carol, "carol", "alice")
	receives(t, carol, "carol", "bob")
	receives(t, alice, "alice", "bob")
	eventually(t, 5*time.Second, "roster crosses the link", func() bool {
		return joinedEvent(alice, "bob")() && joinedEvent(alice, "carol")() && joinedEvent(bob, "alice")()
	})
	// Each remote track arrives once, and a subscriber never gets its own.
	if n := alice.recv.packets("alice", video); n != 0 {
		t.Fatalf("alice received %d packets of her own video", n)
	}

	// Chat and end-to-end relay messages cross, stamped with the sender.
	if err := alice.s.SendChat("hello from a"); err != nil {
		t.Fatal(err)
	}
	if err := alice.s.SendRelay("carol", []byte(`{"to":"carol"}`)); err != nil {
		t.Fatal(err)
	}
	if err := bob.s.SendRelay("", []byte(`{"all":1}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "bob gets alice's chat", func() bool {
		return bob.recv.has(func(e client.Event) bool {
			return e.Type == client.EventChat && e.Text == "hello from a" && e.Participant.ID == "alice"
		})
	})
	eventually(t, 5*time.Second, "carol gets alice's directed relay", relayed(carol, "alice", `{"to":"carol"}`))
	eventually(t, 5*time.Second, "alice gets bob's broadcast relay", relayed(alice, "bob", `{"all":1}`))
	eventually(t, 5*time.Second, "carol gets bob's broadcast relay", relayed(carol, "bob", `{"all":1}`))
	if bob.recv.has(func(e client.Event) bool { return e.Type == client.EventRelay && e.Participant.ID == "alice" }) {
		t.Fatal("a relay for carol reached bob")
	}

	// Relay bytes count for the meeting, and both ends list the link.
	for name, s := range map[string]*sfutest.Server{"a": a, "b": b} {
		rs := s.SFU.Relays()
		if len(rs) != 1 || rs[0].Meeting != "m" || !rs[0].Connected || rs[0].BytesSent == 0 || rs[0].BytesReceived == 0 {
			t.Fatalf("node %s relays = %+v", name, rs)
		}
	}
	if got := a.SFU.Relays()[0]; got.Peer != "node-b" || !got.Dialer || got.TracksSent != 2 || got.TracksReceived != 2 || got.Participants != 2 {
		t.Fatalf("node a relay = %+v", got)
	}
	if a.SFU.MeetingBytes()["m"] < a.SFU.Relays()[0].BytesSent {
		t.Fatalf("meeting bytes %d do not include the %d relayed", a.SFU.MeetingBytes()["m"], a.SFU.Relays()[0].BytesSent)
	}
	if got := b.SFU.Participants("m"); len(got) != 2 {
		t.Fatalf("node b's own participants = %v", got)
	}

	// Alice leaves node a: she disappears on node b.
	alice.close()
	for name, p := range map[string]*participant{"bob": bob, "carol": carol} {
		eventually(t, 10*time.Second, name+" sees alice leave", func() bool {
			a, _, _ := p.recv.stats("alice", audio)
			v, _, _ := p.recv.stats("alice", video)
			return a.removed && v.removed && p.recv.has(func(e client.Event) bool {
				return e.Type == client.EventParticipantLeft && e.Participant.ID == "alice"
			})
		})
	}

	// Closing the link ends both sides.
	if !a.SFU.CloseLink("m", "node-b") {
		t.Fatal("CloseLink found no link")
	}
	select {
	case res := <-done:
		if !errors.Is(res.A, sfu.ErrLinkClosed) || res.B == nil {
			t.Fatalf("ServeLink results %+v", res)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("link did not end on both sides")
	}
	eventually(t, 5*time.Second, "both ends drop the link", noRelays(a, b))
}

func TestRelayLinkCloseWithdrawsAndRelinkRestores(t *testing.T) {
	t.Parallel()
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	bob := join(t, b, "m", "bob", client.Options{})
	sfutest.Link(t, "m", a, "node-a", b, "node-b")
	eventually(t, 20*time.Second, "bob receives alice", func() bool { return bob.recv.packets("alice", video) > 20 })

	b.SFU.CloseLink("m", "node-a")
	eventually(t, 10*time.Second, "alice's tracks and presence withdrawn at bob", func() bool {
		v, _, _ := bob.recv.stats("alice", video)
		return v.removed && v.ended && bob.recv.has(func(e client.Event) bool {
			return e.Type == client.EventParticipantLeft && e.Participant.ID == "alice"
		})
	})
	eventually(t, 5*time.Second, "both ends drop the link", noRelays(a, b))

	sfutest.Link(t, "m", a, "node-a", b, "node-b")
	eventually(t, 20*time.Second, "bob receives alice again on a new track", func() bool {
		n := 0
		bob.recv.mu.Lock()
		for _, ts := range bob.recv.tracks {
			if ts.publisher == "alice" && ts.kind == video && !ts.removed && ts.packets > 20 {
				n++
			}
		}
		bob.recv.mu.Unlock()
		return n == 1
	})
}

func TestRelayKeyFramesAndNACKCrossTheLink(t *testing.T) {
	t.Parallel()
	// Node a's outgoing video (to the link among others) loses packets on
	// first send: only a retransmission asked for by node b fills the gaps.
	drop := &dropOnce{dropped: map[uint32]map[uint16]bool{}}
	a := sfutest.Start(t, sfu.Config{Interceptors: []interceptor.Factory{drop}})
	b := sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	// Key frames only when asked for: bob's first key frame proves that his
	// node's request crossed the link and reached alice.
	alice.publish(mediaOpts{noAudio: true, frameBytes: 2500})
	sfutest.Link(t, "m", a, "node-a", b, "node-b")
	bob := join(t, b, "m", "bob", client.Options{})

	const span = 200
	eventually(t, 20*time.Second, "bob receives a complete run of packets", func() bool {
		ts, _, ok := bob.recv.stats("alice", video)
		return ok && ts.keyFrames > 0 && completeRun(ts, span)
	})
	ts, _, _ := bob.recv.stats("alice", video)
	if !ts.firstIsKey {
		t.Fatal("bob's first video packet was not a key frame")
	}
	drop.mu.Lock()
	dropped := drop.count
	drop.mu.Unlock()
	if dropped == 0 || a.SFU.Stats().Retransmits == 0 || b.SFU.Stats().PLISent == 0 {
		t.Fatalf("dropped %d, node a retransmitted %d, node b sent %d PLIs", dropped, a.SFU.Stats().Retransmits, b.SFU.Stats().PLISent)
	}
	// A late key frame request from bob's side also reaches alice.
	before := ts.keyFrames
	_, sub := bob.s.PeerConnections()
	if err := sub.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: ts.ssrc}}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "a requested key frame arrives", func() bool {
		ts, _, _ := bob.recv.stats("alice", video)
		return ts.keyFrames > before
	})
}

func TestRelaySimulcastLayersCross(t *testing.T) {
	t.Parallel()
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	alice.publish(mediaOpts{simulcast: []string{"q", "f"}, keyEvery: 30, noAudio: true})
	sfutest.Link(t, "m", a, "node-a", b, "node-b")
	bob := join(t, b, "m", "bob", client.Options{})
	eventually(t, 20*time.Second, "bob gets the high layer", func() bool {
		ts, _, ok := bob.recv.stats("alice", video)
		return ok && ts.lastLayer == 'f' && ts.layers['f'] > 5
	})
	_, id, _ := bob.recv.stats("alice", video)
	if err := bob.s.Subscribe(id, "low"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "bob switches to the low layer", func() bool {
		ts, _, _ := bob.recv.stats("alice", video)
		return ts.lastLayer == 'q' && ts.layers['q'] > 5
	})
}

func TestRelayFullMeshOfThreeNodes(t *testing.T) {
	t.Parallel()
	nodes := map[string]*sfutest.Server{}
	ids := []string{"n1", "n2", "n3"}
	ps := map[string]*participant{}
	for _, id := range ids {
		nodes[id] = sfutest.Start(t, sfu.Config{})
		ps[id] = join(t, nodes[id], "m", "p-"+id, client.Options{})
		ps[id].publish(mediaOpts{keyEvery: 30})
	}
	sfutest.Link(t, "m", nodes["n1"], "n1", nodes["n2"], "n2")
	sfutest.Link(t, "m", nodes["n1"], "n1", nodes["n3"], "n3")
	sfutest.Link(t, "m", nodes["n2"], "n2", nodes["n3"], "n3")
	for _, rx := range ids {
		for _, tx := range ids {
			if rx != tx {
				receives(t, ps[rx], "p-"+rx, "p-"+tx)
			}
		}
	}
	// No loops: every participant gets each remote track exactly once,
	// and each link carries only its ends' own participants' tracks.
	for _, rx := range ids {
		ps[rx].recv.mu.Lock()
		n := len(ps[rx].recv.tracks)
		ps[rx].recv.mu.Unlock()
		if n != 4 {
			t.Fatalf("p-%s receives %d tracks, want 4", rx, n)
		}
		for _, r := range nodes[rx].SFU.Relays() {
			if r.TracksSent != 2 || r.TracksReceived != 2 || r.Participants != 1 {
				t.Fatalf("node %s relay %+v", rx, r)
			}
		}
	}
}

func TestRelayNoGoroutinesLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
		alice := join(t, a, "m", "alice", client.Options{})
		alice.publish(mediaOpts{simulcast: []string{"q", "f"}})
		bob := join(t, b, "m", "bob", client.Options{})
		bob.publish(mediaOpts{})
		done := sfutest.Link(t, "m", a, "node-a", b, "node-b")
		eventually(t, 20*time.Second, "media crosses", func() bool {
			return alice.recv.packets("bob", video) > 10 && bob.recv.packets("alice", video) > 10
		})
		alice.close()
		bob.close()
		a.Close()
		b.Close()
		res := <-done
		if !errors.Is(res.A, sfu.ErrClosed) && !errors.Is(res.B, sfu.ErrClosed) {
			t.Fatalf("link results after closing the nodes: %+v", res)
		}
	}()
	eventually(t, 10*time.Second, "goroutines back to the baseline", func() bool {
		return runtime.NumGoroutine() <= before
	})
}

func TestRelayRefusesSDPNotSignedByThePeer(t *testing.T) {
	t.Parallel()
	a, b := sfutest.Start(t, sfu.Config{}), sfutest.Start(t, sfu.Config{})
	alice := join(t, a, "m", "alice", client.Options{})
	alice.publish(mediaOpts{keyEvery: 30})
	pa, ka, _ := ed25519.GenerateKey(nil)
	_, kb, _ := ed25519.GenerateKey(nil)
	mallory, _, _ := ed25519.GenerateKey(nil)
	binding := []byte("transcript")
	ca, cb := sfutest.Pipe()
	errA := make(chan error, 1)
	go func() {
		errA <- a.SFU.ServeLink(context.Background(), ca, sfu.Link{Meeting: "m", Self: "a", Peer: "b", Key: ka, PeerKey: mallory, Binding: binding})
	}()
	go func() {
		_ = b.SFU.ServeLink(context.Background(), cb, sfu.Link{Meeting: "m", Self: "b", Peer: "a", Key: kb, PeerKey: pa, Binding: binding})
	}()
	select {
	case err := <-errA:
		if !errors.Is(err, sfu.ErrBadSignature) {
			t.Fatalf("ServeLink = %v, want ErrBadSignature", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a link whose peer signs with another key stayed up")
	}
	eventually(t, 5*time.Second, "both ends drop the link", noRelays(a, b))
}

func TestServeLinkRejectsIncompleteLinks(t *testing.T) {
	a := sfutest.Start(t, sfu.Config{})
	pub, key, _ := ed25519.GenerateKey(nil)
	good := sfu.Link{Meeting: "m", Self: "a", Peer: "b", Key: key, PeerKey: pub, Binding: []byte("x")}
	for name, mutate := range map[string]func(*sfu.Link){
		"no meeting":  func(l *sfu.Link) { l.Meeting = "" },
		"no peer":     func(l *sfu.Link) { l.Peer = "" },
		"to itself":   func(l *sfu.Link) { l.Peer = l.Self },
		"no key":      func(l *sfu.Link) { l.Key = nil },
		"no peer key": func(l *sfu.Link) { l.PeerKey = pub[:5] },
		"no binding":  func(l *sfu.Link) { l.Binding = nil },
	} {
		l := good
		mutate(&l)
		c, _ := sfutest.Pipe()
		// With the context already over, a link that got past the checks
		// ends at once with context.Canceled (rather than after the idle
		// timeout), which tells it apart from a refusal.
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := a.SFU.ServeLink(ctx, c, l); err == nil || errors.Is(err, context.Canceled) {
			t.Errorf("%s: ServeLink accepted %+v (%v)", name, l, err)
		}
	}
	c, _ := sfutest.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.SFU.ServeLink(ctx, c, good); !errors.Is(err, context.Canceled) {
		t.Fatalf("a complete link with its context over: ServeLink = %v, want context.Canceled", err)
	}
}
