package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/coder/websocket"
	"github.com/pion/dtls/v3"
	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/pionlog"
	"github.com/oakmeet/oakmeet/signal"
)

// FrameTransform rewrites one encoded frame before it is packetized, e.g.
// to encrypt it with SFrame (the bot instead writes frames it has already
// encrypted). It must not keep frame after returning.
type FrameTransform func(trackID string, kind webrtc.RTPCodecType, frame []byte) ([]byte, error)

// Options configure a Session.
type Options struct {
	Logger *slog.Logger
	// HTTPClient dials the node's WebSocket (default http.DefaultClient).
	HTTPClient *http.Client
	// LoopbackOnly keeps ICE on 127.0.0.1, for tests and demos.
	LoopbackOnly bool
	// Interceptors are added closest to the network, for fault injection.
	Interceptors []interceptor.Factory
	// RelayOnly makes the session use only TURN relays (the node's own),
	// as a client behind a strict firewall would.
	RelayOnly bool
	// Transform, if set, is applied to every outgoing frame.
	Transform FrameTransform
	// HostKey and Statement go in the join message: the host key the
	// client checked against its link and the newest host policy statement
	// it verified with that key (hoststmt's wire form). The node takes the
	// meeting's relay policy from its participants, not from the control
	// plane. A Call sets both from its HostView.
	HostKey   []byte
	Statement json.RawMessage
	// NodeKey, if set, is the identity key the node's certificate names:
	// every offer and answer of the node must carry a signature by it over
	// this session's join nonce (nodecert.VerifySDP), checked before the
	// description is applied; one that does not ends the session with a
	// *RefusalError of code api.CodeNodeProofInvalid. A Call sets it from
	// the certificate it verified; without it nothing is checked, for
	// tests and tools that speak to a bare SFU. With it the welcome's
	// signature over its ice_urls must verify too (else Connect fails with
	// that refusal), an ICE server is used only if the node vouches for
	// every URL of it, and a trickled candidate whose signature does not
	// verify is dropped.
	NodeKey ed25519.PublicKey
}

// ServerError is an error message from the node.
type ServerError struct {
	Code    string
	Message string
}

func (e *ServerError) Error() string { return "node: " + e.Code + ": " + e.Message }

// ErrClosed is returned by calls on a session that has ended.
var ErrClosed = errors.New("client: session closed")

// Session is one participant's connection to its media node.
type Session struct {
	jr   JoinResult
	opts Options
	log  *slog.Logger
	ws   *websocket.Conn
	// pubPC sends this participant's media (the client offers); subPC
	// receives everyone else's (the node offers).
	pubPC, subPC *webrtc.PeerConnection

	self    signal.Participant
	meeting string
	// nonce is this session's fresh join challenge: the node signs every
	// SDP it sends over it, so an old signature cannot be replayed.
	nonce []byte
	// proven is closed once a node SDP verified with opts.NodeKey (at
	// once when there is no key to check).
	proven     chan struct{}
	provenOnce sync.Once
	// present is who was in the meeting when this session was welcomed,
	// in the node's order.
	present []signal.Participant

	ctx    context.Context
	cancel context.CancelCauseFunc
	cmds   chan func()
	out    chan []byte
	wg     sync.WaitGroup // loop and writer
	// mediaWG tracks RTCP readers, which end when the PeerConnection closes.
	mediaWG    sync.WaitGroup
	readerDone chan struct{}

	events *eventQueue

	// sendMu guards sendStopped: a frame is written with it read-locked,
	// so once StopSending has it no frame of this session is in flight.
	sendMu      sync.RWMutex
	sendStopped bool

	closeOnce sync.Once

	// owned by the loop goroutine
	tracks       map[string]signal.Track // published tracks by id
	participants map[string]signal.Participant
	pub          *negotiation.Offerer  // on pubPC
	sub          *negotiation.Answerer // on subPC
}

// Local tracks declare the codecs the node negotiates.
var (
	opusCodec = negotiation.Opus()
	vp8Codec  = negotiation.VP8()
)

// Connect opens the signaling connection to the node jr names, joins with
// jr's token, and sets up the PeerConnection. It returns once the node has
// welcomed the participant; media starts flowing shortly after.
func Connect(ctx context.Context, jr JoinResult, opts Options) (*Session, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	ws, _, err := websocket.Dial(ctx, jr.Node.URL, &websocket.DialOptions{HTTPClient: opts.HTTPClient})
	if err != nil {
		return nil, fmt.Errorf("dial node %s: %w", jr.Node.URL, err)
	}
	ws.SetReadLimit(signal.MaxRelayBytes)
	nonce := make([]byte, signal.JoinNonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		_ = ws.CloseNow()
		return nil, fmt.Errorf("join nonce: %w", err)
	}
	welcome, err := handshake(ctx, ws, signal.Message{Type: signal.TypeJoin, Token: jr.Token, Nonce: nonce,
		HostKey: opts.HostKey, Statement: opts.Statement})
	if err != nil {
		_ = ws.Close(websocket.StatusNormalClosure, "join failed")
		return nil, err
	}
	s := &Session{
		jr: jr, opts: opts, log: opts.Logger, ws: ws,
		self:         signal.Participant{ID: welcome.ID, Name: welcome.Name},
		meeting:      welcome.Meeting,
		nonce:        nonce,
		proven:       make(chan struct{}),
		present:      append([]signal.Participant(nil), welcome.Participants...),
		cmds:         make(chan func()),
		out:          make(chan []byte, 256),
		events:       newEventQueue(),
		tracks:       map[string]signal.Track{},
		participants: map[string]signal.Participant{},
	}
	s.ctx, s.cancel = context.WithCancelCause(context.Background())
	if opts.NodeKey == nil {
		s.provenOnce.Do(func() { close(s.proven) }) // nothing to prove
	}
	for _, p := range welcome.Participants {
		s.participants[p.ID] = p
		s.events.push(Event{Type: EventParticipantJoined, Participant: p})
	}
	for _, t := range welcome.Tracks {
		s.tracks[t.ID] = t
	}
	servers := append(append([]webrtc.ICEServer(nil), jr.ICEServers...), iceServers(welcome.ICEServers)...)
	if opts.NodeKey != nil {
		if err := proveWelcome(opts.NodeKey, welcome, nonce, jr.Node); err != nil {
			_ = ws.Close(websocket.StatusNormalClosure, "node proof invalid")
			return nil, err
		}
		servers = vouchedServers(servers, welcome.ICEURLs, s.log)
	}
	if s.pubPC, err = s.newPeerConnection(signal.TargetPublish, servers); err == nil {
		if s.subPC, err = s.newPeerConnection(signal.TargetSubscribe, servers); err != nil {
			_ = s.pubPC.Close()
		}
	}
	if err != nil {
		_ = ws.Close(websocket.StatusNormalClosure, "setup failed")
		return nil, err
	}
	s.pub = negotiation.NewOfferer(s.pubPC, s.negotiationHooks(signal.TargetPublish))
	s.sub = negotiation.NewAnswerer(s.subPC, s.negotiationHooks(signal.TargetSubscribe))
	s.subPC.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		s.post(func() { s.onTrack(t, r) })
	})
	// Buffered, so the reader keeps reading (and sees a dead node at once)
	// while the loop is busy with a negotiation.
	in := make(chan signal.Message, 256)
	s.readerDone = make(chan struct{})
	s.wg.Add(2)
	go s.readLoop(in)
	go s.writeLoop()
	go s.loop(in)
	return s, nil
}

// proveWelcome checks the welcome's signature by the certified identity
// key over the ICE URLs it vouches for: a welcome without it is a
// *RefusalError of code api.CodeNodeProofInvalid, as for an SDP.
func proveWelcome(key ed25519.PublicKey, w signal.Message, nonce []byte, node NodeInfo) error {
	err := nodecert.VerifySDP(key, w.Sig, w.Meeting, w.ID, nonce, signal.SigKindWelcome, strings.Join(w.ICEURLs, "\n"))
	if err == nil {
		return nil
	}
	what := "a wrong signature"
	if len(w.Sig) == 0 {
		what = "no signature"
	}
	return &RefusalError{Code: api.CodeNodeProofInvalid, Node: node.ID, Country: node.Country,
		Message: fmt.Sprintf("node %s sent its welcome with %s by its certified identity key", node.ID, what)}
}

// vouchedServers keeps the ICE servers every URL of which the node's signed
// welcome lists: a TURN or STUN server someone else added to the join
// answer or the welcome would carry (or observe) media off the certified
// node. Those dropped are logged once.
func vouchedServers(servers []webrtc.ICEServer, vouched []string, log *slog.Logger) []webrtc.ICEServer {
	var kept []webrtc.ICEServer
	var dropped []string
	for _, srv := range servers {
		ok := len(srv.URLs) > 0
		for _, u := range srv.URLs {
			ok = ok && slices.Contains(vouched, u)
		}
		if ok {
			kept = append(kept, srv)
		} else {
			dropped = append(dropped, srv.URLs...)
		}
	}
	if len(dropped) > 0 {
		log.Warn("ICE servers dropped: the node's signed welcome does not vouch for them", "urls", dropped)
	}
	return kept
}

func handshake(ctx context.Context, ws *websocket.Conn, join signal.Message) (signal.Message, error) {
	b, err := signal.Encode(join)
	if err != nil {
		return signal.Message{}, err
	}
	if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
		return signal.Message{}, fmt.Errorf("send join: %w", err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		return signal.Message{}, fmt.Errorf("await welcome: %w", err)
	}
	m, err := signal.Decode(data)
	if err != nil {
		return signal.Message{}, fmt.Errorf("await welcome: %w", err)
	}
	switch m.Type {
	case signal.TypeWelcome:
		return m, nil
	case signal.TypeError:
		return signal.Message{}, &ServerError{Code: m.Code, Message: m.Message}
	case signal.TypeLeave:
		// Ended before it began: kicked or removed before this
		// connection got there.
		return signal.Message{}, &LeftError{Reason: m.Reason}
	}
	return signal.Message{}, fmt.Errorf("await welcome: got %q", m.Type)
}

func (s *Session) newPeerConnection(target string, servers []webrtc.ICEServer) (*webrtc.PeerConnection, error) {
	me, err := negotiation.MediaEngine()
	if err != nil {
		return nil, err
	}
	ir := &interceptor.Registry{}
	for _, f := range s.opts.Interceptors {
		ir.Add(f)
	}
	// pion's interceptors log through our logger too, not to stderr.
	if err := webrtc.RegisterDefaultInterceptorsWithOptions(me, ir, webrtc.WithInterceptorLoggerFactory(pionlog.Factory{Log: s.log})); err != nil {
		return nil, fmt.Errorf("interceptors: %w", err)
	}
	var se webrtc.SettingEngine
	se.LoggerFactory = pionlog.Factory{Log: s.log}
	se.SetICEMulticastDNSMode(ice.MulticastDNSModeDisabled)
	// The node's order: on the publish connection this client is the DTLS
	// server and its order decides, so it too puts AES-128-GCM first,
	// the cheapest profile for the node to unprotect.
	se.SetSRTPProtectionProfiles(dtls.SRTP_AEAD_AES_128_GCM, dtls.SRTP_AEAD_AES_256_GCM, dtls.SRTP_AES128_CM_HMAC_SHA1_80)
	if s.opts.LoopbackOnly {
		se.SetIncludeLoopbackCandidate(true)
		se.SetInterfaceFilter(func(name string) bool { return name == "lo" })
		se.SetNetworkTypes([]webrtc.NetworkType{webrtc.NetworkTypeUDP4})
	}
	api := webrtc.NewAPI(webrtc.WithMediaEngine(me), webrtc.WithInterceptorRegistry(ir), webrtc.WithSettingEngine(se))
	conf := webrtc.Configuration{ICEServers: servers}
	if s.opts.RelayOnly {
		conf.ICETransportPolicy = webrtc.ICETransportPolicyRelay
	}
	pc, err := api.NewPeerConnection(conf)
	if err != nil {
		return nil, fmt.Errorf("new %s peer connection: %w", target, err)
	}
	negotiation.Trickle(pc, target, s.send)
	pc.OnConnectionStateChange(func(st webrtc.PeerConnectionState) {
		if st == webrtc.PeerConnectionStateFailed {
			s.cancel(fmt.Errorf("%s peer connection failed", target))
		}
	})
	return pc, nil
}

// StopSending stops every local track of the session from sending media
// to the node, at once and for good: frames written later are dropped (as
// before negotiation completes). A Call uses it when a newer host-signed
// policy rules out the session's node, before it moves away. When it
// returns no frame of the session is being written.
func (s *Session) StopSending() {
	s.sendMu.Lock()
	s.sendStopped = true
	s.sendMu.Unlock()
}

// ID is the participant id the node knows this session by.
func (s *Session) ID() string { return s.self.ID }

// Present is who was already in the meeting when the node welcomed this
// session, in the node's order; they also arrive as the first
// EventParticipantJoined events.
func (s *Session) Present() []signal.Participant {
	return append([]signal.Participant(nil), s.present...)
}

// Meeting is the meeting this session is in.
func (s *Session) Meeting() string { return s.meeting }

// PeerConnections exposes the publish and subscribe connections, e.g. for
// statistics.
func (s *Session) PeerConnections() (publish, subscribe *webrtc.PeerConnection) {
	return s.pubPC, s.subPC
}

// Err reports why the session ended, or nil while it runs.
func (s *Session) Err() error {
	if s.ctx.Err() == nil {
		return nil
	}
	return context.Cause(s.ctx)
}

// Events delivers what happens in the meeting. It is closed after Close.
func (s *Session) Events() <-chan Event { return s.events.ch }

// Subscribe asks the node for one simulcast layer of a track: "high",
// "medium", "low" or one of the publisher's rids.
func (s *Session) Subscribe(trackID, layer string) error {
	return s.sendChecked(signal.Message{Type: signal.TypeSubscribe, TrackID: trackID, Layer: layer})
}

// SendChat sends a chat line to everyone in the meeting.
func (s *Session) SendChat(text string) error {
	return s.sendChecked(signal.Message{Type: signal.TypeChat, Text: text})
}

// SendRelay sends an opaque payload to one participant, or to everyone
// else when to is "". The node passes it on without reading it. A payload
// that is not JSON is sent as a JSON string (callers base64 it first).
func (s *Session) SendRelay(to string, payload []byte) error {
	return s.sendChecked(signal.Message{Type: signal.TypeRelay, To: to, Payload: relayPayload(payload)})
}

// SendRaw sends an arbitrary message; for tests and tools that speak the
// protocol directly.
func (s *Session) SendRaw(data []byte) error {
	if s.ctx.Err() != nil {
		return ErrClosed
	}
	select {
	case s.out <- data:
		return nil
	case <-s.ctx.Done():
		return ErrClosed
	}
}

// Close leaves the meeting and releases everything the session holds. It
// must be called even after the node ended the session.
func (s *Session) Close() error {
	s.closeOnce.Do(func() {
		if s.ctx.Err() == nil {
			if b, err := signal.Encode(signal.Message{Type: signal.TypeLeave}); err == nil {
				select {
				case s.out <- b:
				default:
				}
			}
		}
		s.cancel(ErrClosed)
		s.wg.Wait() // loop and writer; the writer flushes the leave first
		_ = s.ws.Close(websocket.StatusNormalClosure, "bye")
		<-s.readerDone
		_ = s.pubPC.Close()
		_ = s.subPC.Close()
		s.mediaWG.Wait()
		s.events.close()
	})
	return nil
}
