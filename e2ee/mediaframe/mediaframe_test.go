package mediaframe

import (
	"bytes"
	"errors"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

var baseKey = bytes.Repeat([]byte{7}, 32)

// A VP8 key frame starts with a frame tag whose bit 0 is 0, the start code
// 9d 01 2a, then width and height (here 640x480).
var (
	vp8Key   = append([]byte{0x50, 0x2d, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0xe0, 0x01}, bytes.Repeat([]byte{0xaa}, 200)...)
	vp8Inter = append([]byte{0x31, 0x0b, 0x00}, bytes.Repeat([]byte{0xbb}, 50)...)
	opus     = append([]byte{0x78}, bytes.Repeat([]byte{0xcc}, 60)...)
)

func newPair(t testing.TB) (*Protector, *Unprotector, *sframe.Receiver) {
	t.Helper()
	s, err := sframe.NewSender(sframe.AES128GCM, 4, baseKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := sframe.NewReceiver(sframe.AES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(4, baseKey); err != nil {
		t.Fatal(err)
	}
	return NewProtector(s), NewUnprotector(r), r
}

func TestPrefixLen(t *testing.T) {
	tests := []struct {
		codec Codec
		frame []byte
		want  int
	}{
		{VP8, vp8Key, 10},
		{VP8, vp8Inter, 3},
		{VP8, []byte{0x00}, 10}, // key frame bit, even if too short
		{VP8, nil, 3},
		{Opus, opus, 1},
		{Opus, nil, 1},
		{Other, vp8Key, 0},
		{Codec(99), opus, 0},
	}
	for _, tc := range tests {
		if got := PrefixLen(tc.codec, tc.frame); got != tc.want {
			t.Errorf("PrefixLen(%v, % x...) = %d, want %d", tc.codec, tc.frame[:min(len(tc.frame), 2)], got, tc.want)
		}
	}
}

func TestCodecFromMIME(t *testing.T) {
	for mime, want := range map[string]Codec{"video/VP8": VP8, "VIDEO/vp8": VP8, "audio/opus": Opus, "video/H264": Other, "": Other} {
		if got := CodecFromMIME(mime); got != want {
			t.Errorf("CodecFromMIME(%q) = %v, want %v", mime, got, want)
		}
	}
}

// TestLayout pins the wire format: prefix in the clear, then exactly what an
// SFrame sender makes of the rest with the prefix as metadata.
func TestLayout(t *testing.T) {
	for _, tc := range []struct {
		codec Codec
		frame []byte
	}{{VP8, vp8Key}, {VP8, vp8Inter}, {Opus, opus}, {Other, opus}, {Other, nil}} {
		p, u, _ := newPair(t)
		ref, _ := sframe.NewSender(sframe.AES128GCM, 4, baseKey)
		n := PrefixLen(tc.codec, tc.frame)
		got, err := p.Protect(nil, tc.codec, tc.frame)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := ref.Encrypt(bytes.Clone(tc.frame[:n]), tc.frame[:n], tc.frame[n:])
		if !bytes.Equal(got, want) {
			t.Fatalf("%v: protected frame\n%x\nwant\n%x", tc.codec, got, want)
		}
		back, err := u.Unprotect(nil, tc.codec, got)
		if err != nil || !bytes.Equal(back, tc.frame) {
			t.Fatalf("%v: Unprotect = %v", tc.codec, err)
		}
	}
}

func TestShortFramesRefused(t *testing.T) {
	p, u, _ := newPair(t)
	for _, tc := range []struct {
		codec Codec
		frame []byte
	}{{VP8, vp8Key[:9]}, {VP8, vp8Inter[:2]}, {VP8, nil}, {Opus, nil}} {
		if out, err := p.Protect(nil, tc.codec, tc.frame); !errors.Is(err, ErrShortFrame) || out != nil {
			t.Errorf("Protect(%v, %d bytes) = %x, %v; want ErrShortFrame", tc.codec, len(tc.frame), out, err)
		}
		if out, err := u.Unprotect(nil, tc.codec, tc.frame); !errors.Is(err, ErrShortFrame) || out != nil {
			t.Errorf("Unprotect(%v, %d bytes) = %x, %v; want ErrShortFrame", tc.codec, len(tc.frame), out, err)
		}
	}
	if got := p.Stats(); got.Dropped != 4 || got.Short != 4 || got.Passed != 0 {
		t.Errorf("Protector stats %+v", got)
	}
	if got := u.Stats(); got.Dropped != 4 || got.Short != 4 {
		t.Errorf("Unprotector stats %+v", got)
	}
}

func TestFailuresDroppedAndCounted(t *testing.T) {
	p, u, r := newPair(t)
	key, _ := p.Protect(nil, VP8, vp8Key)
	key2, _ := p.Protect(nil, VP8, vp8Key)
	inter, _ := p.Protect(nil, VP8, vp8Inter)
	audio, _ := p.Protect(nil, Opus, opus)
	if _, err := u.Unprotect(nil, VP8, key); err != nil {
		t.Fatal(err)
	}

	flipped := func(f []byte, i int) []byte {
		f = bytes.Clone(f)
		f[i] ^= 0x04
		return f
	}
	tests := []struct {
		name  string
		codec Codec
		frame []byte
		want  error
	}{
		{"replayed", VP8, key, sframe.ErrReplay},
		{"clear prefix altered", VP8, flipped(key2, 7), sframe.ErrAuth}, // the height
		{"opus TOC altered", Opus, flipped(audio, 0), sframe.ErrAuth},
		{"ciphertext altered", VP8, flipped(inter, len(inter)-20), sframe.ErrAuth},
		{"wrong codec", Opus, inter, nil}, // prefix length differs: fails somewhere
		{"cut after prefix", VP8, inter[:3], sframe.ErrTruncated},
		// KID 4 written in an extra byte instead of the config byte.
		{"header not minimal", VP8, append(append(bytes.Clone(inter[:3]), 0x80|inter[3]&0x0f, inter[3]>>4), inter[4:]...), sframe.ErrMalformedHeader},
	}
	for _, tc := range tests {
		dst := make([]byte, 0, 512)
		out, err := u.Unprotect(dst, tc.codec, tc.frame)
		if err == nil || out != nil || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("%s: Unprotect = %d bytes, %v; want nil, %v", tc.name, len(out), err, tc.want)
		}
	}
	r.RemoveKey(4)
	if _, err := u.Unprotect(nil, Opus, audio); !errors.Is(err, sframe.ErrUnknownKID) {
		t.Errorf("after RemoveKey: %v", err)
	}
	st := u.Stats()
	if st.Passed != 1 || st.Dropped != uint64(len(tests)+1) || st.Replay != 1 || st.Auth < 3 || st.Short != 1 || st.NoKey != 1 || st.Malformed < 1 {
		t.Errorf("stats %+v", st)
	}
}

type failingEncrypter struct{ err error }

func (f failingEncrypter) Encrypt(_, _, _ []byte) ([]byte, error) { return nil, f.err }

func TestProtectEncrypterFailureCounted(t *testing.T) {
	p := NewProtector(failingEncrypter{ErrNoKey})
	if out, err := p.Protect(nil, Opus, opus); !errors.Is(err, ErrNoKey) || out != nil {
		t.Fatalf("Protect = %x, %v", out, err)
	}
	if st := p.Stats(); st.Dropped != 1 || st.NoKey != 1 {
		t.Fatalf("stats %+v", st)
	}
}

func TestZeroAllocs(t *testing.T) {
	p, u, _ := newPair(t)
	enc := make([]byte, 0, 2048)
	if a := testing.AllocsPerRun(100, func() {
		if _, err := p.Protect(enc[:0], VP8, vp8Key); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Errorf("Protect allocates %.1f per frame", a)
	}
	frames := make([][]byte, 128)
	for i := range frames {
		frames[i], _ = p.Protect(nil, VP8, vp8Inter)
	}
	dec := make([]byte, 0, 2048)
	i := 0
	if a := testing.AllocsPerRun(100, func() {
		if _, err := u.Unprotect(dec[:0], VP8, frames[i]); err != nil {
			t.Fatal(err)
		}
		i++
	}); a != 0 {
		t.Errorf("Unprotect allocates %.1f per frame", a)
	}
}

func FuzzUnprotect(f *testing.F) {
	p, _, _ := newPair(f)
	for _, fr := range [][]byte{vp8Key, vp8Inter, opus} {
		out, _ := p.Protect(nil, CodecFromMIME("video/VP8"), fr)
		f.Add(uint8(VP8), out)
	}
	f.Add(uint8(Opus), []byte{0x78})
	f.Fuzz(func(t *testing.T, codec uint8, frame []byte) {
		_, u, _ := newPair(t)
		out, err := u.Unprotect(nil, Codec(codec%3), frame)
		if err != nil && out != nil {
			t.Fatalf("error %v with %d bytes of output", err, len(out))
		}
		st := u.Stats()
		if st.Passed+st.Dropped != 1 {
			t.Fatalf("frame counted %d times", st.Passed+st.Dropped)
		}
	})
}
