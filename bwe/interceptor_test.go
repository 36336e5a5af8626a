package bwe

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

func TestInterceptorNumbersPacketsAndReadsFeedback(t *testing.T) {
	var est *Estimator
	clock := time.Unix(100, 0)
	f := &Factory{
		Config: Config{Initial: 1_000_000, Min: 100_000, Max: 10_000_000},
		OnNew:  func(_ string, e *Estimator) { est = e },
		Now:    func() time.Time { return clock },
	}
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	if est == nil || est != i.(*Interceptor).Estimator() {
		t.Fatal("OnNew was not given the interceptor's estimator")
	}
	info := &interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 5}}}
	var seqs []uint16
	w := i.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		ext := h.GetExtension(5)
		if len(ext) != 2 {
			t.Fatalf("transport-cc extension is %x", ext)
		}
		seqs = append(seqs, binary.BigEndian.Uint16(ext))
		return len(p), nil
	}))
	// Two streams of one connection share the numbering.
	w2 := i.BindLocalStream(info, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		seqs = append(seqs, binary.BigEndian.Uint16(h.GetExtension(5)))
		return len(p), nil
	}))
	h := &rtp.Header{Version: 2}
	for _, w := range []interceptor.RTPWriter{w, w2, w} {
		if _, err := w.Write(h, make([]byte, 100), nil); err != nil {
			t.Fatal(err)
		}
	}
	if len(seqs) != 3 || seqs[0] != 0 || seqs[1] != 1 || seqs[2] != 2 {
		t.Fatalf("transport sequence numbers %v, want [0 1 2]", seqs)
	}

	// Feedback on the way in reaches the estimator and passes unchanged.
	fb := encodeFeedback(1, []report{{seq: 0}, {seq: 1}, {seq: 2}}, true)
	r := i.BindRTCPReader(interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		return copy(b, fb), a, nil
	}))
	buf := make([]byte, 1500)
	n, _, err := r.Read(buf, nil)
	if err != nil || string(buf[:n]) != string(fb) {
		t.Fatalf("read %x, %v; want %x", buf[:n], err, fb)
	}
	if est.loss.average != 1 {
		t.Fatalf("three lost packets reported, loss average %v", est.loss.average)
	}

	// A stream without the extension negotiated is left alone.
	plain := i.BindLocalStream(&interceptor.StreamInfo{}, interceptor.RTPWriterFunc(func(h *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		if h.Extension {
			t.Fatal("extension added without transport-cc negotiated")
		}
		return len(p), nil
	}))
	if _, err := plain.Write(&rtp.Header{Version: 2}, nil, nil); err != nil {
		t.Fatal(err)
	}
}

func TestInterceptorWriteAllocatesNothing(t *testing.T) {
	f := &Factory{Config: Config{Initial: 1_000_000}}
	i, err := f.NewInterceptor("pc")
	if err != nil {
		t.Fatal(err)
	}
	info := &interceptor.StreamInfo{RTPHeaderExtensions: []interceptor.RTPHeaderExtension{{URI: sdp.TransportCCURI, ID: 3}}}
	w := i.BindLocalStream(info, interceptor.RTPWriterFunc(func(_ *rtp.Header, p []byte, _ interceptor.Attributes) (int, error) {
		return len(p), nil
	}))
	h := &rtp.Header{Version: 2, Extensions: make([]rtp.Extension, 0, 4)}
	payload := make([]byte, 1000)
	write := func() {
		h.Extension, h.Extensions = false, h.Extensions[:0]
		if _, err := w.Write(h, payload, nil); err != nil {
			t.Fatal(err)
		}
	}
	if n := testing.AllocsPerRun(1000, write); n != 0 {
		t.Fatalf("a write allocates %v times", n)
	}
}

func TestSeqBytesAreEveryNumber(t *testing.T) {
	for n := range 1 << 16 {
		b := seqBytes(uint16(n))
		if len(b) != 2 || cap(b) != 2 || binary.BigEndian.Uint16(b) != uint16(n) {
			t.Fatalf("%d: %x", n, b)
		}
	}
}
