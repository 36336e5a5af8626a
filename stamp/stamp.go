// Package stamp carries a send time inside media frames so that a receiver
// on the same clock can measure end-to-end frame latency. The stamp is part
// of the frame's payload, so with end-to-end encryption it travels inside
// the ciphertext and no server can read or alter it unnoticed.
//
// VP8: the 12-byte stamp is appended to the frame. VP8's last partition
// runs to the end of the frame and decoders stop reading at its end, so
// the extra bytes are ignored by players.
//
// Opus: the packet is rewritten as a code 3 packet (RFC 6716 §3.2.5) whose
// padding holds the stamp; decoders discard padding.
package stamp

import (
	"encoding/binary"
	"errors"
	"time"
)

// Len is the size of a stamp.
const Len = 12

var magic = [4]byte{'o', 'a', 'k', 'T'}

// ErrUnsupported reports an Opus packet layout that cannot carry a stamp.
var ErrUnsupported = errors.New("stamp: opus packet layout not supported")

func put(b []byte, t time.Time) {
	copy(b, magic[:])
	binary.BigEndian.PutUint64(b[4:], uint64(t.UnixNano()))
}

func get(b []byte) (time.Time, bool) {
	if len(b) < Len || [4]byte(b[:4]) != magic {
		return time.Time{}, false
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b[4:Len]))), true
}

// AppendVP8 appends frame and its stamp to dst.
func AppendVP8(dst, frame []byte, t time.Time) []byte {
	dst = append(dst, frame...)
	var s [Len]byte
	put(s[:], t)
	return append(dst, s[:]...)
}

// ReadVP8 returns the stamp of a stamped VP8 frame.
func ReadVP8(frame []byte) (time.Time, bool) {
	if len(frame) < Len {
		return time.Time{}, false
	}
	return get(frame[len(frame)-Len:])
}

// AppendOpus appends to dst packet rewritten as a code 3 packet with the
// stamp as padding. Packets of code 0 (one frame) and 1 (two equal frames)
// are supported.
func AppendOpus(dst, packet []byte, t time.Time) ([]byte, error) {
	if len(packet) < 2 {
		return dst, ErrUnsupported
	}
	var frames byte
	switch packet[0] & 0x03 {
	case 0:
		frames = 1
	case 1:
		frames = 2
	default:
		return dst, ErrUnsupported
	}
	// TOC with code 3, then the frame-count byte: CBR, padding flag, count.
	dst = append(dst, packet[0]|0x03, 0x40|frames, Len)
	dst = append(dst, packet[1:]...)
	var s [Len]byte
	put(s[:], t)
	return append(dst, s[:]...), nil
}

// ReadOpus returns the stamp of a stamped Opus packet.
func ReadOpus(packet []byte) (time.Time, bool) {
	if len(packet) < 3+Len || packet[0]&0x03 != 3 || packet[1]&0x40 == 0 || packet[2] != Len {
		return time.Time{}, false
	}
	return get(packet[len(packet)-Len:])
}
