package clip

import (
	"testing"
	"time"
)

func TestVideo(t *testing.T) {
	c, err := Video()
	if err != nil {
		t.Fatal(err)
	}
	if c.Codec != "vp8" || len(c.Frames) != 60 {
		t.Fatalf("codec %s, %d frames", c.Codec, len(c.Frames))
	}
	keys := 0
	for i, f := range c.Frames {
		if f.Duration != time.Second/30 {
			t.Fatalf("frame %d lasts %s", i, f.Duration)
		}
		if f.Key {
			keys++
		}
	}
	if keys != 2 || !c.Frames[0].Key || !c.Frames[30].Key {
		t.Fatalf("%d key frames", keys)
	}
}

func TestAudio(t *testing.T) {
	c, err := Audio()
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for i, f := range c.Frames {
		if f.Duration != 20*time.Millisecond {
			t.Fatalf("packet %d lasts %s", i, f.Duration)
		}
		total += f.Duration
	}
	if c.Codec != "opus" || total < 1900*time.Millisecond || total > 2100*time.Millisecond {
		t.Fatalf("codec %s, %s of audio", c.Codec, total)
	}
}

func TestPlayerLoopsAndSkipsToKey(t *testing.T) {
	c, _ := Video()
	p := NewPlayer(c)
	for range 61 {
		p.Next()
	}
	// After a full loop plus one frame, the next key frame is frame 30.
	p.SkipToKey()
	if f := p.Next(); &f.Data[0] != &c.Frames[30].Data[0] {
		t.Fatal("SkipToKey did not land on the second key frame")
	}
}

func TestBadInput(t *testing.T) {
	if _, err := parseIVF([]byte("not an ivf file at all, not at all")); err == nil {
		t.Fatal("garbage ivf accepted")
	}
	if _, err := parseOgg([]byte("OggS garbage")); err == nil {
		t.Fatal("garbage ogg accepted")
	}
	if _, err := OpusDuration(nil); err == nil {
		t.Fatal("empty opus packet accepted")
	}
	if _, err := OpusDuration([]byte{0x03}); err == nil {
		t.Fatal("truncated code 3 accepted")
	}
}

func TestOpusDuration(t *testing.T) {
	for _, tc := range []struct {
		p    []byte
		want time.Duration
	}{
		{[]byte{0xf8}, 20 * time.Millisecond},           // CELT FB 20 ms, code 0
		{[]byte{0xf9}, 40 * time.Millisecond},           // code 1: two frames
		{[]byte{0x1b, 0x03}, 3 * 60 * time.Millisecond}, // SILK 60 ms, 3 frames
		{[]byte{0x80}, 2500 * time.Microsecond},         // CELT 2.5 ms
		{[]byte{0x60}, 10 * time.Millisecond},           // hybrid 10 ms
	} {
		got, err := OpusDuration(tc.p)
		if err != nil || got != tc.want {
			t.Errorf("%x: %s, %v; want %s", tc.p, got, err, tc.want)
		}
	}
}

// The parsers answer any input with a clip or an error, never a panic, and
// a clip they accept can be played.
func FuzzParse(f *testing.F) {
	f.Add(patternIVF[:min(len(patternIVF), 512)])
	f.Add(toneOgg[:min(len(toneOgg), 512)])
	f.Add([]byte("DKIF"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, parse := range []func([]byte) (*Clip, error){parseIVF, parseOgg} {
			c, err := parse(data)
			if err != nil {
				continue
			}
			p := NewPlayer(c)
			p.SkipToKey()
			p.Next()
		}
	})
}

func FuzzOpusDuration(f *testing.F) {
	f.Add([]byte{0xf8})
	f.Add([]byte{0x1b, 0x03})
	f.Fuzz(func(t *testing.T, p []byte) {
		if d, err := OpusDuration(p); err == nil && (d < 0 || d > 63*60*time.Millisecond) {
			t.Fatalf("%x: duration %s", p, d)
		}
	})
}
