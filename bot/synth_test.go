package bot

import (
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/stamp"
)

func TestSyntheticFramesAreVP8OfTheirSize(t *testing.T) {
	s := newSynthSource(Synthetic{FrameBytes: 6250, FPS: 30}, 1)
	var keys []int
	var prev []byte
	for i := range 200 {
		f := s.next(i == 70) // the node asks for a key frame once
		if len(f.Data) != 6250-stamp.Len {
			t.Fatalf("frame %d: %d bytes, want %d and the stamp", i, len(f.Data), 6250-stamp.Len)
		}
		if f.Duration.Seconds()*30 < 0.999 || f.Duration.Seconds()*30 > 1.001 {
			t.Fatalf("frame %d lasts %s", i, f.Duration)
		}
		tag := uint32(f.Data[0]) | uint32(f.Data[1])<<8 | uint32(f.Data[2])<<16
		key := tag&1 == 0
		if key != f.Key || tag>>1&7 != 0 || tag>>4&1 != 1 || tag>>5 != uint32(len(f.Data)-10) {
			t.Fatalf("frame %d: tag %06x (key %v)", i, tag, f.Key)
		}
		if key {
			keys = append(keys, i)
			if f.Data[3] != 0x9d || f.Data[4] != 0x01 || f.Data[5] != 0x2a {
				t.Fatalf("key frame %d without the start code", i)
			}
		}
		if prev != nil && string(prev[10:40]) == string(f.Data[10:40]) {
			t.Fatalf("frame %d repeats the last one's payload", i)
		}
		prev = append(prev[:0], f.Data...)
	}
	// Every 60 frames, and at once when asked, counting on from there.
	want := []int{0, 60, 70, 130, 190}
	if len(keys) != len(want) {
		t.Fatalf("key frames at %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("key frames at %v, want %v", keys, want)
		}
	}
}

func TestRunRefusesABadSyntheticShape(t *testing.T) {
	// Refused before anything is asked of the (unreachable) server; a
	// frame too small for its header would otherwise panic the sender.
	for _, tc := range []struct {
		s    Synthetic
		want string
	}{{Synthetic{FrameBytes: 5, FPS: 30}, "video frame bytes 5"}, {Synthetic{FrameBytes: 6250, FPS: 0}, "fps 0"}} {
		_, err := Run(t.Context(), Config{Server: "http://127.0.0.1:1", Synthetic: &tc.s})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %q", tc.s, err, tc.want)
		}
	}
}
