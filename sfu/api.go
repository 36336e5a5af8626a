package sfu

import (
	"errors"
	"fmt"
	"net"

	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/interceptor/pkg/nack"
	"github.com/pion/interceptor/pkg/report"
	"github.com/pion/interceptor/pkg/twcc"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/bwe"
	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/pionlog"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/udpbatch"
)

// sendBatch is the node's batching sockets: a publisher's reader holds
// them over each frame it fans out (publishedTrack.read).
type sendBatch []*udpbatch.Conn

func (b sendBatch) Hold() {
	for _, c := range b {
		c.Hold()
	}
}

func (b sendBatch) Release() {
	for _, c := range b {
		c.Release()
	}
}

// Bandwidth estimation bounds for one subscriber, in bits per second.
const (
	bweInitial = 4_000_000
	bweMin     = 100_000
	bweMax     = 50_000_000
)

// settingEngine builds the ICE settings every PeerConnection of the node
// shares: one UDP port (and optionally one TCP port) for all participants.
// It also sets s.linkSE, the same settings without the shared ports, for
// the connections on which a relay link sends. A port shared by many
// connections tells them apart by the remote address once ICE is done, so
// two connections between the same two node ports — a link's two
// directions — would be mixed up; the sending side therefore takes a port
// of its own and only the receiving side uses the node's port.
func (s *SFU) settingEngine() (webrtc.SettingEngine, error) {
	logs := pionlog.Factory{Log: s.log}
	var se webrtc.SettingEngine
	se.LoggerFactory = logs
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	networks := []webrtc.NetworkType{webrtc.NetworkTypeUDP4}
	host := ""
	if s.cfg.LoopbackOnly {
		host = "127.0.0.1"
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
	}
	se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	if s.cfg.PublicIP != "" {
		if err := se.SetICEAddressRewriteRules(webrtc.ICEAddressRewriteRule{
			External:        []string{s.cfg.PublicIP},
			AsCandidateType: webrtc.ICECandidateTypeHost,
		}); err != nil {
			return se, fmt.Errorf("public ip %q: %w", s.cfg.PublicIP, err)
		}
	}
	// AEAD AES-GCM first: it encrypts and authenticates in one pass, where
	// AES-CM spends as much again on HMAC-SHA1 for every packet, and the
	// node protects each forwarded packet once per subscriber. AES-128
	// before AES-256 (pion's default order) as it has fewer rounds. Where
	// the node is the DTLS server its order decides; HMAC-SHA1 stays for
	// peers that offer nothing else.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	s.linkSE = se
	if s.cfg.LoopbackOnly {
		udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.cfg.UDPPort})
		if err != nil {
			return se, fmt.Errorf("listen udp %d: %w", s.cfg.UDPPort, err)
		}
		conn := s.batched(udp)
		if s.cfg.WrapUDP != nil {
			conn = s.cfg.WrapUDP(conn)
		}
		s.udpMux = webrtc.NewICEUDPMux(logs.NewLogger("udpmux"), conn)
	} else {
		// One socket per local address: replies leave from the address the
		// client reached, which a wildcard socket does not guarantee.
		mux, err := s.multiUDPMux(logs)
		if err != nil {
			return se, fmt.Errorf("listen udp %d: %w", s.cfg.UDPPort, err)
		}
		s.udpMux = mux
	}
	se.SetICEUDPMux(s.udpMux)
	if s.cfg.TCPPort != 0 {
		port := max(s.cfg.TCPPort, 0)
		l, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.ParseIP(host), Port: port})
		if err != nil {
			_ = s.udpMux.Close()
			return se, fmt.Errorf("listen tcp %d: %w", port, err)
		}
		s.tcpMux = webrtc.NewICETCPMux(logs.NewLogger("tcpmux"), l, 64)
		se.SetICETCPMux(s.tcpMux)
		networks = append(networks, webrtc.NetworkTypeTCP4)
	}
	se.SetNetworkTypes(networks)
	return se, nil
}

// batched wraps one of the node's ICE sockets in a batching sender, and
// adds it to s.sends, unless batching is off.
func (s *SFU) batched(udp *net.UDPConn) net.PacketConn {
	if s.cfg.SendBatchDelay < 0 {
		return udp
	}
	b := udpbatch.New(udp, s.cfg.SendBatchDelay)
	s.sends = append(s.sends, b)
	return b
}

// multiUDPMux listens on UDPPort at every IPv4 address of every interface
// that is up, but loopback, as ice.NewMultiUDPMuxFromPort does, on sockets
// of its own so that they can be batched.
func (s *SFU) multiUDPMux(logs pionlog.Factory) (ice.UDPMux, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil, err
	}
	var muxes []ice.UDPMux
	fail := func(err error) (ice.UDPMux, error) {
		for _, m := range muxes {
			_ = m.Close()
		}
		return nil, err
	}
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok || ipn.IP.To4() == nil {
				continue
			}
			udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: ipn.IP, Port: s.cfg.UDPPort})
			if err != nil {
				return fail(err)
			}
			muxes = append(muxes, ice.NewUDPMuxDefault(ice.UDPMuxParams{Logger: logs.NewLogger("udpmux"), UDPConn: s.batched(udp)}))
		}
	}
	if len(muxes) == 0 {
		return nil, errors.New("no IPv4 address on any interface that is up")
	}
	return ice.NewMultiUDPMuxDefault(muxes...), nil
}

func (s *SFU) closeMuxes() {
	if s.udpMux != nil {
		_ = s.udpMux.Close()
	}
	if s.tcpMux != nil {
		_ = s.tcpMux.Close()
	}
}

// A PeerConnection of the node carries media one way: a participant's
// publish connection and a relay link's receiving one bring media in, a
// participant's subscribe connection and a link's sending one take it
// out. Each gets only the interceptors for its way: the others would
// read (and parse) every RTCP packet and run their timers for nothing.
type direction bool

const (
	receives direction = false
	sends    direction = true
)

// newAPI builds the webrtc.API for one participant or relay link
// connection, with the ICE settings se. Each gets its own interceptor
// registry so that its bandwidth estimator can be told apart from
// everyone else's; onBWE receives it during NewPeerConnection.
func (s *SFU) newAPI(se webrtc.SettingEngine, dir direction, onBWE func(*bwe.Estimator)) (*webrtc.API, error) {
	me, err := negotiation.MediaEngine()
	if err != nil {
		return nil, err
	}
	// Both ways offer the same: transport-cc, so that subscribers send
	// feedback and publishers get it.
	for _, kind := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
		me.RegisterFeedback(webrtc.RTCPFeedback{Type: webrtc.TypeRTCPFBTransportCC}, kind)
		if err := me.RegisterHeaderExtension(webrtc.RTPHeaderExtensionCapability{URI: sdp.TransportCCURI}, kind); err != nil {
			return nil, fmt.Errorf("transport-cc: %w", err)
		}
	}
	if err := webrtc.ConfigureSimulcastExtensionHeaders(me); err != nil {
		return nil, fmt.Errorf("simulcast header extensions: %w", err)
	}
	ir := &interceptor.Registry{}
	// Extra interceptors go first, i.e. closest to the network.
	for _, f := range s.cfg.Interceptors {
		ir.Add(f)
	}
	if dir == sends {
		// Send-side bandwidth estimation from the receiver's transport-cc
		// feedback. No pacer: the node forwards as packets arrive. Sender
		// reports let receivers line up audio and video.
		ir.Add(&bwe.Factory{
			Config: bwe.Config{Initial: bweInitial, Min: bweMin, Max: bweMax},
			OnNew:  func(_ string, e *bwe.Estimator) { onBWE(e) },
		})
		rep, err := report.NewSenderInterceptor()
		if err != nil {
			return nil, fmt.Errorf("sender reports: %w", err)
		}
		ir.Add(rep)
	} else {
		// Ask the sender to retransmit what the node missed, and give it
		// transport-cc feedback for its own estimation, and receiver
		// reports. The node answers its receivers' NACKs itself from its
		// packet caches, so pion's NACK responder is not registered.
		gen, err := nack.NewGeneratorInterceptor(nack.WithGeneratorLoggerFactory(pionlog.Factory{Log: s.log}))
		if err != nil {
			return nil, fmt.Errorf("nack generator: %w", err)
		}
		ir.Add(gen)
		fb, err := twcc.NewSenderInterceptor(twcc.WithLoggerFactory(pionlog.Factory{Log: s.log}))
		if err != nil {
			return nil, fmt.Errorf("transport-cc feedback: %w", err)
		}
		ir.Add(fb)
		rep, err := report.NewReceiverInterceptor()
		if err != nil {
			return nil, fmt.Errorf("receiver reports: %w", err)
		}
		ir.Add(rep)
	}
	return webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se)), nil
}

// newPeerConnection makes a PeerConnection for a participant or a relay
// link: its ICE candidates go out as signaling messages for target, and a
// failed connection ends its owner. what names it in errors. connected, if
// set, is called each time the connection reaches connected (ICE and DTLS).
func (s *SFU) newPeerConnection(se webrtc.SettingEngine, dir direction, onBWE func(*bwe.Estimator), target, what string,
	send func(signal.Message), fail func(error), connected func(),
) (*webrtc.PeerConnection, error) {
	if onBWE == nil {
		onBWE = func(*bwe.Estimator) {}
	}
	api, err := s.newAPI(se, dir, onBWE)
	if err != nil {
		return nil, err
	}
	pc, err := api.NewPeerConnection(webrtc.Configuration{})
	if err != nil {
		return nil, fmt.Errorf("new %s peer connection: %w", what, err)
	}
	negotiation.Trickle(pc, target, send)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		switch {
		case st == webrtc.PeerConnectionStateFailed:
			fail(fmt.Errorf("%s peer connection failed", what))
		case st == webrtc.PeerConnectionStateConnected && connected != nil:
			connected()
		}
	})
	return pc, nil
}
