package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/token"
)

// lockedBuffer is a log a test reads while the server writes it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.b.String(), s)
}

// runWithLog runs a control plane on e whose log the test reads.
func runWithLog(t *testing.T, e *rigEnv) *lockedBuffer {
	t.Helper()
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := New(ctx, Config{Store: e.st, NATS: e.ctl, Locator: loc, Key: e.key, EnrollmentKey: testEnrollmentPub(), Limits: NoLimits(),
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Timing: e.timing})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	waitUntil(t, "control plane ready", srv.ready.Load)
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	})
	return logs
}

// askKey is a node's token key request through its own inbox.
func askKey(nc *nats.Conn) (cluster.TokenKeyAnswer, error) {
	msg, err := nc.Request(cluster.SubjectTokenKey, nil, 5*time.Second)
	if err != nil {
		return cluster.TokenKeyAnswer{}, err
	}
	return cluster.Decode[cluster.TokenKeyAnswer]("token key answer", msg.Data)
}

// A node asking for the token key with a reply subject of its choosing
// gets nothing written there: the control plane answers only into a
// node's inbox, and says so in its log.
func TestTokenKeyIsAnsweredOnlyIntoANodeInbox(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE")
	ctx := context.Background()
	js, err := jetstream.New(e.ctl)
	if err != nil {
		t.Fatal(err)
	}
	leader, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.BucketLeader, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	logs := runWithLog(t, e)
	nc := e.conns["de-fra"]
	var ans cluster.TokenKeyAnswer
	waitUntil(t, "the control plane answers", func() bool {
		ans, err = askKey(nc)
		return err == nil
	})
	if !bytes.Equal(ans.Key, e.key.Public().(ed25519.PublicKey)) || ans.Rotation != "" {
		t.Fatalf("answer %+v, want the control plane's key and no rotation", ans)
	}
	auditBefore, err := e.st.AuditLastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	replies := []string{
		cluster.AuditSubject("x"),
		cluster.AuditSubject(""),
		"$KV." + cluster.BucketMeetings + ".x",
		"$KV." + cluster.BucketLeader + "." + cluster.LeaderKey,
		"$KV." + cluster.BucketNodes + ".other",
		"$KV." + cluster.BucketControl + "." + cluster.KeyTokenPublicKey,
		"$JS.API.STREAM.PURGE.KV_" + cluster.BucketControl,
		"_INBOX.control.x",
		cluster.NodeInboxRoot + ".>",
	}
	for _, reply := range replies {
		if err := nc.PublishMsg(&nats.Msg{Subject: cluster.SubjectTokenKey, Reply: reply}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "every request refused", func() bool {
		return logs.count("token key request refused") == len(replies)
	})
	// Requests are answered in order: once a later one is, any write
	// the refused ones made would have been sent.
	if _, err := askKey(nc); err != nil {
		t.Fatal(err)
	}
	if seq, err := e.st.AuditLastSeq(ctx); err != nil || seq != auditBefore {
		t.Fatalf("audit log's last entry now %d (was %d), %v", seq, auditBefore, err)
	}
	for bucket, key := range map[string]string{cluster.BucketMeetings: "x", cluster.BucketNodes: "other"} {
		kv, err := js.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatal(err)
		}
		if v, err := kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("%s/%s written: %v %v", bucket, key, v, err)
		}
	}
	if v, err := leader.Get(ctx, cluster.LeaderKey); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("the leader's lease written: %v %v", v, err)
	}
	if v, err := e.st.Control(ctx, cluster.KeyTokenPublicKey); err != nil || !bytes.Equal(v, ans.Key) {
		t.Fatalf("stored token key now %x, %v", v, err)
	}
	if n, err := e.st.Control(ctx, cluster.KeyTokenRotation); err == nil {
		t.Fatalf("rotation statements written: %q", n)
	}
}

// The answer carries the stored rotation statements, which a node
// follows from the key it pinned.
func TestTokenKeyAnswerCarriesTheRotation(t *testing.T) {
	e := newRigEnv(t, quietTiming, "de-fra:DE")
	_, next, _ := ed25519.GenerateKey(nil)
	stmt, err := token.SignRotation(e.key, next.Public().(ed25519.PublicKey), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutControl(context.Background(), cluster.KeyTokenRotation, []byte(stmt)); err != nil {
		t.Fatal(err)
	}
	runWithLog(t, e)
	var ans cluster.TokenKeyAnswer
	waitUntil(t, "the control plane answers", func() bool {
		ans, err = askKey(e.conns["de-fra"])
		return err == nil
	})
	if ans.Rotation != stmt {
		t.Fatalf("rotation %q, want %q", ans.Rotation, stmt)
	}
}
