// Package clip holds the short media clips that bots and the load
// generator publish — a VP8 test pattern and an Opus tone — and plays them
// frame by frame in a loop. The files are small and committed; they were
// made once with ffmpeg (see generate.sh) and are never regenerated in CI.
package clip

import (
	"bytes"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

//go:embed pattern.ivf
var patternIVF []byte

//go:embed tone.ogg
var toneOgg []byte

// Frame is one encoded frame.
type Frame struct {
	Data     []byte
	Key      bool // a VP8 key frame; always true for audio
	Duration time.Duration
}

// Clip is a sequence of frames of one codec.
type Clip struct {
	Codec  string // "vp8" or "opus"
	Frames []Frame
}

// Video is the VP8 test pattern: 320×240, 30 fps, 2 s, a key frame every
// second.
func Video() (*Clip, error) { return parseIVF(patternIVF) }

// Audio is the Opus tone: 440 Hz, 48 kHz mono, 20 ms frames, 2 s.
func Audio() (*Clip, error) { return parseOgg(toneOgg) }

func parseIVF(data []byte) (*Clip, error) {
	if err := checkIVFFrameSizes(data); err != nil {
		return nil, err
	}
	r, hdr, err := ivfreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("clip: ivf: %w", err)
	}
	if string(hdr.FourCC[:]) != "VP80" {
		return nil, fmt.Errorf("clip: ivf codec %q, want VP80", hdr.FourCC)
	}
	if hdr.TimebaseNumerator == 0 || hdr.TimebaseDenominator == 0 {
		return nil, errors.New("clip: ivf has no time base")
	}
	frameDur := time.Duration(float64(time.Second) * float64(hdr.TimebaseNumerator) / float64(hdr.TimebaseDenominator))
	c := &Clip{Codec: "vp8"}
	for {
		f, _, err := r.ParseNextFrame()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("clip: ivf frame %d: %w", len(c.Frames), err)
		}
		if len(f) == 0 {
			continue
		}
		c.Frames = append(c.Frames, Frame{Data: f, Key: f[0]&0x01 == 0, Duration: frameDur})
	}
	if len(c.Frames) == 0 || !c.Frames[0].Key {
		return nil, errors.New("clip: ivf must start with a key frame")
	}
	return c, nil
}

// ivfFileHeader and ivfFrameHeader are the IVF header sizes in bytes.
const (
	ivfFileHeader  = 32
	ivfFrameHeader = 12
)

// checkIVFFrameSizes refuses frames longer than the bytes left: the IVF
// reader allocates each frame's declared size (up to 4 GiB) before reading
// it.
func checkIVFFrameSizes(data []byte) error {
	for off, n := ivfFileHeader, 0; len(data)-off >= ivfFrameHeader; n++ {
		size := uint64(binary.LittleEndian.Uint32(data[off:]))
		left := uint64(len(data) - off - ivfFrameHeader)
		if size > left {
			return fmt.Errorf("clip: ivf frame %d: %d bytes, only %d left", n, size, left)
		}
		off += ivfFrameHeader + int(size)
	}
	return nil
}

func parseOgg(data []byte) (*Clip, error) {
	r, _, err := oggreader.NewWith(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("clip: ogg: %w", err)
	}
	c := &Clip{Codec: "opus"}
	for {
		payload, _, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("clip: ogg page %d: %w", len(c.Frames), err)
		}
		if bytes.HasPrefix(payload, []byte("OpusTags")) || len(payload) == 0 {
			continue
		}
		d, err := OpusDuration(payload)
		if err != nil {
			return nil, fmt.Errorf("clip: ogg packet %d: %w", len(c.Frames), err)
		}
		c.Frames = append(c.Frames, Frame{Data: payload, Key: true, Duration: d})
	}
	if len(c.Frames) == 0 {
		return nil, errors.New("clip: ogg has no audio")
	}
	return c, nil
}

// OpusDuration is the playing time of one Opus packet (RFC 6716 §3.1).
func OpusDuration(p []byte) (time.Duration, error) {
	if len(p) == 0 {
		return 0, errors.New("empty opus packet")
	}
	config := p[0] >> 3
	var per time.Duration
	switch {
	case config < 12: // SILK: 10, 20, 40, 60 ms
		per = [4]time.Duration{10, 20, 40, 60}[config%4] * time.Millisecond
	case config < 16: // hybrid: 10, 20 ms
		per = [2]time.Duration{10, 20}[config%2] * time.Millisecond
	default: // CELT: 2.5, 5, 10, 20 ms
		per = [4]time.Duration{2500, 5000, 10000, 20000}[config%4] * time.Microsecond
	}
	n := 1
	switch p[0] & 0x03 {
	case 1, 2:
		n = 2
	case 3:
		if len(p) < 2 {
			return 0, errors.New("opus code 3 packet without frame count")
		}
		n = int(p[1] & 0x3f)
	}
	return per * time.Duration(n), nil
}

// Player loops a clip. It is not safe for concurrent use.
type Player struct {
	clip *Clip
	next int
}

// NewPlayer starts at the clip's first frame.
func NewPlayer(c *Clip) *Player { return &Player{clip: c} }

// Next returns the next frame, wrapping around at the end.
func (p *Player) Next() Frame {
	f := p.clip.Frames[p.next]
	p.next = (p.next + 1) % len(p.clip.Frames)
	return f
}

// SkipToKey moves to the next key frame, so a new subscriber can start
// decoding at once (used when a key frame is requested).
func (p *Player) SkipToKey() {
	for range len(p.clip.Frames) {
		if p.clip.Frames[p.next].Key {
			return
		}
		p.next = (p.next + 1) % len(p.clip.Frames)
	}
}
