package bot

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/stamp"
)

// maxLatencies bounds the samples kept per track.
const maxLatencies = 100_000

// receiver collects per-track statistics from reader goroutines.
type receiver struct {
	win    window       // what is counted
	plain  bool         // frames are not encrypted (Config.NoE2EE)
	first  atomic.Int64 // when the first frame was decrypted (Unix ns), 0 before
	mu     sync.Mutex
	tracks map[string]*TrackReport
	// onFrame and onEnded are Config.OnFrame and OnTrackEnded (nil: none).
	onFrame func(participantID, source string)
	onEnded func(TrackReport)
}

func newReceiver(w window, plainFrames bool, onFrame func(string, string), onEnded func(TrackReport)) *receiver {
	return &receiver{win: w, plain: plainFrames, tracks: map[string]*TrackReport{}, onFrame: onFrame, onEnded: onEnded}
}

// read consumes one remote track until it ends, assembling frames to read
// their send stamps.
func (r *receiver) read(ev client.Event, keys *group.Member) {
	t := ev.Track
	st := &TrackReport{ParticipantID: ev.Participant.ID, TrackID: ev.Info.ID, Kind: t.Kind().String(), Source: ev.Info.Source}
	if st.Source == "" { // a node that does not name sources
		st.Source = signal.DefaultSource(st.Kind)
	}
	var seen seqTracker
	var asm frameAssembler
	video := t.Kind() == webrtc.RTPCodecTypeVideo
	codec := mediaframe.CodecFromMIME(t.Codec().MimeType)
	var plain []byte
	buf := make([]byte, 1500)
	for {
		// Read ends when the session closes; the report says what arrived.
		n, _, err := t.Read(buf)
		if err != nil {
			break
		}
		var pkt rtp.Packet
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		seen.add(pkt.SequenceNumber)
		arrived := time.Now()
		if r.win.started(arrived) {
			st.Packets++
			st.Bytes += int64(n)
		}
		var frame []byte
		if len(pkt.Payload) == 0 {
			continue // padding only (bandwidth probing): no frame
		}
		packets := 1
		if video {
			frame, _ = asm.push(&pkt)
			packets = asm.packets
		} else {
			frame = pkt.Payload
		}
		if frame == nil {
			continue
		}
		if r.plain {
			plain, err = append(plain[:0], frame...), nil
		} else {
			plain, err = keys.Unprotect(plain[:0], codec, frame)
		}
		if err != nil {
			// Dropped and counted (from when the window starts), never used.
			if r.win.started(arrived) {
				st.dropped(err)
			}
			continue
		}
		r.first.CompareAndSwap(0, time.Now().UnixNano())
		var sent time.Time
		var ok bool
		if video {
			sent, ok = stamp.ReadVP8(plain)
		} else {
			sent, ok = stamp.ReadOpus(plain)
		}
		if ok && !r.win.has(sent) {
			continue
		}
		st.Frames++
		st.FramePackets += int64(packets)
		if r.onFrame != nil {
			r.onFrame(st.ParticipantID, st.Source)
		}
		if ok && len(st.latencies) < maxLatencies {
			st.latencies = append(st.latencies, float64(time.Since(sent).Microseconds())/1000)
		}
	}
	st.Lost = seen.lost()
	st.LatencyMs = Summarize(st.latencies)
	if r.onEnded != nil {
		r.onEnded(*st)
	}
	r.add(st)
}

// dropped counts a frame that did not decrypt by why. A frame under a key
// this member does not hold (yet), or one already received, is no failure
// of integrity; only the rest are counted as failures.
func (st *TrackReport) dropped(err error) {
	switch {
	case errors.Is(err, mediaframe.ErrNoKey) || errors.Is(err, sframe.ErrUnknownKID):
		st.NoKey++
	case errors.Is(err, sframe.ErrReplay):
		st.Replayed++
	default:
		st.DecryptFailures++
	}
}

func (r *receiver) add(st *TrackReport) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := st.ParticipantID + "/" + st.TrackID
	if old, ok := r.tracks[key]; ok { // the same track delivered again after renegotiation
		old.Packets += st.Packets
		old.Bytes += st.Bytes
		old.Frames += st.Frames
		old.Lost += st.Lost
		old.DecryptFailures += st.DecryptFailures
		old.NoKey += st.NoKey
		old.Replayed += st.Replayed
		old.latencies = append(old.latencies, st.latencies...)
		old.LatencyMs = Summarize(old.latencies)
		return
	}
	r.tracks[key] = st
}

// frameAssembler rebuilds VP8 frames from RTP packets: a frame is complete
// when the packets from the one that starts it to the one with the marker
// bit are all present. A frame the next one overtakes is dropped.
type frameAssembler struct {
	ts      uint32
	parts   []vp8Part
	started bool
	out     []byte
	packets int // of the frame push last returned
}

type vp8Part struct {
	seq     uint16
	start   bool
	payload []byte
}

func (a *frameAssembler) push(pkt *rtp.Packet) ([]byte, bool) {
	var d codecs.VP8Packet
	payload, err := d.Unmarshal(pkt.Payload)
	if err != nil {
		return nil, false
	}
	if !a.started || pkt.Timestamp != a.ts {
		a.ts, a.started, a.parts = pkt.Timestamp, true, a.parts[:0]
	}
	a.parts = append(a.parts, vp8Part{seq: pkt.SequenceNumber, start: d.S == 1 && d.PID == 0, payload: append([]byte(nil), payload...)})
	if !pkt.Marker {
		return nil, false
	}
	sort.Slice(a.parts, func(i, j int) bool { return int16(a.parts[i].seq-a.parts[j].seq) < 0 })
	if !a.parts[0].start {
		return nil, false
	}
	for i := 1; i < len(a.parts); i++ {
		if a.parts[i].seq != a.parts[i-1].seq+1 {
			return nil, false
		}
	}
	a.out, a.packets = a.out[:0], len(a.parts)
	for _, p := range a.parts {
		a.out = append(a.out, p.payload...)
	}
	a.parts = a.parts[:0]
	return a.out, true
}

// report is every track's statistics and when the first frame was
// decrypted (nil if none was).
func (r *receiver) report() ([]TrackReport, *time.Time) {
	var first *time.Time
	if ns := r.first.Load(); ns != 0 {
		t := time.Unix(0, ns).UTC()
		first = &t
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]TrackReport, 0, len(r.tracks))
	for _, t := range r.tracks {
		out = append(out, *t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].ParticipantID != out[j].ParticipantID {
			return out[i].ParticipantID < out[j].ParticipantID
		}
		if out[i].Kind != out[j].Kind {
			return out[i].Kind < out[j].Kind
		}
		return out[i].Source < out[j].Source
	})
	return out, first
}

// seqTracker counts RTP sequence numbers, extended across wrap-around, to
// tell how many packets never arrived. Duplicates (retransmissions that
// crossed the original) are recognised within a window of recent numbers,
// so memory stays constant however long a track runs.
type seqTracker struct {
	started  bool
	first    int64
	highest  int64
	received int64
	window   [seqWindow]int64 // window[ext mod seqWindow] = ext+seqMark once seen
}

const (
	seqWindow = 4096
	// seqMark keeps a stored number away from the zero of an unused slot;
	// extended numbers never fall below -seqMark.
	seqMark = 1 << 40
)

func (s *seqTracker) add(seq uint16) {
	var ext int64
	if !s.started {
		s.started, ext = true, int64(seq)
		s.first, s.highest = ext, ext
	} else {
		// The extended number closest to the highest seen.
		ext = s.highest&^0xffff | int64(seq)
		if ext < s.highest-0x8000 {
			ext += 0x10000
		} else if ext > s.highest+0x8000 {
			ext -= 0x10000
		}
		if ext < s.highest-seqWindow+1 {
			return // too old to tell from a duplicate; it was counted lost
		}
		if ext > s.highest {
			s.highest = ext
		}
		if ext < s.first {
			s.first = ext
		}
	}
	slot := &s.window[ext&(seqWindow-1)] // a mask, so numbers below zero index too
	if *slot != ext+seqMark {
		*slot = ext + seqMark
		s.received++
	}
}

func (s *seqTracker) lost() int64 {
	if !s.started {
		return 0
	}
	return max(s.highest-s.first+1-s.received, 0)
}
