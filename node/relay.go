package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/token"
)

// Reasons a relay link is refused, sent by the accepting node as an error
// message and WebSocket close reason, and logged by the dialling node when
// it refuses to dial. See docs/RELAYS.md.
const (
	CodeRelayBadHandshake = "relay_bad_handshake"
	CodeRelayBadToken     = "relay_bad_token"
	CodeRelayTokenExpired = "relay_token_expired"
	CodeRelayWrongNode    = "relay_wrong_node"
	CodeRelayPolicy       = "relay_policy_forbids"
	CodeRelayBadProof     = "relay_bad_proof"
)

// handshakeTimeout bounds a relay link's handshake, dial included. It is a
// safety bound on a slow or silent peer, not a cluster clock, so it does not
// scale with cluster.Timing.
const handshakeTimeout = 10 * time.Second

// RelayError is a relay link that was refused, by this node before
// dialling or by the peer during the handshake.
type RelayError struct {
	Code, Message string
}

func (e *RelayError) Error() string { return "relay refused: " + e.Code + ": " + e.Message }

func relayRefusal(code, format string, args ...any) *RelayError {
	return &RelayError{Code: code, Message: fmt.Sprintf(format, args...)}
}

type linkKey struct{ meeting, peer string }

// transcript binds a handshake: the token and both nonces. Both nodes
// sign it (with their role), and every SDP of the link is signed with it.
func transcript(tok string, dialerNonce, acceptorNonce []byte) []byte {
	h := sha256.New()
	h.Write([]byte("oakmeet relay link v1\x00"))
	h.Write([]byte(tok))
	h.Write([]byte{0})
	h.Write(dialerNonce)
	h.Write(acceptorNonce)
	return h.Sum(nil)
}

// proof is what a node signs to show it holds its identity key; role keeps
// one side's proof from being reflected as the other's.
func proof(role string, binding []byte) []byte {
	return append([]byte("oakmeet relay proof v1\x00"+role+"\x00"), binding...)
}

const (
	roleDialer   = "dialer"
	roleAcceptor = "acceptor"
)

func nonce() []byte {
	b := make([]byte, signal.LinkNonceBytes)
	_, _ = rand.Read(b)
	return b
}

// verifyRelayToken checks a relay token's signature and times and that it
// lets this node be the given end of the link, and that the meeting's
// effective policy in it allows both ends.
func (n *Node) verifyRelayToken(ctx context.Context, tok string, dialer bool) (token.RelayClaims, *RelayError) {
	var claims token.RelayClaims
	err := n.verifyToken(ctx, func(pub ed25519.PublicKey) (err error) {
		claims, err = token.VerifyRelay(pub, tok, n.now())
		return err
	})
	switch {
	case errors.Is(err, errNoTokenKey):
		return token.RelayClaims{}, relayRefusal(CodeNotReady, "%v", err)
	case errors.Is(err, token.ErrExpired), errors.Is(err, token.ErrNotYetValid):
		return claims, relayRefusal(CodeRelayTokenExpired, "relay token expired: %v", err)
	case err != nil:
		return claims, relayRefusal(CodeRelayBadToken, "relay token rejected: %v", err)
	}
	self := claims.To
	if dialer {
		self = claims.From
	}
	if err := self.Check(n.info.ID, n.info.Country, n.info.Region, n.identity.Public().(ed25519.PublicKey)); err != nil {
		return claims, relayRefusal(CodeRelayWrongNode, "%v", err)
	}
	if err := claims.CheckPolicy(); err != nil {
		return claims, relayRefusal(CodeRelayPolicy, "%v", err)
	}
	return claims, nil
}

// relay carries out a relay command: it dials the peer unless a link for
// the meeting to the peer is up or being set up (commands are re-sent
// every few seconds, so they must be idempotent).
func (n *Node) relay(cmd cluster.Command) {
	if cmd.Meeting == "" || cmd.Peer == "" || cmd.PeerURL == "" || cmd.Token == "" {
		n.log.Warn("relay command incomplete", "meeting", cmd.Meeting, "peer", cmd.Peer)
		return
	}
	key := linkKey{cmd.Meeting, cmd.Peer}
	n.linkMu.Lock()
	if n.linkCtx == nil || n.linkCtx.Err() != nil || n.dialing[key] != nil || n.sfu.HasLink(cmd.Meeting, cmd.Peer) {
		n.linkMu.Unlock()
		return
	}
	ctx, cancel := context.WithCancel(n.linkCtx)
	n.dialing[key] = cancel
	n.linkWG.Add(1)
	n.linkMu.Unlock()
	go func() {
		defer n.linkWG.Done()
		defer func() {
			n.linkMu.Lock()
			delete(n.dialing, key)
			n.linkMu.Unlock()
			cancel()
		}()
		log := n.log.With("meeting", cmd.Meeting, "relay_peer", cmd.Peer)
		err := n.dial(ctx, cmd)
		var re *RelayError
		switch {
		case errors.As(err, &re):
			log.Warn("relay refused", "code", re.Code, "reason", re.Message)
		case err != nil:
			log.Info("relay link ended", "err", err)
		}
	}()
}

// unrelay closes the link for the meeting to the peer, or stops setting
// it up.
func (n *Node) unrelay(cmd cluster.Command) {
	n.sfu.CloseLink(cmd.Meeting, cmd.Peer)
	n.linkMu.Lock()
	cancel := n.dialing[linkKey{cmd.Meeting, cmd.Peer}]
	n.linkMu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// dial opens a relay link as the dialling node and serves it until it
// ends. The token is checked before anything is sent: a node never dials a
// peer the meeting's policy forbids.
func (n *Node) dial(ctx context.Context, cmd cluster.Command) error {
	claims, rerr := n.verifyRelayToken(ctx, cmd.Token, true)
	if rerr != nil {
		return rerr
	}
	if claims.Meeting != cmd.Meeting || claims.To.ID != cmd.Peer {
		return relayRefusal(CodeRelayBadToken, "relay token is for meeting %s to %s, the command for %s to %s", claims.Meeting, claims.To.ID, cmd.Meeting, cmd.Peer)
	}
	// Without the host's word on where the meeting may go, nothing is
	// dialled; the peer's certificate is checked against it once the
	// peer has sent it.
	hp, rerr := n.hostPolicyFor(claims.Meeting)
	if rerr != nil {
		return rerr
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(hctx, cmd.PeerURL, n.peerDial)
	if err != nil {
		return fmt.Errorf("dial %s: %w", cmd.PeerURL, err)
	}
	conn := sfu.WebSocketConn(ws)
	link, err := n.dialHandshake(hctx, conn, cmd.Token, claims, hp)
	if err != nil {
		var re *RelayError
		if errors.As(err, &re) && isHostRefusal(re.Code) {
			refuse(hctx, conn, re.Code, re.Message) // the peer's log says why too
		} else {
			_ = conn.Close("relay handshake failed")
		}
		return err
	}
	n.log.Info("relay link up", "meeting", claims.Meeting, "relay_peer", claims.To.ID, "dialer", true)
	return n.sfu.ServeLink(ctx, conn, link)
}

func (n *Node) dialHandshake(ctx context.Context, conn sfu.Conn, tok string, claims token.RelayClaims, hp hostPolicy) (sfu.Link, error) {
	na := nonce()
	if err := writeMsg(ctx, conn, signal.Message{Type: signal.TypeLink, Token: tok, Nonce: na, Cert: n.cfg.Cert}); err != nil {
		return sfu.Link{}, err
	}
	ch, err := readMsg(ctx, conn, signal.TypeLinkChallenge)
	if err != nil {
		return sfu.Link{}, err
	}
	binding := transcript(tok, na, ch.Nonce)
	if !ed25519.Verify(claims.To.IdentityKey, proof(roleAcceptor, binding), ch.Sig) {
		return sfu.Link{}, relayRefusal(CodeRelayBadProof, "node %s did not prove its identity key", claims.To.ID)
	}
	if rerr := n.checkPeer(hp, claims.To.ID, &claims.To, ch.Cert); rerr != nil {
		return sfu.Link{}, rerr
	}
	if err := writeMsg(ctx, conn, signal.Message{Type: signal.TypeLinkProof, Sig: ed25519.Sign(n.identity, proof(roleDialer, binding))}); err != nil {
		return sfu.Link{}, err
	}
	if _, err := readMsg(ctx, conn, signal.TypeLinkReady); err != nil {
		return sfu.Link{}, err
	}
	return sfu.Link{
		Meeting: claims.Meeting, Self: n.info.ID, Peer: claims.To.ID, Dialer: true,
		Key: n.identity, PeerKey: claims.To.IdentityKey, Binding: binding, PeerCert: ch.Cert,
	}, nil
}

// acceptLink runs the accepting side of a relay link whose first message
// was m: it checks the token and policy itself, proves its own identity,
// checks the dialler's proof, and serves the link.
func (n *Node) acceptLink(ctx context.Context, conn sfu.Conn, m signal.Message) {
	link, rerr := n.acceptHandshake(ctx, conn, m)
	if rerr != nil {
		n.log.Warn("relay refused", "code", rerr.Code, "reason", rerr.Message)
		refuse(ctx, conn, rerr.Code, rerr.Message)
		return
	}
	log := n.log.With("meeting", link.Meeting, "relay_peer", link.Peer)
	log.Info("relay link up", "dialer", false)
	err := n.sfu.ServeLink(ctx, conn, link)
	log.Info("relay link ended", "err", err)
}

func (n *Node) acceptHandshake(ctx context.Context, conn sfu.Conn, m signal.Message) (sfu.Link, *RelayError) {
	claims, rerr := n.verifyRelayToken(ctx, m.Token, false)
	if rerr != nil {
		return sfu.Link{}, rerr
	}
	// The dialler's certificate names the identity key its proof must
	// show; checked against the host's policy before anything is sent.
	if rerr := n.checkRelay(claims.Meeting, claims.From.ID, &claims.From, m.Cert); rerr != nil {
		return sfu.Link{}, rerr
	}
	hctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	nb := nonce()
	binding := transcript(m.Token, m.Nonce, nb)
	if err := writeMsg(hctx, conn, signal.Message{Type: signal.TypeLinkChallenge, Nonce: nb, Sig: ed25519.Sign(n.identity, proof(roleAcceptor, binding)), Cert: n.cfg.Cert}); err != nil {
		return sfu.Link{}, relayRefusal(CodeRelayBadHandshake, "%v", err)
	}
	p, err := readMsg(hctx, conn, signal.TypeLinkProof)
	if err != nil {
		return sfu.Link{}, relayRefusal(CodeRelayBadHandshake, "%v", err)
	}
	if !ed25519.Verify(claims.From.IdentityKey, proof(roleDialer, binding), p.Sig) {
		return sfu.Link{}, relayRefusal(CodeRelayBadProof, "the dialling node does not hold the identity key of node %s", claims.From.ID)
	}
	if err := writeMsg(hctx, conn, signal.Message{Type: signal.TypeLinkReady}); err != nil {
		return sfu.Link{}, relayRefusal(CodeRelayBadHandshake, "%v", err)
	}
	return sfu.Link{
		Meeting: claims.Meeting, Self: n.info.ID, Peer: claims.From.ID,
		Key: n.identity, PeerKey: claims.From.IdentityKey, Binding: binding, PeerCert: m.Cert,
	}, nil
}

// isHostRefusal reports whether code is a refusal on the host's policy.
func isHostRefusal(code string) bool {
	return code == CodeRelayNoHostPolicy || code == CodeRelayNotAllowedByHost || code == CodeRelayBadCert
}

func writeMsg(ctx context.Context, conn sfu.Conn, m signal.Message) error {
	b, err := signal.Encode(m)
	if err != nil {
		return err
	}
	if err := conn.Write(ctx, b); err != nil {
		return fmt.Errorf("relay handshake: %w", err)
	}
	return nil
}

// readMsg reads the next handshake message, which must be of kind want; a
// refusal from the peer comes back as a *RelayError.
func readMsg(ctx context.Context, conn sfu.Conn, want signal.Type) (signal.Message, error) {
	data, err := conn.Read(ctx)
	if err != nil {
		return signal.Message{}, fmt.Errorf("relay handshake: awaiting %s: %w", want, err)
	}
	m, err := signal.Decode(data)
	if err != nil {
		return signal.Message{}, relayRefusal(CodeRelayBadHandshake, "awaiting %s: %v", want, err)
	}
	switch m.Type {
	case want:
		return m, nil
	case signal.TypeError:
		return signal.Message{}, &RelayError{Code: m.Code, Message: m.Message}
	}
	return signal.Message{}, relayRefusal(CodeRelayBadHandshake, "awaiting %s, got %s", want, m.Type)
}
