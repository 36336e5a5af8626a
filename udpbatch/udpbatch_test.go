package udpbatch

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return c.LocalAddr().(*net.UDPAddr).AddrPort() }

// datagram makes a recognisable datagram: its index, then filler.
func datagram(i, n int) []byte {
	b := bytes.Repeat([]byte{byte(i)}, n)
	copy(b, fmt.Sprintf("%04d", i))
	return b
}

// receive reads want datagrams from c within the deadline.
func receive(t *testing.T, c *net.UDPConn, want int, deadline time.Duration) [][]byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(deadline))
	var got [][]byte
	buf := make([]byte, 2048)
	for len(got) < want {
		n, _, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("after %d of %d datagrams: %v", len(got), want, err)
		}
		got = append(got, append([]byte(nil), buf[:n]...))
	}
	return got
}

func TestHeldWritesLeaveTogetherAndIntact(t *testing.T) {
	b := New(listen(t), time.Hour)
	defer b.Close()
	subs := []*net.UDPConn{listen(t), listen(t), listen(t)}
	// A frame's packets fanned out: six each, the last one shorter, and
	// a packet of another size in between for the third.
	sizes := [][]int{{1200, 1200, 1200, 1200, 1200, 700}, {1200, 1200, 1200, 1200, 1200, 700}, {1200, 1200, 300, 1200, 1200, 700}}
	b.Hold()
	for k := range 6 {
		for s, sub := range subs {
			if n, err := b.WriteToAddrPort(datagram(10*s+k, sizes[s][k]), addrOf(sub)); err != nil || n != sizes[s][k] {
				t.Fatalf("write: %d, %v", n, err)
			}
		}
	}
	// Held: nothing has left.
	_ = subs[0].SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, _, err := subs[0].ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
		t.Fatalf("a held datagram of %d bytes left", n)
	}
	b.Release()
	for s, sub := range subs {
		got := receive(t, sub, 6, 5*time.Second)
		for k, g := range got {
			if want := datagram(10*s+k, sizes[s][k]); !bytes.Equal(g, want) {
				t.Fatalf("subscriber %d datagram %d: %d bytes %q…, want %d bytes %q…", s, k, len(g), g[:4], len(want), want[:4])
			}
		}
	}
	st := b.Stats()
	if st.Datagrams != 18 || st.Batches != 1 || st.Errors != 0 {
		t.Fatalf("stats %+v", st)
	}
	if b.GSO() && st.GSOSends < 3 {
		t.Fatalf("GSO offered but %d GSO sends of 18 datagrams to 3 addresses", st.GSOSends)
	}
}

func TestUnheldWritesGoAtOnce(t *testing.T) {
	b := New(listen(t), time.Hour)
	defer b.Close()
	sub := listen(t)
	if _, err := b.WriteToAddrPort(datagram(1, 100), addrOf(sub)); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sub, 1, 5*time.Second); !bytes.Equal(got[0], datagram(1, 100)) {
		t.Fatalf("got %q", got[0])
	}
	if st := b.Stats(); st.Batches != 0 || st.Datagrams != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestAHeldDatagramWaitsAtMostMaxDelay(t *testing.T) {
	b := New(listen(t), 5*time.Millisecond)
	defer b.Close()
	sub := listen(t)
	b.Hold() // never released: a frame whose last packet was lost
	defer b.Release()
	start := time.Now()
	if _, err := b.WriteToAddrPort(datagram(2, 100), addrOf(sub)); err != nil {
		t.Fatal(err)
	}
	receive(t, sub, 1, 5*time.Second)
	if waited := time.Since(start); waited < 5*time.Millisecond {
		t.Fatalf("left after %s, before its delay", waited)
	}
	// The next one waits for its own timer too.
	if _, err := b.WriteToAddrPort(datagram(3, 100), addrOf(sub)); err != nil {
		t.Fatal(err)
	}
	if got := receive(t, sub, 1, 5*time.Second); got[0][3] != '3' {
		t.Fatalf("got %q", got[0][:4])
	}
}

func TestAFullQueueLeaves(t *testing.T) {
	b := New(listen(t), time.Hour)
	defer b.Close()
	sub := listen(t)
	_ = sub.SetReadBuffer(4 << 20)
	b.Hold()
	defer b.Release()
	// The write after a full queue sends it; so twice, and one more.
	for i := range 2*MaxQueue + 1 {
		if _, err := b.WriteToAddrPort(datagram(i, 200), addrOf(sub)); err != nil {
			t.Fatal(err)
		}
	}
	got := receive(t, sub, 2*MaxQueue, 5*time.Second)
	for i, g := range got {
		if !bytes.Equal(g, datagram(i, 200)) {
			t.Fatalf("datagram %d out of order: %q", i, g[:4])
		}
	}
}

func TestConcurrentSendersLoseNothing(t *testing.T) {
	b := New(listen(t), 200*time.Microsecond)
	defer b.Close()
	const senders, rounds, perRound = 4, 30, 99 // perRound a multiple of the subscribers
	subs := []*net.UDPConn{listen(t), listen(t), listen(t)}
	counts := make(chan int, len(subs))
	disorder := make(chan string, len(subs))
	for _, sub := range subs {
		_ = sub.SetReadBuffer(8 << 20)
		go func() {
			n := 0
			buf := make([]byte, 2048)
			last := map[string]int{}
			_ = sub.SetReadDeadline(time.Now().Add(20 * time.Second))
			for n < senders*rounds*perRound/len(subs) {
				m, _, err := sub.ReadFromUDPAddrPort(buf)
				if err != nil {
					break
				}
				n++
				// "sender/sequence": each sender's datagrams to one
				// address arrive in the order written.
				var from string
				var seq int
				if _, err := fmt.Sscanf(string(buf[:16]), "%2s/%08d", &from, &seq); err != nil || m < 16 {
					select {
					case disorder <- fmt.Sprintf("unreadable datagram %q", buf[:16]):
					default:
					}
					break
				}
				if prev, ok := last[from]; ok && seq <= prev {
					select {
					case disorder <- fmt.Sprintf("sender %s: %d after %d", from, seq, prev):
					default: // one report per subscriber is enough
					}
				}
				last[from] = seq
			}
			counts <- n
		}()
	}
	done := make(chan struct{})
	for s := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			for r := range rounds {
				held := (s+r)%3 != 0 // some rounds unheld, mixed with held ones
				if held {
					b.Hold()
				}
				for i := range perRound {
					p := datagram(i, 100+i%3*400)
					copy(p, fmt.Sprintf("s%d/%08d", s, r*perRound+i))
					_, _ = b.WriteToAddrPort(p, addrOf(subs[i%len(subs)]))
				}
				if held {
					b.Release()
				}
			}
		}()
	}
	for range senders {
		<-done
	}
	total := 0
	for range subs {
		total += <-counts
	}
	close(disorder)
	for d := range disorder {
		t.Error(d)
	}
	if want := senders * rounds * perRound; total != want {
		t.Fatalf("%d of %d datagrams arrived (stats %+v)", total, want, b.Stats())
	}
}

func TestBatchingAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are counted without the race detector")
	}
	b := New(listen(t), time.Hour)
	defer b.Close()
	var addrs []netip.AddrPort
	for range 10 {
		sub := listen(t)
		_ = sub.SetReadBuffer(4 << 20)
		addrs = append(addrs, addrOf(sub))
		go func() {
			buf := make([]byte, 2048)
			for {
				if _, _, err := sub.ReadFromUDPAddrPort(buf); err != nil {
					return
				}
			}
		}()
	}
	p := datagram(1, 1200)
	allocs := testing.AllocsPerRun(200, func() {
		b.Hold()
		for range 3 {
			for _, a := range addrs {
				_, _ = b.WriteToAddrPort(p, a)
			}
		}
		b.Release()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocations per batch of 30 datagrams", allocs)
	}
}

func BenchmarkBatch(b *testing.B) {
	c, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	bc := New(c, time.Hour)
	defer bc.Close()
	sub, _ := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	defer sub.Close()
	p := datagram(1, 1200)
	a := addrOf(sub)
	b.ReportAllocs()
	for b.Loop() {
		bc.Hold()
		_, _ = bc.WriteToAddrPort(p, a)
		bc.Release()
	}
}

// TestAQueueGroupsByAddressInOrder fills one queue with datagrams to many
// addresses, interleaved (as a frame's packets go out to every
// subscriber), and checks what build makes of it: every datagram once,
// each message to one address, and each address's datagrams in the order
// written.
func TestAQueueGroupsByAddressInOrder(t *testing.T) {
	for _, gso := range []bool{false, true} {
		q := newQueue()
		type key struct {
			addr netip.Addr
			port uint16
		}
		var keys []key
		for i := range 150 {
			a := netip.AddrFrom4([4]byte{10, 0, byte(i / 50), byte(i % 50)})
			if i%3 == 0 {
				a = netip.AddrFrom16([16]byte{0xfd, 15: byte(i)})
			}
			keys = append(keys, key{a, uint16(5000 + i%7)})
		}
		keys = append(keys, key{keys[1].addr, keys[1].port + 1}) // same address, another port
		written := map[key][]byte{}
		for round := range 3 {
			for i, k := range keys {
				p := []byte{byte(round), byte(i), byte(i >> 8)}
				q.add(p, k.addr, k.port)
				written[k] = append(written[k], byte(round))
			}
		}
		got := map[key][]byte{}
		n := 0
		for _, m := range q.build(gso) {
			ua := m.Addr.(*net.UDPAddr)
			a, _ := netip.AddrFromSlice(ua.IP)
			if len(ua.IP) == 4 {
				a = a.Unmap()
			}
			k := key{a, uint16(ua.Port)}
			if !gso && len(m.Buffers) != 1 {
				t.Fatalf("without GSO a message holds %d datagrams", len(m.Buffers))
			}
			for _, b := range m.Buffers {
				if int(b[1])|int(b[2])<<8 >= len(keys) || keys[int(b[1])|int(b[2])<<8] != k {
					t.Fatalf("a datagram for %v went to %v", keys[int(b[1])|int(b[2])<<8], k)
				}
				got[k] = append(got[k], b[0])
				n++
			}
		}
		if n != 3*len(keys) {
			t.Fatalf("gso %v: %d datagrams built from %d", gso, n, 3*len(keys))
		}
		for k, w := range written {
			if string(got[k]) != string(w) {
				t.Fatalf("gso %v: %v got rounds %v, written %v", gso, k, got[k], w)
			}
		}
		q.reset()
		for _, s := range q.table {
			if s != 0 {
				t.Fatal("reset left the address table in use")
			}
		}
	}
}
