package bwe

import (
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
)

// Factory makes one Interceptor per PeerConnection. It replaces pion's
// transport-cc header interceptor and its cc/gcc pair on the sending side:
// it numbers every RTP packet the connection sends with a transport
// sequence number, keeps the estimate from the feedback the connection
// receives, and hands each estimator to OnNew.
type Factory struct {
	Config Config
	// OnNew, if set, is called once per PeerConnection with its estimator.
	OnNew func(id string, e *Estimator)
	// Now is the clock; time.Now if nil.
	Now func() time.Time
}

// NewInterceptor implements interceptor.Factory.
func (f *Factory) NewInterceptor(id string) (interceptor.Interceptor, error) {
	now := f.Now
	if now == nil {
		now = time.Now
	}
	i := &Interceptor{est: New(f.Config, now()), now: now}
	if f.OnNew != nil {
		f.OnNew(id, i.est)
	}
	return i, nil
}

// Interceptor is one PeerConnection's estimator in pion's chains.
type Interceptor struct {
	interceptor.NoOp
	est *Estimator
	now func() time.Time
}

// Estimator is the connection's estimator.
func (i *Interceptor) Estimator() *Estimator { return i.est }

// BindLocalStream numbers the stream's packets, if the connection
// negotiated the transport-cc header extension.
func (i *Interceptor) BindLocalStream(info *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	var id uint8
	for _, e := range info.RTPHeaderExtensions {
		if e.URI == sdp.TransportCCURI {
			id = uint8(e.ID)
			break
		}
	}
	if id == 0 {
		return w
	}
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		// The size counted is the RTP packet's, less the few bytes of the
		// extension added below: the rate it feeds is an estimate anyway.
		seq := i.est.OnSend(h.MarshalSize()+len(payload), i.now())
		if err := h.SetExtension(id, seqBytes(seq)); err != nil {
			return 0, err
		}
		return w.Write(h, payload, a)
	})
}

// BindRTCPReader reads the receiver's feedback on its way in; the RTCP is
// passed on unchanged.
func (i *Interceptor) BindRTCPReader(r interceptor.RTCPReader) interceptor.RTCPReader {
	return interceptor.RTCPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		if err != nil {
			return n, a, err
		}
		i.est.OnRTCP(b[:n], i.now())
		return n, a, nil
	})
}

// seqBytes is a transport sequence number as the header extension's two
// bytes. The header keeps the slice until the packet is written, so it is
// taken from a constant table rather than a buffer the next packet would
// reuse: no allocation, and nothing shared is written.
func seqBytes(seq uint16) []byte {
	i := int(seq) * 2
	return seqTable[i : i+2 : i+2]
}

// seqTable holds every uint16 big-endian, in order: byte 2n and 2n+1 are
// n. It is computed once and never written again.
var seqTable = func() []byte {
	t := make([]byte, 2<<16)
	for n := range 1 << 16 {
		t[2*n], t[2*n+1] = byte(n>>8), byte(n)
	}
	return t
}()
