package negotiation

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// Payload types of the only codecs negotiated. They match the browsers'
// usual choices so that SDP munging is never needed.
const (
	OpusPayloadType = 111
	VP8PayloadType  = 96
)

// Opus is the audio codec, as a local track declares it.
func Opus() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
}

// VP8 is the video codec, as a local track declares it; the RTCP feedback
// is negotiated by MediaEngine.
func VP8() webrtc.RTPCodecCapability {
	return webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
}

// MediaEngine returns a media engine that negotiates Opus and VP8 only,
// with the video feedback the node acts on: NACK and PLI/FIR
// (transport-cc is added with its interceptor).
//
// Generic NACK is listed here because the node does not register pion's
// default NACK interceptors (it answers NACKs from its own packet caches);
// the client does, and pion's ConfigureNack adds the same line without
// duplicating it, so both sides end up offering the same feedback.
func MediaEngine() (*webrtc.MediaEngine, error) {
	me := &webrtc.MediaEngine{}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: Opus(), PayloadType: OpusPayloadType}, webrtc.RTPCodecTypeAudio); err != nil {
		return nil, fmt.Errorf("register opus: %w", err)
	}
	video := VP8()
	video.RTCPFeedback = []webrtc.RTCPFeedback{
		{Type: webrtc.TypeRTCPFBNACK},
		{Type: webrtc.TypeRTCPFBNACK, Parameter: "pli"},
		{Type: webrtc.TypeRTCPFBCCM, Parameter: "fir"},
	}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: video, PayloadType: VP8PayloadType}, webrtc.RTPCodecTypeVideo); err != nil {
		return nil, fmt.Errorf("register vp8: %w", err)
	}
	return me, nil
}
