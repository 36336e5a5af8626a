package adversary

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/testcluster"
)

// AuditLog rewrites the deployment's audit log where it is stored, with the
// control plane's NATS identity and its private key: what a compromised
// control plane, or whoever holds its data and key, can do. The stream
// allows no deleting or purging of entries, so each rewrite deletes the
// whole stream and writes it again, and signs and stores a checkpoint of
// the rewritten log in place of the one the control plane keeps of its
// own, with the real key and origin. Every rewrite leaves a log that
// verifies on its own with the real key: chains linked, entries signed,
// indexes in order. Only a checkpoint held from before (by a participant,
// a witness) shows what it said before. The control plane builds its
// tree from the store when it starts: rewrite while it is stopped
// (testcluster's RestartControlAfter, or RewriteLog).
type AuditLog struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	key ed25519.PrivateKey
}

// OpenAuditLog binds to the audit stream over nc (a NATS connection with the
// control plane's identity); key is the control plane's log key.
func OpenAuditLog(nc *nats.Conn, key ed25519.PrivateKey) (*AuditLog, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("adversary: log key of %d bytes, want an Ed25519 private key", len(key))
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	return &AuditLog{nc: nc, js: js, key: key}, nil
}

// Entries are the stored entries in log order.
func (l *AuditLog) Entries(ctx context.Context) ([]audit.Entry, error) {
	st, err := store.Open(ctx, l.nc)
	if err != nil {
		return nil, err
	}
	last, err := st.AuditLastSeq(ctx)
	if err != nil {
		return nil, err
	}
	var out []audit.Entry
	err = st.ReadAudit(ctx, "", true, 1, last, 0, func(r store.AuditRecord) error {
		var e audit.Entry
		if err := json.Unmarshal(r.Data, &e); err != nil {
			return fmt.Errorf("adversary: stored audit record %d: %w", r.Seq, err)
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// Truncate keeps the first k entries, as they were, and drops the rest:
// each chain simply ends earlier.
func (l *AuditLog) Truncate(ctx context.Context, k int) error {
	entries, err := l.Entries(ctx)
	if err != nil {
		return err
	}
	if k < 0 || k > len(entries) {
		return fmt.Errorf("adversary: cannot keep %d of %d entries", k, len(entries))
	}
	return l.write(ctx, entries[:k])
}

// Edit changes the entry of log index i with edit and seals its chain
// again with the real key from that entry on (seq, links, hashes and
// signatures); entries of other chains stay as they were.
func (l *AuditLog) Edit(ctx context.Context, i int64, edit func(*audit.Entry)) error {
	entries, err := l.Entries(ctx)
	if err != nil {
		return err
	}
	if i < 0 || i >= int64(len(entries)) || entries[i].Index != i {
		return fmt.Errorf("adversary: no entry of index %d among %d", i, len(entries))
	}
	resealFrom(l.key, entries, i, edit)
	return l.write(ctx, entries)
}

// resealFrom changes entries[i] with edit and seals its chain again with
// key from that entry on; entries of other chains stay as they were.
func resealFrom(key ed25519.PrivateKey, entries []audit.Entry, i int64, edit func(*audit.Entry)) {
	meeting := entries[i].Meeting
	edit(&entries[i])
	entries[i].Meeting = meeting // an entry moved to another chain is another rewrite
	var head audit.Head
	for k := int64(0); k < i; k++ {
		if entries[k].Meeting == meeting {
			head = entries[k].Head()
		}
	}
	ch := audit.NewChain(key, meeting, head)
	for k := i; k < int64(len(entries)); k++ {
		if entries[k].Meeting == meeting {
			entries[k] = ch.Seal(entries[k])
		}
	}
}

// Rebuild writes a fresh log: the entries keep of the stored ones (all
// of them when keep is nil), each chain sealed again from its first entry
// and every entry numbered again from index 0, as if the log had only
// ever held those.
func (l *AuditLog) Rebuild(ctx context.Context, keep func(audit.Entry) bool) error {
	entries, err := l.Entries(ctx)
	if err != nil {
		return err
	}
	chains := map[string]*audit.Chain{}
	var out []audit.Entry
	for _, e := range entries {
		if keep != nil && !keep(e) {
			continue
		}
		ch, ok := chains[e.Meeting]
		if !ok {
			ch = audit.NewChain(l.key, e.Meeting, audit.Head{})
			chains[e.Meeting] = ch
		}
		e.Index = int64(len(out))
		out = append(out, ch.Seal(e))
	}
	return l.write(ctx, out)
}

// write replaces the stream with entries, in order.
func (l *AuditLog) write(ctx context.Context, entries []audit.Entry) error {
	if err := l.js.DeleteStream(ctx, cluster.StreamAudit); err != nil {
		return fmt.Errorf("adversary: delete the audit stream: %w", err)
	}
	// The store makes the stream again exactly as the control plane does.
	if _, err := store.Open(ctx, l.nc); err != nil {
		return err
	}
	for _, e := range entries {
		// A record is the entry's leaf, as the control plane stores it.
		data, err := audit.LeafData(&e)
		if err != nil {
			return err
		}
		if _, err := l.js.Publish(ctx, cluster.AuditSubject(e.Meeting), data); err != nil {
			return fmt.Errorf("adversary: write audit entry %d: %w", e.Index, err)
		}
	}
	// The control plane keeps the newest checkpoint it signed, and will
	// not extend a log that does not extend it, nor one without it; with
	// its key a checkpoint of the rewritten log takes its place.
	kv, err := l.js.KeyValue(ctx, cluster.BucketControl)
	if err != nil {
		return fmt.Errorf("adversary: control values: %w", err)
	}
	signed, err := l.checkpoint(ctx, kv, entries)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, controlCheckpointKey, signed); err != nil {
		return fmt.Errorf("adversary: store a checkpoint of the rewritten log: %w", err)
	}
	return nil
}

// checkpoint signs a checkpoint of entries under the origin of the
// checkpoint the control plane stored (its default origin when there is
// none): the one it checks the stream against at its next start.
func (l *AuditLog) checkpoint(ctx context.Context, kv jetstream.KeyValue, entries []audit.Entry) ([]byte, error) {
	origin := audit.DefaultOrigin(l.key.Public().(ed25519.PublicKey))
	old, err := kv.Get(ctx, controlCheckpointKey)
	switch {
	case err == nil:
		cp, err := audit.PeekCheckpoint(old.Value())
		if err != nil {
			return nil, fmt.Errorf("adversary: the control plane's stored checkpoint: %w", err)
		}
		origin = cp.Origin
	case !errors.Is(err, jetstream.ErrKeyNotFound):
		return nil, fmt.Errorf("adversary: the control plane's stored checkpoint: %w", err)
	}
	signer, err := audit.NewSigner(origin, l.key)
	if err != nil {
		return nil, fmt.Errorf("adversary: %w", err)
	}
	var tree audit.Tree
	for _, e := range entries {
		leaf, err := audit.LeafData(&e)
		if err != nil {
			return nil, err
		}
		tree.Append(leaf)
	}
	root, err := tree.Root(tree.Size())
	if err != nil {
		return nil, err
	}
	return audit.SignCheckpoint(signer, audit.Checkpoint{Origin: origin, Size: tree.Size(), Root: root})
}

// controlCheckpointKey is the control value the control plane keeps its
// newest checkpoint under (control/auditlog.go keyCheckpoint).
const controlCheckpointKey = "audit_checkpoint"

// RewriteLog stops c's control plane (and its nodes), rewrites the log
// with rewrite and the control plane's own key, and starts the control
// plane again, which builds its tree from the rewritten store. The nodes
// are the caller's to start again.
func RewriteLog(t testing.TB, c *testcluster.Cluster, rewrite func(context.Context, *AuditLog) error) {
	t.Helper()
	c.RestartControlAfter(func(nc *nats.Conn) error {
		l, err := OpenAuditLog(nc, c.ControlKey())
		if err != nil {
			return err
		}
		return rewrite(context.Background(), l)
	})
}
