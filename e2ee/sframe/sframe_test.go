package sframe

import (
	"bytes"
	"errors"
	"math"
	"sync"
	"testing"
)

var allSuites = []Suite{
	AES128CTRHMAC80, AES128CTRHMAC64, AES128CTRHMAC32, AES128GCM, AES256GCM,
	AES256CTRHMAC80, AES256CTRHMAC64, AES256CTRHMAC32,
}

var testBaseKey = bytes.Repeat([]byte{0x42}, 32)

func newPair(t testing.TB, suite Suite, kid uint64) (*Sender, *Receiver) {
	t.Helper()
	s, err := NewSender(suite, kid, testBaseKey)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewReceiver(suite)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.AddKey(kid, testBaseKey); err != nil {
		t.Fatal(err)
	}
	return s, r
}

func TestRoundTrip(t *testing.T) {
	for _, suite := range allSuites {
		for _, kid := range []uint64{0, 7, 8, 1 << 20, math.MaxUint64} {
			s, r := newPair(t, suite, kid)
			for i, size := range []int{0, 1, 15, 16, 17, 1200, 5000} {
				pt := bytes.Repeat([]byte{byte(i + 1)}, size)
				md := []byte("clear prefix")[:i%3*4]
				frame, err := s.Encrypt([]byte("keep"), md, pt)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.HasPrefix(frame, []byte("keep")) {
					t.Fatalf("%v: Encrypt did not append to dst", suite)
				}
				frame = frame[4:]
				h, n, err := ParseHeader(frame)
				if err != nil || h != (Header{KID: kid, CTR: uint64(i)}) {
					t.Fatalf("%v: header %+v, %v; want KID %d CTR %d", suite, h, err, kid, i)
				}
				if want := n + size + suite.TagSize(); len(frame) != want {
					t.Fatalf("%v: frame is %d bytes, want %d", suite, len(frame), want)
				}
				if size > 8 && bytes.Contains(frame, pt[:8]) {
					t.Fatalf("%v: plaintext visible in frame", suite)
				}
				got, err := r.Decrypt([]byte("x"), md, frame)
				if err != nil || !bytes.Equal(got, append([]byte("x"), pt...)) {
					t.Fatalf("%v size %d: Decrypt = %v", suite, size, err)
				}
			}
		}
	}
}

func TestDecryptRejects(t *testing.T) {
	for _, suite := range []Suite{AES128GCM, AES128CTRHMAC32} {
		s, _ := newPair(t, suite, 300)
		md := []byte{0x9d, 0x01, 0x2a}
		frame, err := s.Encrypt(nil, md, []byte("a media frame of some length"))
		if err != nil {
			t.Fatal(err)
		}
		hdrLen := Header{KID: 300}.Len()
		flip := func(i int) []byte {
			f := bytes.Clone(frame)
			f[i] ^= 0x01
			return f
		}
		tests := []struct {
			name     string
			frame    []byte
			metadata []byte
			want     error
		}{
			{"empty", nil, md, ErrTruncated},
			{"header cut", frame[:2], md, ErrTruncated},
			{"no room for tag", frame[:hdrLen+suite.TagSize()-1], md, ErrTruncated},
			{"non-minimal KID", []byte{0x80, 0x05, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, md, ErrMalformedHeader},
			{"leading zero KID", []byte{0x90, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, md, ErrMalformedHeader},
			{"unknown KID", append(Header{KID: 301}.Append(nil), frame[hdrLen:]...), md, ErrUnknownKID},
			{"header CTR changed", append(Header{KID: 300, CTR: 1}.Append(nil), frame[hdrLen:]...), md, ErrAuth},
			{"ciphertext changed", flip(hdrLen + 2), md, ErrAuth},
			{"tag changed", flip(len(frame) - 1), md, ErrAuth},
			{"metadata changed", frame, []byte{0x9d, 0x01, 0x2b}, ErrAuth},
			{"metadata missing", frame, nil, ErrAuth},
		}
		for _, tc := range tests {
			_, r := newPair(t, suite, 300)
			dst := make([]byte, 0, 256)
			got, err := r.Decrypt(dst, tc.metadata, tc.frame)
			if !errors.Is(err, tc.want) || got != nil {
				t.Errorf("%v %s: Decrypt = %x, %v; want nil, %v", suite, tc.name, got, err, tc.want)
			}
			if !allZero(dst[:cap(dst)]) {
				t.Errorf("%v %s: plaintext left in dst", suite, tc.name)
			}
		}
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func TestReplayRejected(t *testing.T) {
	s, r := newPair(t, AES128GCM, 1)
	var frames [][]byte
	for range ReplayWindow + 10 {
		f, err := s.Encrypt(nil, nil, []byte("frame"))
		if err != nil {
			t.Fatal(err)
		}
		frames = append(frames, f)
	}
	decrypt := func(i int) error {
		_, err := r.Decrypt(nil, nil, frames[i])
		return err
	}
	steps := []struct {
		frame int
		want  error
	}{
		{5, nil},
		{5, ErrReplay},
		{3, nil}, // late but inside the window
		{3, ErrReplay},
		{4, nil},
		{ReplayWindow + 3, nil}, // moves the top to 1027
		{4, ErrReplay},          // top-4 = 1023 < window but already accepted
		{3, ErrReplay},          // top-3 = 1024: out of the window
		{ReplayWindow + 9, nil},
		{ReplayWindow + 4, nil}, // shares a slot with 4: the move must have cleared it
		{ReplayWindow + 5, nil}, // shares a slot with 5
		{ReplayWindow + 8, nil},
		{ReplayWindow + 3, ErrReplay},
		{10, nil}, // top-10 = 1023: the oldest counter still inside, never seen
		{10, ErrReplay},
	}
	for i, st := range steps {
		if err := decrypt(st.frame); !errors.Is(err, st.want) {
			t.Fatalf("step %d frame %d: err %v, want %v", i, st.frame, err, st.want)
		}
	}
	// A key re-added under the same KID starts a fresh window.
	if err := r.AddKey(1, testBaseKey); err != nil {
		t.Fatal(err)
	}
	if err := decrypt(5); err != nil {
		t.Fatalf("after AddKey: %v", err)
	}
}

func TestRemoveKey(t *testing.T) {
	s, r := newPair(t, AES128GCM, 9)
	f, _ := s.Encrypt(nil, nil, []byte("x"))
	r.RemoveKey(9)
	r.RemoveKey(9) // absent: no effect
	if r.HasKey(9) {
		t.Fatal("HasKey after RemoveKey")
	}
	if _, err := r.Decrypt(nil, nil, f); !errors.Is(err, ErrUnknownKID) {
		t.Fatalf("Decrypt after RemoveKey: %v", err)
	}
}

func TestAddRemoveKeys(t *testing.T) {
	r, err := NewReceiver(AES128GCM)
	if err != nil {
		t.Fatal(err)
	}
	kids := []uint64{3, 4, 5}
	other := bytes.Repeat([]byte{0x43}, 32)
	if err := r.AddKeys(kids, [][]byte{testBaseKey, other, testBaseKey}); err != nil {
		t.Fatal(err)
	}
	for i, kid := range kids {
		base := testBaseKey
		if i == 1 {
			base = other
		}
		s, _ := NewSender(AES128GCM, kid, base)
		f, _ := s.Encrypt(nil, nil, []byte("x"))
		if _, err := r.Decrypt(nil, nil, f); err != nil {
			t.Fatalf("kid %d: %v", kid, err)
		}
	}
	if err := r.AddKeys([]uint64{6, 7}, [][]byte{testBaseKey, nil}); !errors.Is(err, ErrShortKey) || r.HasKey(6) {
		t.Fatalf("AddKeys with a short key: %v, kid 6 added: %v", err, r.HasKey(6))
	}
	if err := r.AddKeys([]uint64{6}, nil); err == nil {
		t.Fatal("AddKeys with fewer keys than kids")
	}
	r.RemoveKeys([]uint64{3, 5, 99})
	if r.HasKey(3) || !r.HasKey(4) || r.HasKey(5) {
		t.Fatal("RemoveKeys removed the wrong keys")
	}
}

func TestCounterExhausted(t *testing.T) {
	s, r := newPair(t, AES128GCM, 2)
	s.next = math.MaxUint64 - 1
	for _, want := range []uint64{math.MaxUint64 - 1, math.MaxUint64} {
		f, err := s.Encrypt(nil, nil, []byte("x"))
		if err != nil {
			t.Fatal(err)
		}
		if h, _, _ := ParseHeader(f); h.CTR != want {
			t.Fatalf("CTR %d, want %d", h.CTR, want)
		}
		if _, err := r.Decrypt(nil, nil, f); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 {
		if f, err := s.Encrypt(nil, nil, []byte("x")); !errors.Is(err, ErrCounterExhausted) || f != nil {
			t.Fatalf("Encrypt after the last CTR = %x, %v; want ErrCounterExhausted", f, err)
		}
	}
}

func TestConcurrentEncryptNeverReusesCounter(t *testing.T) {
	s, r := newPair(t, AES128GCM, 3)
	const workers, each = 4, 200
	frames := make(chan []byte, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				f, err := s.Encrypt(nil, nil, []byte("frame"))
				if err != nil {
					t.Error(err)
					return
				}
				frames <- f
			}
		})
	}
	wg.Wait()
	close(frames)
	seen := map[uint64]bool{}
	for f := range frames {
		h, _, err := ParseHeader(f)
		if err != nil || seen[h.CTR] {
			t.Fatalf("CTR %d reused or bad header: %v", h.CTR, err)
		}
		seen[h.CTR] = true
		if _, err := r.Decrypt(nil, nil, f); err != nil {
			t.Fatal(err)
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d frames, want %d", len(seen), workers*each)
	}
}

func TestConstructorErrors(t *testing.T) {
	if _, err := NewSender(Suite(0x0099), 1, testBaseKey); !errors.Is(err, ErrUnsupportedSuite) {
		t.Errorf("NewSender unsupported suite: %v", err)
	}
	if _, err := NewReceiver(Suite(0)); !errors.Is(err, ErrUnsupportedSuite) {
		t.Errorf("NewReceiver unsupported suite: %v", err)
	}
	if _, err := NewSender(AES128GCM, 1, make([]byte, MinBaseKeySize-1)); !errors.Is(err, ErrShortKey) {
		t.Errorf("NewSender short key: %v", err)
	}
	r, _ := NewReceiver(AES128GCM)
	if err := r.AddKey(1, nil); !errors.Is(err, ErrShortKey) {
		t.Errorf("AddKey short key: %v", err)
	}
	if Suite(0x0099).Supported() || Suite(0x0099).String() != "Suite(0x0099)" || Suite(0x0099).TagSize() != 0 {
		t.Error("unsupported suite reports itself as supported")
	}
	if AES128GCM.Overhead() != 17+16 {
		t.Errorf("Overhead = %d", AES128GCM.Overhead())
	}
}

func TestZeroAllocs(t *testing.T) {
	for _, suite := range []Suite{AES128GCM, AES256GCM, AES128CTRHMAC80} {
		for _, md := range [][]byte{nil, []byte("0123456789")} {
			s, r := newPair(t, suite, 1<<16|3)
			pt := make([]byte, 1200)
			enc := make([]byte, 0, 2048)
			if a := testing.AllocsPerRun(100, func() {
				if _, err := s.Encrypt(enc[:0], md, pt); err != nil {
					t.Fatal(err)
				}
			}); a != 0 {
				t.Errorf("%v metadata %d: Encrypt allocates %.1f per frame", suite, len(md), a)
			}
			// Decrypt needs a fresh counter each run, or the replay window
			// rejects it.
			frames := make([][]byte, 128)
			for i := range frames {
				frames[i], _ = s.Encrypt(nil, md, pt)
			}
			dec := make([]byte, 0, 2048)
			i := 0
			if a := testing.AllocsPerRun(100, func() {
				if _, err := r.Decrypt(dec[:0], md, frames[i]); err != nil {
					t.Fatal(err)
				}
				i++
			}); a != 0 {
				t.Errorf("%v metadata %d: Decrypt allocates %.1f per frame", suite, len(md), a)
			}
		}
	}
}
