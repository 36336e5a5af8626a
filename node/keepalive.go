package node

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/sfu"
)

// Close reasons of connections the node ends for going quiet.
const (
	reasonPingTimeout = "ping timeout"
	reasonIdle        = "idle timeout"
)

// liveness remembers when a connection last showed it was there: a message
// or a pong. It reads the wall clock, not Config.Now, because the timers
// that consult it run on the wall clock too.
type liveness struct {
	last atomic.Int64 // UnixNano
}

func (l *liveness) seen() { l.last.Store(time.Now().UnixNano()) }

func (l *liveness) quietFor() time.Duration {
	return time.Duration(time.Now().UnixNano() - l.last.Load())
}

// liveConn is a signaling connection whose every message counts as a sign
// of life.
type liveConn struct {
	sfu.Conn
	alive *liveness
}

func (c *liveConn) Read(ctx context.Context) ([]byte, error) {
	p, err := c.Conn.Read(ctx)
	if err == nil {
		c.alive.seen()
	}
	return p, err
}

// keepAlive pings ws every lim.PingInterval and ends the connection when a
// pong does not come within lim.PongTimeout, or when nothing at all has
// arrived for lim.IdleTimeout. A peer that stops reading, whose network
// died or that holds a connection open without using it so gives its
// resources back. The returned func stops the checks and waits for them.
func (n *Node) keepAlive(ctx context.Context, ws *websocket.Conn, lim WebSocketLimits, alive *liveness, remote string) (stop func()) {
	var wg sync.WaitGroup
	var once sync.Once
	var idleMu sync.Mutex // idle is set after the timer is already running
	var idle *time.Timer
	end := func(reason string) {
		once.Do(func() {
			n.log.Info("signaling connection closed", "reason", reason, "remote", remote)
			// The peer is not answering: a close handshake would only
			// wait for it. The reader sees the connection end.
			_ = ws.CloseNow()
		})
	}
	if lim.IdleTimeout > 0 {
		check := func() {
			idleMu.Lock()
			defer idleMu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if q := alive.quietFor(); q < lim.IdleTimeout {
				idle.Reset(lim.IdleTimeout - q)
				return
			}
			end(reasonIdle)
		}
		idleMu.Lock()
		idle = time.AfterFunc(lim.IdleTimeout, check)
		idleMu.Unlock()
	}
	if lim.PingInterval > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t := time.NewTicker(lim.PingInterval)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
				pctx, cancel := ctx, context.CancelFunc(func() {})
				if lim.PongTimeout > 0 {
					pctx, cancel = context.WithTimeout(ctx, lim.PongTimeout)
				}
				err := ws.Ping(pctx)
				cancel()
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					if errors.Is(err, context.DeadlineExceeded) {
						end(reasonPingTimeout)
					}
					return // otherwise the connection is already gone
				}
			}
		}()
	}
	return func() {
		idleMu.Lock()
		if idle != nil {
			idle.Stop()
		}
		idleMu.Unlock()
		wg.Wait()
	}
}
