package sfu

import "sync"

// maxPacket bounds one RTP packet; anything larger than an Ethernet MTU is
// not produced by WebRTC senders.
const maxPacket = 1500

// packetCache keeps the most recent packets of one incoming stream so that
// a subscriber's NACK can be answered without asking the publisher again.
// All memory is allocated up front: storing a packet is a copy into a slot.
type packetCache struct {
	mu    sync.Mutex
	slots []cacheSlot
}

type cacheSlot struct {
	buf   []byte
	n     int
	seq   uint16
	valid bool
}

// newPacketCache makes a cache of size slots; size must be a power of two so
// that a sequence number maps to a slot with a mask.
func newPacketCache(size int) *packetCache {
	mem := make([]byte, size*maxPacket)
	c := &packetCache{slots: make([]cacheSlot, size)}
	for i := range c.slots {
		c.slots[i].buf = mem[i*maxPacket : (i+1)*maxPacket : (i+1)*maxPacket]
	}
	return c
}

func (c *packetCache) store(seq uint16, pkt []byte) {
	if len(pkt) > maxPacket {
		return
	}
	c.mu.Lock()
	s := &c.slots[int(seq)&(len(c.slots)-1)]
	s.n = copy(s.buf, pkt)
	s.seq = seq
	s.valid = true
	c.mu.Unlock()
}

// load copies packet seq into dst and returns its length, or 0 when the
// packet is no longer (or never was) in the cache.
func (c *packetCache) load(seq uint16, dst []byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := &c.slots[int(seq)&(len(c.slots)-1)]
	if !s.valid || s.seq != seq || len(dst) < s.n {
		return 0
	}
	return copy(dst, s.buf[:s.n])
}
