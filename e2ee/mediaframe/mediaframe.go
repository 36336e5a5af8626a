// Package mediaframe protects whole encoded media frames for the wire: a
// codec-dependent clear prefix stays readable (so that RTP packetizers and
// the SFU's keyframe detection still work) while the rest is SFrame
// ciphertext, and the prefix is authenticated as SFrame metadata so that
// nobody can alter it unnoticed.
//
// A protected frame is clear prefix ‖ SFrame header ‖ ciphertext ‖ tag. The
// receiver finds the prefix length from the codec and the first byte alone.
// Frames that fail are dropped: Unprotect returns no bytes for them, and a
// counter per reason says why, for the caller to read.
package mediaframe

import (
	"errors"
	"strings"
)

// Codec says how long a frame's clear prefix is.
type Codec uint8

// Codecs with a clear prefix; every other codec is Other and is encrypted
// whole.
const (
	Other Codec = iota
	VP8
	Opus
)

// String returns the codec's name.
func (c Codec) String() string {
	switch c {
	case VP8:
		return "VP8"
	case Opus:
		return "opus"
	default:
		return "other"
	}
}

// CodecFromMIME maps an RTP codec MIME type ("video/VP8", "audio/opus", any
// case) to its Codec; anything else is Other.
func CodecFromMIME(mime string) Codec {
	switch strings.ToLower(mime) {
	case "video/vp8":
		return VP8
	case "audio/opus":
		return Opus
	default:
		return Other
	}
}

// Clear prefix lengths.
const (
	// VP8KeyFramePrefix covers the 3-byte frame tag, the 3-byte start code
	// and the 4 bytes of width and height (RFC 6386 Section 9.1).
	VP8KeyFramePrefix = 10
	// VP8InterFramePrefix covers the 3-byte frame tag.
	VP8InterFramePrefix = 3
	// OpusPrefix covers the TOC byte (RFC 6716 Section 3.1).
	OpusPrefix = 1
)

// ErrShortFrame means a frame is shorter than its codec's clear prefix. Such
// a frame is not a valid frame of that codec; it is refused rather than sent
// with a shorter prefix, because the receiver could not tell where that
// prefix ends.
var ErrShortFrame = errors.New("mediaframe: frame shorter than its clear prefix")

// ErrNoKey means there is no key to protect with, or none to unprotect this
// frame's key id.
var ErrNoKey = errors.New("mediaframe: no key")

// PrefixLen is the length of frame's clear prefix: for VP8 10 bytes on a key
// frame (bit 0 of the first byte is 0) and 3 otherwise, for Opus 1, for
// anything else 0. An empty VP8 frame has prefix 3, so that it is refused.
func PrefixLen(codec Codec, frame []byte) int {
	switch codec {
	case VP8:
		if len(frame) > 0 && frame[0]&0x01 == 0 {
			return VP8KeyFramePrefix
		}
		return VP8InterFramePrefix
	case Opus:
		return OpusPrefix
	default:
		return 0
	}
}
