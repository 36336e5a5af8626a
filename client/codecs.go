package client

import (
	"fmt"

	"github.com/pion/webrtc/v4"
)

// The node negotiates Opus and VP8 only, with these payload types.
const (
	opusPT = 111
	vp8PT  = 96
)

var (
	opusCodec = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"}
	vp8Codec  = webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeVP8, ClockRate: 90000}
)

func registerCodecs(me *webrtc.MediaEngine) error {
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: opusCodec, PayloadType: opusPT}, webrtc.RTPCodecTypeAudio); err != nil {
		return fmt.Errorf("register opus: %w", err)
	}
	video := vp8Codec
	video.RTCPFeedback = []webrtc.RTCPFeedback{{Type: "nack", Parameter: "pli"}, {Type: "ccm", Parameter: "fir"}}
	if err := me.RegisterCodec(webrtc.RTPCodecParameters{RTPCodecCapability: video, PayloadType: vp8PT}, webrtc.RTPCodecTypeVideo); err != nil {
		return fmt.Errorf("register vp8: %w", err)
	}
	return nil
}
