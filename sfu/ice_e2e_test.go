package sfu_test

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
)

// blackhole stands in front of a node's ICE UDP socket: while on, every
// datagram either way is dropped.
type blackhole struct {
	on      atomic.Bool
	dropped atomic.Int64
}

func (b *blackhole) wrap(pc net.PacketConn) net.PacketConn {
	return &blackholeConn{PacketConn: pc, b: b}
}

type blackholeConn struct {
	net.PacketConn
	b *blackhole
}

func (c *blackholeConn) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		n, addr, err := c.PacketConn.ReadFrom(p)
		if err != nil || !c.b.on.Load() {
			return n, addr, err
		}
		c.b.dropped.Add(1)
	}
}

func (c *blackholeConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if c.b.on.Load() {
		c.b.dropped.Add(1)
		return len(p), nil // lost on the way, as UDP is
	}
	return c.PacketConn.WriteTo(p, addr)
}

// TestBlockedICESocket: a node whose ICE UDP socket drops every datagram
// (a firewall in front of it; signaling still works) welcomes a Go
// client, which publishes but never gets its media connected: at the
// node's negotiation deadline the client is told so and its session ends
// with that reason, and the node's Serve returns ErrNotNegotiated. Once
// the firewall opens, the same node connects the next client.
func TestBlockedICESocket(t *testing.T) {
	const deadline = 2 * time.Second
	bh := &blackhole{}
	bh.on.Store(true)
	srv := sfutest.Start(t, sfu.Config{WrapUDP: bh.wrap, NegotiationTimeout: deadline})

	began := time.Now()
	alice := join(t, srv, "m", "alice", client.Options{})
	alice.publish(mediaOpts{})
	eventually(t, deadline+10*time.Second, "alice's session to end", func() bool { return alice.s.Err() != nil })
	took := time.Since(began)
	var left *client.LeftError
	if err := alice.s.Err(); !errors.As(err, &left) || left.Reason != signal.ReasonNegotiationTimeout {
		t.Fatalf("alice's session ended with %v, want a leave with reason %q", err, signal.ReasonNegotiationTimeout)
	}
	if took < deadline {
		t.Errorf("ended after %v, before the %v deadline", took, deadline)
	}
	if pub, _ := alice.s.PeerConnections(); pub != nil && pub.ICEConnectionState() == webrtc.ICEConnectionStateConnected {
		t.Error("alice's publish connection got through the firewall")
	}
	eventually(t, 5*time.Second, "alice's Serve returns", func() bool {
		_, done := srv.Result("alice")
		return done
	})
	if err, _ := srv.Result("alice"); !errors.Is(err, sfu.ErrNotNegotiated) {
		t.Errorf("alice's Serve returned %v, want ErrNotNegotiated", err)
	}
	if bh.dropped.Load() == 0 {
		t.Error("the firewall dropped nothing")
	}

	bh.on.Store(false)
	bob := join(t, srv, "m", "bob", client.Options{})
	bob.publish(mediaOpts{})
	eventually(t, 10*time.Second, "bob's media connected", func() bool {
		pub, _ := bob.s.PeerConnections()
		return pub != nil && pub.ConnectionState() == webrtc.PeerConnectionStateConnected
	})
	eventually(t, 10*time.Second, "past bob's deadline", func() bool { return time.Since(began) > took+deadline+time.Second })
	if err := bob.s.Err(); err != nil {
		t.Errorf("bob's session ended: %v", err)
	}
}
