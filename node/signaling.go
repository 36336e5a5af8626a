package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/token"
)

// Reasons a signaling connection is refused before it reaches the SFU.
// They are sent as an error message and as the WebSocket close reason.
const (
	CodeBadJoin      = "bad_join"
	CodeBadToken     = "bad_token"
	CodeTokenExpired = "token_expired"
	CodeWrongNode    = "wrong_node"
	CodeDraining     = "node_draining"
	CodeNodeFull     = "node_full"
	CodeNotReady     = "node_not_ready"
)

func (n *Node) handleSignaling(w http.ResponseWriter, r *http.Request) {
	lim := n.cfg.WebSocket.withDefaults()
	release, ok := n.pending.admit(w, r, lim)
	if !ok {
		return // admit has answered the HTTP request
	}
	defer release()
	alive := &liveness{}
	alive.seen()
	// Participants authenticate with the join token, not cookies, so any
	// origin (the web app is served by the control plane) may connect.
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true,
		OnPongReceived: func(context.Context, []byte) { alive.seen() }})
	if err != nil {
		return // Accept has answered the HTTP request
	}
	conn := &liveConn{Conn: sfu.WebSocketConn(ws), alive: alive}
	ws.SetReadLimit(lim.FirstMessageBytes)
	ctx, cancel := context.WithCancel(r.Context())
	stop := n.keepAlive(ctx, ws, lim, alive, r.RemoteAddr)
	defer func() {
		cancel()
		stop()
	}()

	first, code, msg := readFirst(ctx, conn, lim.JoinTimeout)
	release() // a connection that has spoken no longer counts as pending
	ws.SetReadLimit(lim.MessageBytes)
	if code == "" && first.Type == signal.TypeLink {
		n.acceptLink(ctx, conn, first)
		return
	}
	var claims token.JoinClaims
	if code == "" {
		claims, code, msg = n.admit(ctx, first)
	}
	if code != "" {
		n.log.Info("signaling refused", "code", code, "reason", msg, "remote", r.RemoteAddr)
		refuse(ctx, conn, code, msg)
		return
	}
	log := n.log.With("meeting", claims.Meeting, "participant", claims.Participant)
	// Before the control plane hears of the connection, and so before it
	// asks for a relay link this participant's host policy must govern.
	n.learnHost(claims.Meeting, claims.Participant, first.HostKey, first.Statement)
	if n.turn != nil {
		n.turn.grants.returned(claims.Meeting, claims.Participant)
	}
	n.publishEvent(cluster.Event{Kind: cluster.EventConnected, Meeting: claims.Meeting, Participant: claims.Participant})
	log.Info("participant connected")
	err = n.sfu.Serve(ctx, conn, sfu.Identity{Meeting: claims.Meeting, Participant: claims.Participant, Name: claims.Name, Joined: claims.IssuedAt,
		Nonce: first.Nonce})
	reason := "left"
	switch {
	case errors.Is(err, sfu.ErrReplaced):
		// The same participant connected again; the new connection owns
		// the seat, so this is not a departure.
		log.Info("participant replaced by a new connection")
		return
	case errors.Is(err, sfu.ErrKicked):
		reason = "removed by the node"
	case errors.Is(err, sfu.ErrClosed):
		reason = "node shutting down"
	case errors.Is(err, sfu.ErrNotNegotiated):
		reason = signal.ReasonNegotiationTimeout
	case err != nil:
		reason = "connection lost"
	}
	log.Info("participant disconnected", "reason", reason, "err", err)
	// Its TURN credential stops working with it: nothing relays for a
	// participant who is not here.
	if n.turn != nil {
		n.turn.grants.left(claims.Meeting, claims.Participant, n.now())
	}
	n.publishEvent(cluster.Event{Kind: cluster.EventDisconnected, Meeting: claims.Meeting, Participant: claims.Participant, Reason: reason})
}

// readFirst reads a connection's first message: a participant's join, or
// another node's link.
func readFirst(ctx context.Context, conn sfu.Conn, timeout time.Duration) (signal.Message, string, string) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	data, err := conn.Read(rctx)
	if errors.Is(err, websocket.ErrMessageTooBig) {
		return signal.Message{}, CodeBadJoin, "first message too large"
	}
	if err != nil {
		return signal.Message{}, CodeBadJoin, "no join message within " + timeout.String()
	}
	m, err := signal.Decode(data)
	if err != nil {
		return signal.Message{}, CodeBadJoin, err.Error()
	}
	return m, "", ""
}

// admit checks a participant's join message and its token. It returns a
// refusal code and message, or the verified claims.
func (n *Node) admit(ctx context.Context, m signal.Message) (token.JoinClaims, string, string) {
	if m.Type != signal.TypeJoin || m.Token == "" {
		return token.JoinClaims{}, CodeBadJoin, fmt.Sprintf("the first message must be a join with a token, got %q", m.Type)
	}
	var claims token.JoinClaims
	err := n.verifyToken(ctx, func(pub ed25519.PublicKey) (err error) {
		claims, err = token.VerifyJoin(pub, m.Token, n.now())
		return err
	})
	switch {
	case errors.Is(err, errNoTokenKey):
		return token.JoinClaims{}, CodeNotReady, err.Error()
	case errors.Is(err, token.ErrExpired), errors.Is(err, token.ErrNotYetValid):
		return claims, CodeTokenExpired, "join token expired: join through the control plane again"
	case err != nil:
		return claims, CodeBadToken, "join token rejected: " + err.Error()
	}
	if err := claims.CheckNode(n.info.ID); err != nil {
		return claims, CodeWrongNode, fmt.Sprintf("this token is for node %s, not %s", claims.Node, n.info.ID)
	}
	if n.draining.Load() {
		return claims, CodeDraining, "node is draining: join through the control plane again"
	}
	if max := n.cfg.MaxParticipants; max > 0 && n.sfu.Load().Participants >= max {
		return claims, CodeNodeFull, "node is at capacity"
	}
	return claims, "", ""
}

func refuse(ctx context.Context, conn sfu.Conn, code, msg string) {
	data, _ := signal.Encode(signal.Message{Type: signal.TypeError, Code: code, Message: msg})
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_ = conn.Write(wctx, data)
	_ = conn.Close(code + ": " + msg)
}

func (n *Node) publishEvent(e cluster.Event) {
	e.Node, e.Time = n.info.ID, n.now().UTC()
	data, err := json.Marshal(e)
	if err != nil {
		return
	}
	if err := n.cfg.NATS.Publish(cluster.SubjectEvents(n.info.ID), data); err != nil {
		n.log.Warn("publish event", "kind", e.Kind, "err", err)
	}
}
