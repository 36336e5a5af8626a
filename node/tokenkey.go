package node

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/token"
	"github.com/oakmeet/oakmeet/turncred"
)

// rotationReadEvery is how often at most a bad signature makes the node
// look for rotation statements.
const rotationReadEvery = 500 * time.Millisecond

// tokenKeyWait bounds one request for the token key: a control plane
// that has not answered by then is taken as absent.
const tokenKeyWait = 2 * time.Second

// errNoTokenKey means a token could not be checked: the node has no token
// key pinned and could not read one.
var errNoTokenKey = errors.New("node cannot verify tokens yet")

// verifyToken runs verify with the pinned token key. On a bad signature it
// looks for rotation statements leading from the pinned key and, if they
// verify, pins the key they lead to and verifies once more. Nothing else
// the node is told can change the key: whoever can write the store, or
// answer in the control plane's place, cannot make the node accept their
// tokens.
func (n *Node) verifyToken(ctx context.Context, verify func(ed25519.PublicKey) error) error {
	pub, err := n.tokenKey(ctx)
	if err != nil {
		return fmt.Errorf("%w: %w", errNoTokenKey, err)
	}
	err = verify(pub)
	if errors.Is(err, token.ErrBadSignature) || errors.Is(err, turncred.ErrBadSignature) {
		if next, ok := n.followRotation(ctx, pub); ok {
			err = verify(next)
		}
	}
	return err
}

// tokenKey returns the pinned token key. A node given none in its Config
// trusts the first one the control plane tells it (askTokenKey) and never
// asks for it again; while no control plane answers, each token checked
// asks once more.
func (n *Node) tokenKey(ctx context.Context) (ed25519.PublicKey, error) {
	if p := n.pub.Load(); p != nil {
		return *p, nil
	}
	ans, err := n.askTokenKey(ctx)
	if err != nil {
		return nil, err
	}
	if len(ans.Key) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("token key has %d bytes", len(ans.Key))
	}
	key := ed25519.PublicKey(ans.Key)
	if !n.pub.CompareAndSwap(nil, &key) {
		return *n.pub.Load(), nil // another request pinned first
	}
	n.log.Info("token key pinned on first use", "key", fmt.Sprintf("%x", key[:8]))
	return key, nil
}

// askTokenKey asks the control plane's leader for the token key and its
// rotation statements, a core NATS request answered in the node's own
// inbox: the node has no JetStream rights to read them from the store.
func (n *Node) askTokenKey(ctx context.Context) (cluster.TokenKeyAnswer, error) {
	ctx, cancel := context.WithTimeout(ctx, tokenKeyWait)
	defer cancel()
	msg, err := n.cfg.NATS.RequestWithContext(ctx, cluster.SubjectTokenKey, nil)
	if err != nil {
		return cluster.TokenKeyAnswer{}, fmt.Errorf("ask the control plane for the token key: %w", err)
	}
	return cluster.Decode[cluster.TokenKeyAnswer]("token key answer", msg.Data)
}

// followRotation asks for the rotation statements and, if they lead from
// pinned to another key, pins that one instead.
func (n *Node) followRotation(ctx context.Context, pinned ed25519.PublicKey) (ed25519.PublicKey, bool) {
	// Forged tokens must not turn into a stream of store reads.
	last, now := n.rotationRead.Load(), time.Now().UnixNano()
	if now-last < int64(rotationReadEvery) || !n.rotationRead.CompareAndSwap(last, now) {
		return nil, false
	}
	ans, err := n.askTokenKey(ctx)
	if err != nil {
		return nil, false
	}
	next, err := token.FollowRotations(pinned, ans.Rotation)
	if err != nil {
		return nil, false
	}
	cur := n.pub.Load()
	if cur == nil || !cur.Equal(pinned) || !n.pub.CompareAndSwap(cur, &next) {
		// Someone else moved the key meanwhile; use what is pinned now.
		if p := n.pub.Load(); p != nil {
			return *p, true
		}
		return nil, false
	}
	n.log.Info("token key rotated", "from", fmt.Sprintf("%x", pinned[:8]), "to", fmt.Sprintf("%x", next[:8]))
	return next, true
}
