package control

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/store"
)

// tokenKeyReadTimeout bounds the store read of the rotation statements
// behind one answer.
const tokenKeyReadTimeout = 2 * time.Second

// serveTokenKey answers media nodes' token key requests
// (cluster.SubjectTokenKey) until ctx ends. Nodes have no JetStream rights,
// so this is how they learn the key they pin. One subscription takes the
// requests one at a time: a node flooding them has at most one store read
// in flight, and what it sends beyond the subscription's pending limit is
// dropped.
func (s *Server) serveTokenKey(ctx context.Context) (*nats.Subscription, error) {
	sub, err := s.cfg.NATS.Subscribe(cluster.SubjectTokenKey, func(m *nats.Msg) { s.answerTokenKey(ctx, m) })
	if err != nil {
		return nil, fmt.Errorf("control: subscribe to token key requests: %w", err)
	}
	return sub, nil
}

// answerTokenKey answers one request, but only into a node's inbox. The
// reply subject is the requester's choice and this connection may publish
// into the audit log and every bucket: answering anywhere else would write
// there for the node.
func (s *Server) answerTokenKey(ctx context.Context, m *nats.Msg) {
	if err := cluster.CheckNodeReply(m.Reply); err != nil {
		s.log.Warn("token key request refused", "reply", m.Reply, "err", err)
		return
	}
	ans := cluster.TokenKeyAnswer{Key: s.cfg.Key.Public().(ed25519.PublicKey)}
	rctx, cancel := context.WithTimeout(ctx, tokenKeyReadTimeout)
	chain, err := s.cfg.Store.Control(rctx, cluster.KeyTokenRotation)
	cancel()
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		// A node asking for rotation statements needs them; one asking
		// for the key alone asks again on its next token.
		s.log.Warn("token key request: reading the rotation statements", "err", err)
		return
	default:
		ans.Rotation = string(chain)
	}
	data, err := json.Marshal(ans)
	if err != nil {
		return
	}
	if err := s.cfg.NATS.Publish(m.Reply, data); err != nil {
		s.log.Warn("token key request: answering", "err", err)
	}
}
