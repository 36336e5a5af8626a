package sfu

import (
	"context"
	"fmt"
	"strings"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/signal"
)

// Conn is a participant's signaling channel: whole messages in, whole
// messages out. The node shell reads and verifies the join message itself,
// then hands the rest of the connection to Serve.
type Conn interface {
	Read(ctx context.Context) ([]byte, error)
	Write(ctx context.Context, p []byte) error
	Close(reason string) error
}

// wsReadLimit is the transport's hard cap on one frame. It is well above
// the protocol's limits (signal.MaxRelayBytes for a relay message,
// signal.MaxMessageBytes for any other) on purpose: an oversized message is
// answered with an error by the protocol layer and the participant stays
// connected; only a frame beyond this cap ends the connection.
const wsReadLimit = signal.MaxRelayBytes + signal.MaxMessageBytes

type wsConn struct{ ws *websocket.Conn }

// WebSocketConn adapts a coder/websocket connection to Conn.
func WebSocketConn(ws *websocket.Conn) Conn {
	ws.SetReadLimit(wsReadLimit)
	return wsConn{ws: ws}
}

func (c wsConn) Read(ctx context.Context) ([]byte, error) {
	_, p, err := c.ws.Read(ctx)
	if err != nil {
		return nil, fmt.Errorf("websocket read: %w", err)
	}
	return p, nil
}

func (c wsConn) Write(ctx context.Context, p []byte) error {
	if err := c.ws.Write(ctx, websocket.MessageText, p); err != nil {
		return fmt.Errorf("websocket write: %w", err)
	}
	return nil
}

// Close ends the connection with a normal closure.
func (c wsConn) Close(reason string) error {
	return c.ws.Close(websocket.StatusNormalClosure, closeReason(reason))
}

// closeReason fits reason into a WebSocket close frame: at most 123 bytes
// of UTF-8 (RFC 6455 5.5), cut at a character boundary, since a peer fails
// the connection on a reason that is not valid UTF-8.
func closeReason(reason string) string {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	return strings.ToValidUTF8(reason, "")
}
