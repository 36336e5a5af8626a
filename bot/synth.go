package bot

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/oakmeet/oakmeet/clip"
	"github.com/oakmeet/oakmeet/stamp"
)

// Synthetic is a load generator's video in place of the test clip: VP8
// frames of a fixed size with a random payload behind a valid frame tag,
// a key frame every SyntheticKeyInterval frames and whenever the node asks
// for one. It is the shape of the load other SFUs are measured with, so
// that two servers can be compared on one load; nothing can decode it.
type Synthetic struct {
	// FrameBytes is each frame's size before encryption, the send stamp
	// included; at least SyntheticMinFrameBytes.
	FrameBytes int
	// FPS is the frame rate, 1 to 120.
	FPS int
}

// SyntheticKeyInterval is how often a synthetic stream sends a key frame
// unasked, in frames.
const SyntheticKeyInterval = 60

// SyntheticMinFrameBytes is the smallest synthetic frame: a key frame's
// 10-byte header and the send stamp.
const SyntheticMinFrameBytes = 10 + stamp.Len

// Validate says what is wrong with s, if anything.
func (s Synthetic) Validate() error {
	switch {
	case s.FrameBytes < SyntheticMinFrameBytes:
		return fmt.Errorf("video frame bytes %d: at least %d (a VP8 key frame's header and the send stamp)", s.FrameBytes, SyntheticMinFrameBytes)
	case s.FPS < 1 || s.FPS > 120:
		return fmt.Errorf("fps %d: want 1 to 120", s.FPS)
	}
	return nil
}

// synthSource makes a Synthetic stream's frames. Each call reuses one
// buffer: the caller copies or encrypts a frame before asking for the next.
type synthSource struct {
	cfg   Synthetic
	rnd   *rand.ChaCha8
	buf   []byte
	count int
}

func newSynthSource(cfg Synthetic, seed uint64) *synthSource {
	var s [32]byte
	binary.LittleEndian.PutUint64(s[:], seed)
	return &synthSource{cfg: cfg, rnd: rand.NewChaCha8(s), buf: make([]byte, cfg.FrameBytes)}
}

// next returns the next frame, without room for the stamp (the last
// stamp.Len bytes of FrameBytes are the caller's), a key frame when key is asked
// for or the interval is up.
func (s *synthSource) next(key bool) clip.Frame {
	key = key || s.count%SyntheticKeyInterval == 0
	if key {
		s.count = 0
	}
	s.count++
	b := s.buf[:s.cfg.FrameBytes-stamp.Len]
	_, _ = s.rnd.Read(b)
	// VP8 frame tag (RFC 6386 §9.1): bit 0 clear for a key frame, version
	// 0, show_frame set, 19 bits of first-partition size.
	first := min(uint32(len(b)-10), 0x7ffff)
	tag := first<<5 | 1<<4
	if !key {
		tag |= 1
	}
	b[0], b[1], b[2] = byte(tag), byte(tag>>8), byte(tag>>16)
	if key {
		b[3], b[4], b[5] = 0x9d, 0x01, 0x2a // start code
		binary.LittleEndian.PutUint16(b[6:], 1280)
		binary.LittleEndian.PutUint16(b[8:], 720)
	}
	return clip.Frame{Data: b, Key: key, Duration: time.Second / time.Duration(s.cfg.FPS)}
}

// clipSource plays a clip, skipping to its next key frame when one is
// asked for.
type clipSource struct{ p *clip.Player }

func (c clipSource) next(key bool) clip.Frame {
	if key {
		c.p.SkipToKey()
	}
	return c.p.Next()
}

// frameSource is what play sends from.
type frameSource interface {
	next(key bool) clip.Frame
}
