// Package udpbatch sends a UDP socket's datagrams in batches. Writes made
// while some sender holds the socket are queued and leave together in one
// sendmmsg, the datagrams to one address as one UDP GSO send (the kernel
// cuts it into datagrams) where the kernel can. A media node forwards each
// frame's packets to every subscriber in a burst: on Linux one system call
// and one pass down the network stack per subscriber per burst costs a
// third of one per packet (docs/BENCHMARKS.md).
//
// Writes do not wait for a batch: a held write is copied and queued and the
// call returns (it waits only when a queue is full and the one before it
// is still being sent, as it would wait for the socket). A queue leaves
// when the last holder releases it, when it is full, or MaxDelay after its
// first datagram, whichever is first. Datagrams to one address leave in
// the order written.
package udpbatch

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
)

// Limits of one batch.
const (
	// MaxQueue is how many datagrams a queue takes before it leaves.
	MaxQueue = 512
	// maxSegments is the kernel's limit of datagrams in one GSO send
	// (UDP_MAX_SEGMENTS), maxGSOBytes its limit of bytes.
	maxSegments = 64
	maxGSOBytes = 65000
	// maxDatagram is the largest datagram queued; larger ones are sent
	// at once, alone.
	maxDatagram = 1500
)

// DefaultMaxDelay is Conn's MaxDelay unless set.
const DefaultMaxDelay = time.Millisecond

// Stats are a Conn's counters.
type Stats struct {
	Datagrams uint64 // sent, in batches or alone
	Batches   uint64 // sendmmsg calls
	GSOSends  uint64 // messages that carried more than one datagram
	Errors    uint64 // datagrams the kernel refused
}

// Conn is a UDP socket whose writes can be batched. It implements
// net.PacketConn and the AddrPort reads and writes of pion/ice's
// AddrPortReaderWriter.
type Conn struct {
	c        *net.UDPConn
	pc       *ipv4.PacketConn
	maxDelay time.Duration
	gso      atomic.Bool

	// mu guards holds, q and spare; it is never held across I/O.
	mu    sync.Mutex
	holds int
	q     *queue
	spare *queue
	timer *time.Timer
	armed bool
	back  *sync.Cond // signalled when spare is back

	datagrams, batches, gsoSends, errs atomic.Uint64
}

// New wraps c. maxDelay bounds how long a queued datagram waits (zero
// means DefaultMaxDelay). GSO is used where the kernel offers it.
func New(c *net.UDPConn, maxDelay time.Duration) *Conn {
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	b := &Conn{c: c, pc: ipv4.NewPacketConn(c), maxDelay: maxDelay, q: newQueue(), spare: newQueue()}
	b.back = sync.NewCond(&b.mu)
	b.gso.Store(gsoSupported(c))
	b.timer = time.AfterFunc(time.Hour, b.expire)
	b.timer.Stop()
	return b
}

// GSO reports whether sends to one address are cut by the kernel.
func (b *Conn) GSO() bool { return b.gso.Load() }

// Stats returns the counters so far.
func (b *Conn) Stats() Stats {
	return Stats{Datagrams: b.datagrams.Load(), Batches: b.batches.Load(), GSOSends: b.gsoSends.Load(), Errors: b.errs.Load()}
}

// Hold queues every write, from any goroutine, until the matching Release.
func (b *Conn) Hold() {
	b.mu.Lock()
	b.holds++
	b.mu.Unlock()
}

// Release ends one Hold; what is queued leaves now, once no one else holds
// the socket.
func (b *Conn) Release() {
	b.mu.Lock()
	if b.holds > 0 {
		b.holds--
	}
	var q *queue
	if b.holds == 0 {
		q = b.takeLocked()
	}
	b.mu.Unlock()
	b.send(q)
}

// Flush sends what is queued now, held or not.
func (b *Conn) Flush() {
	b.mu.Lock()
	q := b.takeLocked()
	b.mu.Unlock()
	b.send(q)
}

// expire sends the queue its timer was armed for. If a queue is out being
// sent, the one filling now goes when that one is back.
func (b *Conn) expire() {
	b.mu.Lock()
	q := b.takeLocked()
	if q == nil {
		b.armed = false
	}
	b.mu.Unlock()
	b.send(q)
}

// takeLocked hands over the queue, nil if empty; b.send gives it back.
func (b *Conn) takeLocked() *queue {
	if len(b.q.dgrams) == 0 || b.spare == nil {
		return nil
	}
	q := b.q
	b.q, b.spare = b.spare, nil
	if b.armed {
		b.timer.Stop()
		b.armed = false
	}
	return q
}

// WriteToAddrPort sends p to addr, or queues it while the socket is held.
func (b *Conn) WriteToAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	if len(p) > maxDatagram {
		return b.c.WriteToUDPAddrPort(p, addr)
	}
	b.mu.Lock()
	if b.holds == 0 && len(b.q.dgrams) == 0 && b.spare != nil {
		b.mu.Unlock()
		b.datagrams.Add(1)
		return b.c.WriteToUDPAddrPort(p, addr)
	}
	// Queued behind what is queued or being sent, even when no one holds
	// the socket any more: a datagram sent alone now could overtake them,
	// and receivers
	// take a frame whose last packet comes first for a lost one.
	var full *queue
	for len(b.q.dgrams) >= MaxQueue {
		if full = b.takeLocked(); full != nil {
			break
		}
		// The other queue is on its way out: wait for it, as a write
		// waits for the socket.
		b.back.Wait()
	}
	b.q.add(p, addr.Addr().Unmap(), addr.Port())
	if !b.armed {
		b.armed = true
		b.timer.Reset(b.maxDelay)
	}
	b.mu.Unlock()
	b.send(full)
	return len(p), nil
}

// WriteTo implements net.PacketConn.
func (b *Conn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, &net.OpError{Op: "write", Net: "udp", Addr: addr, Err: errors.New("not a UDP address")}
	}
	return b.WriteToAddrPort(p, ua.AddrPort())
}

// ReadFromAddrPort reads one datagram.
func (b *Conn) ReadFromAddrPort(p []byte) (int, netip.AddrPort, error) {
	return b.c.ReadFromUDPAddrPort(p)
}

// ReadFrom implements net.PacketConn.
func (b *Conn) ReadFrom(p []byte) (int, net.Addr, error) { return b.c.ReadFrom(p) }

// Close sends what is queued and closes the socket.
func (b *Conn) Close() error {
	b.Flush()
	b.timer.Stop()
	return b.c.Close()
}

// LocalAddr implements net.PacketConn.
func (b *Conn) LocalAddr() net.Addr { return b.c.LocalAddr() }

// SetDeadline implements net.PacketConn.
func (b *Conn) SetDeadline(t time.Time) error { return b.c.SetDeadline(t) }

// SetReadDeadline implements net.PacketConn.
func (b *Conn) SetReadDeadline(t time.Time) error { return b.c.SetReadDeadline(t) }

// SetWriteDeadline implements net.PacketConn.
func (b *Conn) SetWriteDeadline(t time.Time) error { return b.c.SetWriteDeadline(t) }

// queue is one batch: the datagrams' bytes back to back, and the messages
// built from them when it is sent. Everything is reused.
type queue struct {
	buf    []byte
	dgrams []dgram
	// Datagrams are grouped by address as they are added: a group's
	// datagrams are chained through dgram.next in the order written, and
	// table finds an address's group (open addressing; 0 is empty,
	// otherwise the group's index + 1).
	groups []group
	table  []int32
	order  []int32 // build's scratch: datagram indices, grouped
	msgs   []ipv4.Message
	iovs   [][]byte
	addrs  []net.UDPAddr
	ips    [][16]byte
	oobs   [][]byte
}

type dgram struct {
	addr netip.Addr
	port uint16
	off  int
	n    int
	next int32 // the next datagram to the same address, -1 if none
}

type group struct {
	first, last int32
	slot        uint32
}

// tableBits sizes the address table at twice MaxQueue, so that probes
// stay short when every datagram goes to its own address.
const tableBits = 10

func slotOf(addr netip.Addr, port uint16) uint32 {
	a := addr.As16()
	x := binary.LittleEndian.Uint64(a[:8])*0x9e3779b97f4a7c15 ^ binary.LittleEndian.Uint64(a[8:]) ^ uint64(port)<<48
	x *= 0x9e3779b97f4a7c15
	return uint32(x >> (64 - tableBits))
}

func newQueue() *queue {
	q := &queue{
		buf:    make([]byte, 0, MaxQueue*maxDatagram),
		dgrams: make([]dgram, 0, MaxQueue),
		groups: make([]group, 0, MaxQueue),
		table:  make([]int32, 1<<tableBits),
		order:  make([]int32, MaxQueue),
		msgs:   make([]ipv4.Message, MaxQueue),
		iovs:   make([][]byte, MaxQueue),
		addrs:  make([]net.UDPAddr, MaxQueue),
		ips:    make([][16]byte, MaxQueue),
		oobs:   make([][]byte, MaxQueue),
	}
	for i := range q.oobs {
		q.oobs[i] = make([]byte, segmentCmsgLen)
	}
	return q
}

func (q *queue) add(p []byte, addr netip.Addr, port uint16) {
	off := len(q.buf)
	q.buf = append(q.buf, p...)
	i := int32(len(q.dgrams))
	q.dgrams = append(q.dgrams, dgram{addr: addr, port: port, off: off, n: len(p), next: -1})
	for s := slotOf(addr, port); ; s = (s + 1) & (1<<tableBits - 1) {
		g := q.table[s]
		if g == 0 {
			q.groups = append(q.groups, group{first: i, last: i, slot: s})
			q.table[s] = int32(len(q.groups))
			return
		}
		gr := &q.groups[g-1]
		if d := &q.dgrams[gr.first]; d.addr == addr && d.port == port {
			q.dgrams[gr.last].next = i
			gr.last = i
			return
		}
	}
}

func (q *queue) reset() {
	for _, g := range q.groups {
		q.table[g.slot] = 0
	}
	q.buf, q.dgrams, q.groups = q.buf[:0], q.dgrams[:0], q.groups[:0]
	clear(q.iovs)
	for i := range q.msgs {
		q.msgs[i] = ipv4.Message{}
	}
}

// build turns the queue into messages: the datagrams to one address, in
// the order written, become one GSO message where they can (all the size
// of the first, the last no larger), others one message each.
func (q *queue) build(gso bool) []ipv4.Message {
	ord := q.order[:0]
	for _, g := range q.groups {
		for i := g.first; i >= 0; i = q.dgrams[i].next {
			ord = append(ord, i)
		}
	}
	nm := 0
	for i := 0; i < len(ord); {
		d := q.dgrams[ord[i]]
		j := i + 1
		if gso {
			total := d.n
			for j < len(ord) && j-i < maxSegments {
				e := q.dgrams[ord[j]]
				if e.addr != d.addr || e.port != d.port || e.n > d.n || total+e.n > maxGSOBytes || q.dgrams[ord[j-1]].n != d.n {
					break
				}
				total += e.n
				j++
			}
		}
		for k := i; k < j; k++ {
			e := q.dgrams[ord[k]]
			q.iovs[k] = q.buf[e.off : e.off+e.n]
		}
		m := &q.msgs[nm]
		m.Buffers = q.iovs[i:j]
		m.OOB = nil
		if j-i > 1 {
			putSegmentCmsg(q.oobs[nm], d.n)
			m.OOB = q.oobs[nm]
		}
		ua := &q.addrs[nm]
		ip := &q.ips[nm]
		if d.addr.Is4() {
			a4 := d.addr.As4()
			ua.IP = append(ip[:0], a4[:]...)
		} else {
			a16 := d.addr.As16()
			ua.IP = append(ip[:0], a16[:]...)
		}
		ua.Port, ua.Zone = int(d.port), d.addr.Zone()
		m.Addr = ua
		nm++
		i = j
	}
	return q.msgs[:nm]
}

// send writes a taken queue and gives it back. A GSO send the kernel
// refuses turns GSO off for good and goes again datagram by datagram.
func (b *Conn) send(q *queue) {
	if q == nil {
		return
	}
	b.datagrams.Add(uint64(len(q.dgrams)))
	gso := b.gso.Load()
	msgs := q.build(gso)
	for len(msgs) > 0 {
		n, err := b.pc.WriteBatch(msgs, 0)
		b.batches.Add(1)
		for _, m := range msgs[:max(n, 0)] {
			if len(m.Buffers) > 1 {
				b.gsoSends.Add(1)
			}
		}
		if err == nil && n >= len(msgs) {
			break
		}
		if n < 0 {
			n = 0
		}
		if n == len(msgs) {
			break
		}
		failed := msgs[n]
		if len(failed.Buffers) > 1 {
			// The kernel cannot segment here: from now on, and for the
			// rest of this batch, one message per datagram.
			b.gso.Store(false)
			msgs = splitMessages(msgs[n:])
			continue
		}
		b.errs.Add(uint64(len(failed.Buffers)))
		msgs = msgs[n+1:]
	}
	q.reset()
	b.mu.Lock()
	b.spare = q
	b.back.Broadcast()
	if len(b.q.dgrams) > 0 && (b.holds == 0 || !b.armed) {
		// Written while this queue was out, and nothing holds them any
		// more or their time is up.
		q = b.takeLocked()
	} else {
		q = nil
	}
	b.mu.Unlock()
	b.send(q)
}

// splitMessages makes one message per datagram of unsent, once, when the
// kernel turns out not to take GSO.
func splitMessages(unsent []ipv4.Message) []ipv4.Message {
	var out []ipv4.Message
	for _, m := range unsent {
		for _, buf := range m.Buffers {
			out = append(out, ipv4.Message{Buffers: [][]byte{buf}, Addr: m.Addr})
		}
	}
	return out
}
