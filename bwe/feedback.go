package bwe

import (
	"encoding/binary"
	"errors"
)

// Transport-wide congestion control feedback
// (draft-holmer-rmcat-transport-wide-cc-extensions-01, section 3.1): an
// RTCP transport-layer feedback message, PT 205 FMT 15.
const (
	rtcpTransportFeedback = 205
	fmtTWCC               = 15
	feedbackHeaderLen     = 20 // common header, two SSRCs, base, count, reference time, feedback count

	// Packet status symbols.
	symbolNotReceived = 0
	symbolSmallDelta  = 1
	symbolLargeDelta  = 2

	deltaUnit = 250    // µs per receive delta tick
	refUnit   = 64_000 // µs per reference time tick
)

// Errors from reading feedback. The estimator ignores a message that
// fails and counts it.
var (
	errShort    = errors.New("bwe: transport-cc feedback is truncated")
	errReserved = errors.New("bwe: transport-cc feedback uses the reserved status symbol")
)

// feedback is one transport-cc feedback message, read in place: nothing is
// copied or allocated, so the statuses are walked from the raw bytes.
type feedback struct {
	base      uint16 // transport sequence number of the first status
	count     int    // number of statuses
	reference uint32 // 24 bits, in units of 64 ms, in the receiver's clock
	chunks    []byte // packet status chunks, two bytes each
	deltas    []byte // receive deltas
}

// parseFeedback reads one transport-cc feedback message (one RTCP packet,
// its common header first). It checks every length against b, so that
// walk cannot run past the message.
func parseFeedback(b []byte) (feedback, error) {
	var f feedback
	if len(b) < feedbackHeaderLen {
		return f, errShort
	}
	total := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
	if total > len(b) || total < feedbackHeaderLen {
		return f, errShort
	}
	b = b[:total]
	if b[0]&0x20 != 0 {
		// Padding: the last byte says how many bytes to drop.
		pad := int(b[total-1])
		if pad == 0 || feedbackHeaderLen+pad > total {
			return f, errShort
		}
		b = b[:total-pad]
	}
	f.base = binary.BigEndian.Uint16(b[12:])
	f.count = int(binary.BigEndian.Uint16(b[14:]))
	f.reference = uint32(b[16])<<16 | uint32(b[17])<<8 | uint32(b[18])
	// The chunks run until they cover count statuses; the deltas follow.
	pos, covered, deltaBytes := feedbackHeaderLen, 0, 0
	for covered < f.count {
		if pos+2 > len(b) {
			return f, errShort
		}
		c := binary.BigEndian.Uint16(b[pos:])
		pos += 2
		n, bytes, err := chunkDeltaBytes(c, f.count-covered)
		if err != nil {
			return f, err
		}
		covered += n
		deltaBytes += bytes
	}
	f.chunks = b[feedbackHeaderLen:pos]
	if pos+deltaBytes > len(b) {
		return f, errShort
	}
	f.deltas = b[pos : pos+deltaBytes]
	return f, nil
}

// chunkDeltaBytes says how many of the remaining statuses chunk c covers
// and how many bytes of receive deltas they take.
func chunkDeltaBytes(c uint16, remaining int) (n, bytes int, err error) {
	if c&0x8000 == 0 { // run length chunk
		sym := int(c>>13) & 3
		n = min(int(c&0x1fff), remaining)
		switch sym {
		case symbolSmallDelta:
			bytes = n
		case symbolLargeDelta:
			bytes = 2 * n
		case 3:
			if n > 0 {
				return 0, 0, errReserved
			}
		}
		return n, bytes, nil
	}
	if c&0x4000 == 0 { // status vector, 14 one-bit symbols
		n = min(14, remaining)
		for i := range n {
			bytes += int(c>>(13-i)) & 1
		}
		return n, bytes, nil
	}
	n = min(7, remaining) // status vector, 7 two-bit symbols
	for i := range n {
		switch int(c>>(12-2*i)) & 3 {
		case symbolSmallDelta:
			bytes++
		case symbolLargeDelta:
			bytes += 2
		case 3:
			return 0, 0, errReserved
		}
	}
	return n, bytes, nil
}

// each calls fn for every status in order: the packet's transport
// sequence number, whether it arrived, and if so its arrival time in µs
// after the feedback's reference time. parseFeedback has checked that the
// chunks and deltas agree, so each cannot run out.
//
// A run of "not received" is handed to gap whole, if gap is set: one
// two-byte chunk can say that 8,191 packets were lost, so a reader that
// visited each would do work out of all proportion to the message.
func (f *feedback) each(fn func(seq uint16, received bool, arrival int64), gap func(seq uint16, n int)) {
	seq := f.base
	left := f.count
	d := 0
	var at int64
	status := func(sym int) {
		switch sym {
		case symbolSmallDelta:
			at += int64(f.deltas[d]) * deltaUnit
			d++
			fn(seq, true, at)
		case symbolLargeDelta:
			at += int64(int16(binary.BigEndian.Uint16(f.deltas[d:]))) * deltaUnit
			d += 2
			fn(seq, true, at)
		default:
			fn(seq, false, 0)
		}
		seq++
		left--
	}
	for i := 0; i+1 < len(f.chunks) && left > 0; i += 2 {
		c := binary.BigEndian.Uint16(f.chunks[i:])
		switch {
		case c&0x8000 == 0:
			sym := int(c>>13) & 3
			n := min(int(c&0x1fff), left)
			if sym == symbolNotReceived && gap != nil {
				gap(seq, n)
				seq += uint16(n)
				left -= n
				continue
			}
			for range n {
				status(sym)
			}
		case c&0x4000 == 0:
			for j := range min(14, left) {
				status(int(c>>(13-j)) & 1)
			}
		default:
			for j := range min(7, left) {
				status(int(c>>(12-2*j)) & 3)
			}
		}
	}
}

// eachFeedback calls fn for every transport-cc feedback message in the
// compound RTCP packet b and returns how many could not be read. Other
// RTCP packets are skipped by their length.
func eachFeedback(b []byte, fn func(feedback)) (bad int) {
	for len(b) >= 4 {
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			n = len(b) // a truncated last packet: parseFeedback says so
		}
		if b[1] == rtcpTransportFeedback && b[0]&0x1f == fmtTWCC {
			f, err := parseFeedback(b[:n])
			if err != nil {
				bad++
			} else {
				fn(f)
			}
		}
		b = b[n:]
	}
	return bad
}

// OnlyFeedback reports whether the compound RTCP packet b holds nothing
// but transport-cc feedback, which the estimator reads from the bytes: a
// reader with no use for it can skip parsing the packet.
func OnlyFeedback(b []byte) bool {
	if len(b) < 4 {
		return false
	}
	for len(b) >= 4 {
		if b[1] != rtcpTransportFeedback || b[0]&0x1f != fmtTWCC {
			return false
		}
		n := 4 * (int(binary.BigEndian.Uint16(b[2:])) + 1)
		if n > len(b) {
			return false
		}
		b = b[n:]
	}
	return len(b) == 0
}
