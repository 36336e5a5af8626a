package adversary

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/signal"
)

// Intruder is a participant that checks nothing: it takes whatever node
// the control plane places it on and connects, as a participant of the
// control plane's own making would. It sends no media; its presence on a
// node is what makes the control plane order relay links to it. It
// passes on the host key and policy statement of its join answer in its
// join message (they are genuine: the control plane cannot forge them),
// so its node learns the host's policy as from any participant.
type Intruder struct {
	// Join is the control plane's answer.
	Join api.JoinResponse

	conn   *websocket.Conn
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	welcomed bool
	received []signal.Message
}

// IntruderConfig says where an intruder joins.
type IntruderConfig struct {
	Server, Meeting, Secret string
	Name, Country           string
	// NoStatement leaves the host key and statement out of the join
	// message: the node learns no host policy from this participant.
	NoStatement bool
}

// Intrude joins and connects; the intruder stays until Close or ctx's end.
func Intrude(ctx context.Context, cfg IntruderConfig) (*Intruder, error) {
	cl := apiclient.New(cfg.Server, nil)
	jr, err := cl.Join(ctx, cfg.Meeting, api.JoinRequest{Name: cfg.Name, Secret: cfg.Secret, Location: api.Hint{Country: cfg.Country}})
	if err != nil {
		return nil, fmt.Errorf("intruder join: %w", err)
	}
	join := signal.Message{Type: signal.TypeJoin, Token: jr.Token, Nonce: make([]byte, signal.JoinNonceBytes)}
	_, _ = rand.Read(join.Nonce)
	if !cfg.NoStatement {
		join.HostKey = jr.Host.Key
		if s := newestPolicy(jr.Host.Statements); s != nil {
			raw, err := json.Marshal(s)
			if err != nil {
				return nil, err
			}
			join.Statement = raw
		}
	}
	runCtx, cancel := context.WithCancel(context.Background())
	dctx, dcancel := context.WithTimeout(ctx, 10*time.Second)
	defer dcancel()
	conn, _, err := websocket.Dial(dctx, jr.Node.URL, nil)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("intruder dial %s: %w", jr.Node.URL, err)
	}
	conn.SetReadLimit(signal.MaxRelayBytes)
	data, err := signal.Encode(join)
	if err != nil {
		cancel()
		_ = conn.CloseNow()
		return nil, err
	}
	if err := conn.Write(dctx, websocket.MessageText, data); err != nil {
		cancel()
		_ = conn.CloseNow()
		return nil, fmt.Errorf("intruder join message: %w", err)
	}
	in := &Intruder{Join: jr, conn: conn, cancel: cancel, done: make(chan struct{})}
	go in.read(runCtx)
	return in, nil
}

func newestPolicy(ss []hoststmt.Statement) *hoststmt.Statement {
	var best *hoststmt.Statement
	for i := range ss {
		if ss[i].Kind == hoststmt.KindPolicy && (best == nil || ss[i].Seq > best.Seq) {
			best = &ss[i]
		}
	}
	return best
}

// read keeps what the node says and answers its pings, so that the node
// keeps the seat; offers go unanswered.
func (in *Intruder) read(ctx context.Context) {
	defer close(in.done)
	for {
		_, data, err := in.conn.Read(ctx)
		if err != nil {
			return
		}
		m, err := signal.DecodeLimit(data, signal.MaxRelayBytes)
		if err != nil {
			continue
		}
		in.mu.Lock()
		in.received = append(in.received, m)
		if m.Type == signal.TypeWelcome {
			in.welcomed = true
		}
		in.mu.Unlock()
		if m.Type == signal.TypePing {
			if b, err := signal.Encode(signal.Message{Type: signal.TypePong}); err == nil {
				_ = in.conn.Write(ctx, websocket.MessageText, b)
			}
		}
	}
}

// Welcomed reports whether the node let the intruder in.
func (in *Intruder) Welcomed() bool {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.welcomed
}

// Close leaves.
func (in *Intruder) Close() {
	in.cancel()
	_ = in.conn.CloseNow()
	<-in.done
}
