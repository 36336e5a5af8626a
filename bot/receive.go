package bot

import (
	"sort"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media/samplebuilder"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/stamp"
)

// maxLatencies bounds the samples kept per track.
const maxLatencies = 100_000

// receiver collects per-track statistics from reader goroutines.
type receiver struct {
	mu     sync.Mutex
	tracks map[string]*TrackReport
}

func newReceiver() *receiver { return &receiver{tracks: map[string]*TrackReport{}} }

// read consumes one remote track until it ends, assembling frames to read
// their send stamps.
func (r *receiver) read(ev client.Event) {
	t := ev.Track
	kind := t.Kind().String()
	var sb *samplebuilder.SampleBuilder
	readStamp := stamp.ReadOpus
	if t.Kind() == webrtc.RTPCodecTypeVideo {
		sb = samplebuilder.New(256, &codecs.VP8Packet{}, t.Codec().ClockRate)
		readStamp = stamp.ReadVP8
	} else {
		sb = samplebuilder.New(64, &codecs.OpusPacket{}, t.Codec().ClockRate)
	}
	st := &TrackReport{ParticipantID: ev.Participant.ID, TrackID: ev.Info.ID, Kind: kind}
	var seen seqTracker
	buf := make([]byte, 1500)
	for {
		// Read ends when the session closes; the report says what arrived.
		n, _, err := t.Read(buf)
		if err != nil {
			break
		}
		// A fresh packet per read: the sample builder keeps packets until
		// their frame is complete.
		pkt := &rtp.Packet{}
		if err := pkt.Unmarshal(buf[:n]); err != nil {
			continue
		}
		st.Packets++
		seen.add(pkt.SequenceNumber)
		sb.Push(pkt)
		for s := sb.Pop(); s != nil; s = sb.Pop() {
			st.Frames++
			if sent, ok := readStamp(s.Data); ok && len(st.latencies) < maxLatencies {
				st.latencies = append(st.latencies, float64(time.Since(sent).Microseconds())/1000)
			}
		}
	}
	st.Lost = seen.lost()
	st.LatencyMs = summarize(st.latencies)
	r.mu.Lock()
	defer r.mu.Unlock()
	key := st.ParticipantID + "/" + st.TrackID
	if old, ok := r.tracks[key]; ok { // the same track delivered again after renegotiation
		old.Packets += st.Packets
		old.Frames += st.Frames
		old.Lost += st.Lost
		old.latencies = append(old.latencies, st.latencies...)
		old.LatencyMs = summarize(old.latencies)
		return
	}
	r.tracks[key] = st
}

func (r *receiver) report() []TrackReport {
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
		return out[i].Kind < out[j].Kind
	})
	return out
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
