package bwe

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/pion/rtcp"
)

// report is one status as a test writes it: arrival in µs after the
// reference time, or lost.
type report struct {
	seq      uint16
	received bool
	arrival  int64
}

// encodeFeedback writes a transport-cc feedback message the way a
// receiver does: two-bit status vectors (or a run of one symbol when
// runs is set), small deltas where they fit, large ones otherwise. The
// statuses must have consecutive sequence numbers and arrivals in 250 µs
// units.
func encodeFeedback(ref uint32, rs []report, runs bool) []byte {
	b := make([]byte, feedbackHeaderLen)
	b[0] = 0x80 | fmtTWCC
	b[1] = rtcpTransportFeedback
	binary.BigEndian.PutUint32(b[4:], 1)
	binary.BigEndian.PutUint32(b[8:], 2)
	if len(rs) > 0 {
		binary.BigEndian.PutUint16(b[12:], rs[0].seq)
	}
	binary.BigEndian.PutUint16(b[14:], uint16(len(rs)))
	b[16], b[17], b[18] = byte(ref>>16), byte(ref>>8), byte(ref)
	var deltas []byte
	syms := make([]int, len(rs))
	prev := int64(0)
	for i, r := range rs {
		if !r.received {
			continue
		}
		d := (r.arrival - prev) / deltaUnit
		prev = r.arrival
		if d >= 0 && d <= 255 {
			syms[i] = symbolSmallDelta
			deltas = append(deltas, byte(d))
		} else {
			syms[i] = symbolLargeDelta
			deltas = binary.BigEndian.AppendUint16(deltas, uint16(int16(d)))
		}
	}
	for i := 0; i < len(syms); {
		if runs {
			n := 1
			for i+n < len(syms) && syms[i+n] == syms[i] && n < 0x1fff {
				n++
			}
			b = binary.BigEndian.AppendUint16(b, uint16(syms[i])<<13|uint16(n))
			i += n
			continue
		}
		c := uint16(0xc000)
		for j := 0; j < 7 && i+j < len(syms); j++ {
			c |= uint16(syms[i+j]) << (12 - 2*j)
		}
		b = binary.BigEndian.AppendUint16(b, c)
		i += 7
	}
	b = append(b, deltas...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
	return b
}

func collect(f feedback) []report {
	var out []report
	f.each(func(seq uint16, received bool, arrival int64) {
		out = append(out, report{seq, received, arrival})
	}, nil)
	return out
}

// fromPion reads b with pion's parser, as the oracle: the statuses in
// order with their arrivals after the reference time.
func fromPion(t *testing.T, b []byte) ([]report, bool) {
	t.Helper()
	var p rtcp.TransportLayerCC
	if err := p.Unmarshal(b); err != nil {
		return nil, false
	}
	var out []report
	seq := p.BaseSequenceNumber
	d := 0
	var at int64
	emit := func(sym uint16) {
		r := report{seq: seq}
		if sym == rtcp.TypeTCCPacketReceivedSmallDelta || sym == rtcp.TypeTCCPacketReceivedLargeDelta {
			at += p.RecvDeltas[d].Delta
			d++
			r.received, r.arrival = true, at
		}
		out = append(out, r)
		seq++
	}
	left := int(p.PacketStatusCount)
	for _, c := range p.PacketChunks {
		switch c := c.(type) {
		case *rtcp.RunLengthChunk:
			for range min(int(c.RunLength), left) {
				emit(c.PacketStatusSymbol)
				left--
			}
		case *rtcp.StatusVectorChunk:
			for _, s := range c.SymbolList[:min(len(c.SymbolList), left)] {
				emit(s)
				left--
			}
		}
	}
	return out, true
}

func randomReports(r *rand.Rand, n int) []report {
	rs := make([]report, n)
	seq := uint16(r.Uint32())
	at := int64(0)
	for i := range rs {
		rs[i].seq = seq + uint16(i)
		if r.IntN(10) == 0 {
			continue
		}
		switch r.IntN(20) {
		case 0:
			at -= int64(r.IntN(400)) * deltaUnit // reordered: negative delta
		case 1:
			at += int64(256+r.IntN(30000)) * deltaUnit // a gap: large delta
		default:
			at += int64(r.IntN(40)) * deltaUnit
		}
		rs[i].received, rs[i].arrival = true, at
	}
	return rs
}

func TestFeedbackReadsWhatWasWritten(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		rs := randomReports(r, 1+r.IntN(300))
		ref := r.Uint32() & 0xffffff
		b := encodeFeedback(ref, rs, i%2 == 0)
		f, err := parseFeedback(b)
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if f.reference != ref || f.count != len(rs) {
			t.Fatalf("case %d: reference %d count %d, want %d %d", i, f.reference, f.count, ref, len(rs))
		}
		got := collect(f)
		if len(got) != len(rs) {
			t.Fatalf("case %d: %d statuses, want %d", i, len(got), len(rs))
		}
		for j := range rs {
			if got[j] != rs[j] {
				t.Fatalf("case %d status %d: got %+v, want %+v", i, j, got[j], rs[j])
			}
		}
		want, ok := fromPion(t, b)
		if !ok {
			continue // pion refuses some valid messages (a chunk ending the packet)
		}
		for j := range want {
			if want[j] != got[j] {
				t.Fatalf("case %d status %d: pion reads %+v, we read %+v", i, j, want[j], got[j])
			}
		}
	}
}

func TestFeedbackRefusesWhatDoesNotAddUp(t *testing.T) {
	rs := []report{{seq: 7, received: true, arrival: 1000}, {seq: 8}, {seq: 9, received: true, arrival: 90_000}}
	good := encodeFeedback(5, rs, false)
	if _, err := parseFeedback(good); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":              nil,
		"header only":        good[:8],
		"length beyond data": append([]byte{good[0], good[1], 0, 50}, good[4:]...),
		"count beyond chunks": func() []byte {
			// One chunk of seven statuses and an empty run, for eight.
			b := append(append([]byte(nil), good[:feedbackHeaderLen+2]...), 0, 0)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
			binary.BigEndian.PutUint16(b[14:], 8)
			return b
		}(),
		"deltas cut": func() []byte {
			b := append([]byte(nil), good[:feedbackHeaderLen+2]...)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)/4-1))
			return b
		}(),
		"reserved symbol": func() []byte {
			b := append([]byte(nil), good...)
			b[feedbackHeaderLen] |= 0x30 // first two-bit symbol = 3
			return b
		}(),
		"padding beyond length": func() []byte {
			b := append([]byte(nil), good...)
			b[0] |= 0x20
			b[len(b)-1] = 200
			return b
		}(),
	}
	for name, b := range cases {
		if _, err := parseFeedback(b); err == nil {
			t.Errorf("%s: read without an error", name)
		}
	}
}

func TestCompoundRTCPFindsTheFeedbackAmongOtherPackets(t *testing.T) {
	fb := encodeFeedback(1, []report{{seq: 3, received: true, arrival: 500}}, false)
	rr, err := (&rtcp.ReceiverReport{SSRC: 9}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	pli, err := (&rtcp.PictureLossIndication{MediaSSRC: 4}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	var seen []report
	bad := eachFeedback(append(append(append(rr, fb...), pli...), fb[:9]...), func(f feedback) { seen = append(seen, collect(f)...) })
	if len(seen) != 1 || seen[0] != (report{3, true, 500}) {
		t.Fatalf("feedback read: %+v", seen)
	}
	if bad != 1 {
		t.Fatalf("truncated trailing feedback counted %d times, want 1", bad)
	}
}

// FuzzFeedback: any bytes are read without a panic, what is read stays
// within the message, and a message pion also reads gives the same
// statuses.
func FuzzFeedback(f *testing.F) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := range 8 {
		f.Add(encodeFeedback(r.Uint32()&0xffffff, randomReports(r, 1+r.IntN(40)), i%2 == 0))
	}
	f.Add([]byte{0x8f, 205, 0, 4, 0, 0, 0, 1, 0, 0, 0, 2, 0, 1, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		eachFeedback(b, func(fb feedback) {
			n := 0
			fb.each(func(uint16, bool, int64) { n++ }, func(_ uint16, g int) { n += g })
			if n > fb.count {
				t.Fatalf("%d statuses from a count of %d", n, fb.count)
			}
		})
		fb, err := parseFeedback(b)
		if err != nil {
			return
		}
		got := collect(fb)
		if len(got) != fb.count {
			t.Fatalf("%d statuses from a count of %d", len(got), fb.count)
		}
		want, ok := fromPion(t, b)
		if !ok || b[0]&0x20 != 0 {
			return
		}
		if len(want) != len(got) {
			t.Fatalf("pion reads %d statuses, we read %d", len(want), len(got))
		}
		for j := range want {
			if want[j] != got[j] {
				t.Fatalf("status %d: pion reads %+v, we read %+v", j, want[j], got[j])
			}
		}
	})
}

func TestOnlyFeedback(t *testing.T) {
	fb := encodeFeedback(1, []report{{seq: 3, received: true, arrival: 500}}, false)
	pli, err := (&rtcp.PictureLossIndication{MediaSSRC: 4}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		b    []byte
		want bool
	}{
		{"one feedback", fb, true},
		{"two feedbacks", append(append([]byte(nil), fb...), fb...), true},
		{"feedback and a PLI", append(append([]byte(nil), fb...), pli...), false},
		{"a PLI", pli, false},
		{"empty", nil, false},
		{"truncated feedback", fb[:len(fb)-4], false},
		{"trailing bytes", append(append([]byte(nil), fb...), 1, 2), false},
	} {
		if got := OnlyFeedback(c.b); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}
