package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/signal"
)

// signer says how a test node signs an SDP it sends: it is given what an
// honest node signs over and returns the sig field.
type signer func(identity ed25519.PrivateKey, meeting, participant string, nonce []byte, kind, sdp string) []byte

func honest(identity ed25519.PrivateKey, meeting, participant string, nonce []byte, kind, sdp string) []byte {
	return nodecert.SignSDP(identity, meeting, participant, nonce, kind, sdp)
}

// sdpNode is a node's signaling end with a real pion PeerConnection on
// each side of a participant's two: it welcomes one participant ("p1" in
// meeting "m"), offers it media on the subscribe connection and answers
// its offers on the publish connection, signing each SDP with sign.
type sdpNode struct {
	URL      string
	identity ed25519.PrivateKey
	sign     signer
	// offer says whether the node offers on the subscribe connection
	// right after the welcome.
	offer bool

	// vouch are the ICE URLs the welcome lists; welcomeSign signs the
	// welcome (honest unless a test says otherwise; nil: as sign does).
	vouch       []string
	welcomeSign signer
	// afterOffer, if set, sends more messages once the subscribe offer
	// is out (candidates), signed by sign over the join's nonce.
	afterOffer func(write func(signal.Message), nonce []byte)

	mu      sync.Mutex
	join    signal.Message // the participant's join
	answers int            // the participant's answers to the node's offers
}

func startSDPNode(t *testing.T, sign signer, offer bool) *sdpNode {
	t.Helper()
	return startSDPNodeWith(t, sign, offer, func(*sdpNode) {})
}

// startSDPNodeWith is startSDPNode with configure setting the node's other
// fields before it serves.
func startSDPNodeWith(t *testing.T, sign signer, offer bool, configure func(*sdpNode)) *sdpNode {
	t.Helper()
	_, identity, _ := ed25519.GenerateKey(nil)
	n := &sdpNode{identity: identity, sign: sign, offer: offer, welcomeSign: honest}
	configure(n)
	srv := httptest.NewServer(http.HandlerFunc(n.serve(t)))
	t.Cleanup(srv.Close)
	n.URL = "ws" + strings.TrimPrefix(srv.URL, "http")
	return n
}

func (n *sdpNode) serve(t *testing.T) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, r *http.Request) {
		ws, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer ws.CloseNow()
		ws.SetReadLimit(signal.MaxRelayBytes)
		ctx := r.Context()
		read := func() (signal.Message, bool) {
			_, data, err := ws.Read(ctx)
			if err != nil {
				return signal.Message{}, false
			}
			m, err := signal.Decode(data)
			if err != nil {
				t.Errorf("node: undecodable message: %v", err)
				return signal.Message{}, false
			}
			return m, true
		}
		write := func(m signal.Message) {
			b, err := signal.Encode(m)
			if err == nil {
				err = ws.Write(ctx, websocket.MessageText, b)
			}
			if err != nil {
				t.Logf("node: write %s: %v", m.Type, err)
			}
		}
		join, ok := read()
		if !ok || join.Type != signal.TypeJoin {
			t.Errorf("node: first message %q", join.Type)
			return
		}
		if len(join.Nonce) != signal.JoinNonceBytes {
			t.Errorf("node: join nonce of %d bytes", len(join.Nonce))
		}
		n.mu.Lock()
		n.join = join
		n.mu.Unlock()
		sw := n.welcomeSign
		if sw == nil {
			sw = n.sign
		}
		write(signal.Message{Type: signal.TypeWelcome, ID: "p1", Name: "p1", Meeting: "m", ICEURLs: n.vouch,
			Sig: sw(n.identity, "m", "p1", join.Nonce, signal.SigKindWelcome, strings.Join(n.vouch, "\n"))})

		sub, err := webrtc.NewPeerConnection(webrtc.Configuration{})
		if err != nil {
			t.Error(err)
			return
		}
		defer sub.Close()
		var pub *webrtc.PeerConnection
		defer func() {
			if pub != nil {
				_ = pub.Close()
			}
		}()
		sdpOf := func(pc *webrtc.PeerConnection, d webrtc.SessionDescription) (string, bool) {
			done := webrtc.GatheringCompletePromise(pc)
			if err := pc.SetLocalDescription(d); err != nil {
				t.Error(err)
				return "", false
			}
			<-done
			return pc.LocalDescription().SDP, true
		}
		if n.offer {
			if _, err := sub.AddTransceiverFromKind(webrtc.RTPCodecTypeVideo, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionSendonly}); err != nil {
				t.Error(err)
				return
			}
			o, err := sub.CreateOffer(nil)
			if err != nil {
				t.Error(err)
				return
			}
			sdp, ok := sdpOf(sub, o)
			if !ok {
				return
			}
			write(signal.Message{Type: signal.TypeOffer, SDP: sdp, Sig: n.sign(n.identity, "m", "p1", join.Nonce, "offer", sdp)})
			if n.afterOffer != nil {
				n.afterOffer(write, join.Nonce)
			}
		}
		for {
			m, ok := read()
			if !ok {
				return
			}
			switch m.Type {
			case signal.TypeAnswer:
				if err := sub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeAnswer, SDP: m.SDP}); err != nil {
					t.Errorf("node: participant's answer: %v", err)
				}
				n.mu.Lock()
				n.answers++
				n.mu.Unlock()
			case signal.TypeOffer:
				if pub == nil {
					if pub, err = webrtc.NewPeerConnection(webrtc.Configuration{}); err != nil {
						t.Error(err)
						return
					}
				}
				if err := pub.SetRemoteDescription(webrtc.SessionDescription{Type: webrtc.SDPTypeOffer, SDP: m.SDP}); err != nil {
					t.Errorf("node: participant's offer: %v", err)
					return
				}
				a, err := pub.CreateAnswer(nil)
				if err != nil {
					t.Error(err)
					return
				}
				sdp, ok := sdpOf(pub, a)
				if !ok {
					return
				}
				write(signal.Message{Type: signal.TypeAnswer, SDP: sdp, Sig: n.sign(n.identity, "m", "p1", join.Nonce, "answer", sdp)})
			}
		}
	}
}

func (n *sdpNode) answered() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.answers
}

func (n *sdpNode) connect(t *testing.T) *client.Session {
	t.Helper()
	return n.connectWith(t, client.Options{})
}

func (n *sdpNode) connectWith(t *testing.T, opts client.Options) *client.Session {
	t.Helper()
	s, err := n.dial(t, opts, nil)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return s
}

// dial connects with opts and the join answer's ICE servers ice.
func (n *sdpNode) dial(t *testing.T, opts client.Options, ice []webrtc.ICEServer) (*client.Session, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	opts.LoopbackOnly, opts.NodeKey = true, n.identity.Public().(ed25519.PublicKey)
	s, err := client.Connect(ctx, client.JoinResult{ParticipantID: "p1", Node: client.NodeInfo{ID: "de-fra", Country: "DE", URL: n.URL}, Token: "t", ICEServers: ice}, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, nil
}

// waitRefused waits for the session to end with a node_proof_invalid
// refusal naming the node.
func waitRefused(t *testing.T, s *client.Session) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Err() == nil {
		if time.Now().After(deadline) {
			t.Fatal("the session goes on with a node that did not prove its key")
		}
		time.Sleep(5 * time.Millisecond)
	}
	r, ok := client.AsRefusal(s.Err())
	if !ok || r.Code != api.CodeNodeProofInvalid || r.Node != "de-fra" {
		t.Fatalf("session ended with %v, want a %s refusal of de-fra", s.Err(), api.CodeNodeProofInvalid)
	}
	select {
	case <-s.Proven():
		t.Fatal("Proven closed for a node that failed its proof")
	default:
	}
}

// A node offer whose signature verifies with the certified key over the
// session's nonce is applied and answered; every other one ends the
// session as node_proof_invalid before the description is applied.
func TestNodeOfferMustBeSignedByTheCertifiedKey(t *testing.T) {
	t.Run("honest", func(t *testing.T) {
		n := startSDPNode(t, honest, true)
		hostKey := make([]byte, 32)
		hostKey[0] = 7
		stmt := json.RawMessage(`{"v":1,"kind":"policy"}`)
		s := n.connectWith(t, client.Options{HostKey: hostKey, Statement: stmt})
		// The join names the host key and policy the client checked, for
		// the node's relay checks.
		n.mu.Lock()
		join := n.join
		n.mu.Unlock()
		if !bytes.Equal(join.HostKey, hostKey) || string(join.Statement) != string(stmt) {
			t.Fatalf("join carried host key %x and statement %s", join.HostKey, join.Statement)
		}
		select {
		case <-s.Proven():
		case <-time.After(10 * time.Second):
			t.Fatal("a correctly signed offer did not prove the node")
		}
		deadline := time.Now().Add(10 * time.Second)
		for n.answered() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("the signed offer was not answered")
			}
			time.Sleep(5 * time.Millisecond)
		}
		if s.Err() != nil {
			t.Fatalf("session ended: %v", s.Err())
		}
	})
	_, other, _ := ed25519.GenerateKey(nil)
	for name, sign := range map[string]signer{
		"unsigned": func(ed25519.PrivateKey, string, string, []byte, string, string) []byte { return nil },
		"by another key": func(_ ed25519.PrivateKey, m, p string, nonce []byte, kind, sdp string) []byte {
			return nodecert.SignSDP(other, m, p, nonce, kind, sdp)
		},
		// A signature replayed from another session.
		"over another nonce": func(id ed25519.PrivateKey, m, p string, _ []byte, kind, sdp string) []byte {
			return nodecert.SignSDP(id, m, p, make([]byte, signal.JoinNonceBytes), kind, sdp)
		},
		"for another participant": func(id ed25519.PrivateKey, m, _ string, nonce []byte, kind, sdp string) []byte {
			return nodecert.SignSDP(id, m, "p2", nonce, kind, sdp)
		},
		"for another meeting": func(id ed25519.PrivateKey, _, p string, nonce []byte, kind, sdp string) []byte {
			return nodecert.SignSDP(id, "m2", p, nonce, kind, sdp)
		},
		"over another SDP": func(id ed25519.PrivateKey, m, p string, nonce []byte, kind, sdp string) []byte {
			return nodecert.SignSDP(id, m, p, nonce, kind, strings.Replace(sdp, "a=fingerprint:sha-256 ", "a=fingerprint:sha-256 00", 1))
		},
	} {
		t.Run(name, func(t *testing.T) {
			n := startSDPNode(t, sign, true)
			s := n.connect(t)
			waitRefused(t, s)
			if _, sub := s.PeerConnections(); sub.RemoteDescription() != nil {
				t.Fatal("the unproven offer was applied")
			}
			if n.answered() != 0 {
				t.Fatal("the unproven offer was answered")
			}
		})
	}
}

// The node's answer to the participant's publish offer is checked the
// same way: an answer signed as an offer (or not at all) is never applied,
// so no media flows to that node.
func TestNodeAnswerMustBeSignedByTheCertifiedKey(t *testing.T) {
	for name, tc := range map[string]struct {
		sign   signer
		proven bool
	}{
		"honest": {honest, true},
		"signed as an offer": {func(id ed25519.PrivateKey, m, p string, nonce []byte, _, sdp string) []byte {
			return nodecert.SignSDP(id, m, p, nonce, "offer", sdp)
		}, false},
		"unsigned": {func(ed25519.PrivateKey, string, string, []byte, string, string) []byte { return nil }, false},
	} {
		t.Run(name, func(t *testing.T) {
			n := startSDPNode(t, tc.sign, false)
			s := n.connect(t)
			if _, err := s.PublishVideo(client.TrackOptions{}); err != nil {
				t.Fatal(err)
			}
			pub, _ := s.PeerConnections()
			if !tc.proven {
				waitRefused(t, s)
				if pub.RemoteDescription() != nil {
					t.Fatal("the unproven answer was applied")
				}
				return
			}
			select {
			case <-s.Proven():
			case <-time.After(10 * time.Second):
				t.Fatal("a correctly signed answer did not prove the node")
			}
			deadline := time.Now().Add(10 * time.Second)
			for pub.RemoteDescription() == nil {
				if time.Now().After(deadline) {
					t.Fatal("the signed answer was not applied")
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
}

// The welcome must carry the node's signature over the ICE URLs it
// vouches for: one unsigned, signed by another key or over other URLs
// than it lists is a node_proof_invalid refusal and no session.
func TestNodeWelcomeMustBeSignedByTheCertifiedKey(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	for name, sign := range map[string]signer{
		"unsigned": func(ed25519.PrivateKey, string, string, []byte, string, string) []byte { return nil },
		"by another key": func(_ ed25519.PrivateKey, m, p string, nonce []byte, kind, urls string) []byte {
			return nodecert.SignSDP(other, m, p, nonce, kind, urls)
		},
		// The node signed one URL; a TURN server was added to the list
		// on the way.
		"over other URLs": func(id ed25519.PrivateKey, m, p string, nonce []byte, kind, _ string) []byte {
			return nodecert.SignSDP(id, m, p, nonce, kind, "stun:127.0.0.1:3478")
		},
		"as an offer": func(id ed25519.PrivateKey, m, p string, nonce []byte, _, urls string) []byte {
			return nodecert.SignSDP(id, m, p, nonce, "offer", urls)
		},
	} {
		t.Run(name, func(t *testing.T) {
			n := startSDPNodeWith(t, honest, true, func(n *sdpNode) {
				n.welcomeSign, n.vouch = sign, []string{"stun:127.0.0.1:3478", "turn:127.0.0.1:3479?transport=udp"}
			})
			s, err := n.dial(t, client.Options{}, nil)
			r, ok := client.AsRefusal(err)
			if s != nil || !ok || r.Code != api.CodeNodeProofInvalid || r.Node != "de-fra" {
				t.Fatalf("connect: %v, want a %s refusal of de-fra", err, api.CodeNodeProofInvalid)
			}
		})
	}
}

// An ICE server is used only if the node's signed welcome vouches for
// every URL of it: a TURN server the join answer (the control plane, or
// anyone on the way) added is left out of both connections.
func TestOnlyICEServersTheNodeVouchesForAreUsed(t *testing.T) {
	vouched := webrtc.ICEServer{URLs: []string{"stun:127.0.0.1:3478"}}
	n := startSDPNodeWith(t, honest, true, func(n *sdpNode) { n.vouch = vouched.URLs })
	rogue := webrtc.ICEServer{URLs: []string{"turn:127.0.0.1:3479?transport=udp"}, Username: "u", Credential: "c"}
	half := webrtc.ICEServer{URLs: []string{"stun:127.0.0.1:3478", "turn:127.0.0.1:3480?transport=udp"}, Username: "u", Credential: "c"}
	s, err := n.dial(t, client.Options{}, []webrtc.ICEServer{rogue, vouched, half})
	if err != nil {
		t.Fatal(err)
	}
	pub, sub := s.PeerConnections()
	for name, pc := range map[string]*webrtc.PeerConnection{"publish": pub, "subscribe": sub} {
		got := pc.GetConfiguration().ICEServers
		if len(got) != 1 || !slices.Equal(got[0].URLs, vouched.URLs) {
			t.Fatalf("%s connection's ICE servers %+v, want only %v", name, got, vouched.URLs)
		}
	}
}

// A trickled candidate the node did not sign (injected on the way, naming
// a forwarder elsewhere) is never added; the node's own signed one is.
func TestUnsignedCandidatesAreDropped(t *testing.T) {
	const (
		injected = "candidate:1 1 udp 2130706431 127.0.0.1 9 typ host"
		signed   = "candidate:2 1 udp 2130706431 127.0.0.1 7 typ host"
	)
	n := startSDPNodeWith(t, honest, true, func(n *sdpNode) {
		n.afterOffer = func(write func(signal.Message), nonce []byte) {
			zero := uint16(0)
			cand := func(c string) *signal.Candidate { return &signal.Candidate{Candidate: c, SDPMLineIndex: &zero} }
			write(signal.Message{Type: signal.TypeCandidate, Target: signal.TargetSubscribe, Candidate: cand(injected)})
			// Signed for the other connection: no more use here.
			write(signal.Message{Type: signal.TypeCandidate, Target: signal.TargetSubscribe, Candidate: cand(injected),
				Sig: nodecert.SignSDP(n.identity, "m", "p1", nonce, signal.SigKindCandidate+signal.TargetPublish, injected)})
			write(signal.Message{Type: signal.TypeCandidate, Target: signal.TargetSubscribe, Candidate: cand(signed),
				Sig: nodecert.SignSDP(n.identity, "m", "p1", nonce, signal.SigKindCandidate+signal.TargetSubscribe, signed)})
		}
	})
	s := n.connect(t)
	_, sub := s.PeerConnections()
	remote := func() (ports []int32) {
		for _, st := range sub.GetStats() {
			if c, ok := st.(webrtc.ICECandidateStats); ok && c.Type == webrtc.StatsTypeRemoteCandidate && c.IP == "127.0.0.1" {
				ports = append(ports, c.Port)
			}
		}
		return ports
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(remote(), 7) {
		if time.Now().After(deadline) {
			t.Fatalf("the node's signed candidate was not added: remote candidates on ports %v", remote())
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not synchronisation
	}
	if slices.Contains(remote(), 9) {
		t.Fatalf("the unsigned candidate was added: remote candidates on ports %v", remote())
	}
}
