package natsauth_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/store"
)

// replicaState makes what control-plane replicas share beside the store:
// the leader's lease bucket and the events stream, as the replicas make
// them.
func replicaState(t *testing.T, ctx context.Context, nc *nats.Conn) (jetstream.KeyValue, jetstream.Stream) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: cluster.BucketLeader, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	events, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: cluster.StreamEvents,
		Subjects: []string{cluster.SubjectEvents("*")}, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	return kv, events
}

// A node can neither hand the leader a request in a client's name nor
// hear the requests and answers other replicas exchange.
func TestNodeCannotUseTheForwardSubject(t *testing.T) {
	n := startNode(t)
	body, _ := json.Marshal(cluster.ForwardRequest{From: "evil", Method: "POST", URL: "/api/meetings", RemoteAddr: "10.0.0.1:1"})
	_ = n.nc.Publish(cluster.SubjectForward, body)
	n.refused(t, "forwarded request", cluster.SubjectForward)
	if _, err := n.nc.Request(cluster.SubjectForward, body, 300*time.Millisecond); err == nil {
		t.Fatal("a node's forwarded request was answered")
	}
	n.refused(t, "forwarded request awaiting an answer", cluster.SubjectForward)
	for _, subject := range []string{cluster.SubjectForward, "oakmeet.control.>", "_INBOX.control.>"} {
		if _, err := n.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		n.refused(t, "subscription", subject)
	}
}

// A node cannot read, take or renew the leader's lease, nor read, consume,
// ack, purge or delete the events stream the leader takes node events
// from; its own events still land in that stream.
func TestNodeCannotTouchTheLeaseOrTheEventsStream(t *testing.T) {
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	lease, events := replicaState(t, ctx, n.ctl)
	held, _ := json.Marshal(cluster.Lease{Replica: "r1", Term: 1, TTLMs: 2000})
	rev, err := lease.Create(ctx, cluster.LeaderKey, held)
	if err != nil {
		t.Fatal(err)
	}
	leaderStream := "KV_" + cluster.BucketLeader
	leaseSubject := "$KV." + cluster.BucketLeader + "." + cluster.LeaderKey
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	stolen, _ := json.Marshal(cluster.Lease{Replica: "evil", Term: 2, TTLMs: 2000})
	wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = js.Publish(wctx, leaseSubject, stolen)
	wcancel()
	if err == nil {
		t.Fatal("a node's write of the lease acknowledged")
	}
	n.refused(t, "lease write", leaseSubject)

	requests := []struct{ what, subject, body string }{
		{"lease read", "$JS.API.DIRECT.GET." + leaderStream + "." + leaseSubject, ""},
		{"lease stream message", "$JS.API.STREAM.MSG.GET." + leaderStream, `{"last_by_subj":"` + leaseSubject + `"}`},
		{"lease stream info", "$JS.API.STREAM.INFO." + leaderStream, ""},
		{"lease watch", "$JS.API.CONSUMER.CREATE." + leaderStream, `{}`},
		{"lease bucket purge", "$JS.API.STREAM.PURGE." + leaderStream, ""},
		{"lease bucket delete", "$JS.API.STREAM.DELETE." + leaderStream, ""},
		{"events consumer", "$JS.API.CONSUMER.CREATE." + cluster.StreamEvents, `{}`},
		{"named events consumer", "$JS.API.CONSUMER.CREATE." + cluster.StreamEvents + ".evil." + cluster.SubjectEvents("a"), `{}`},
		{"durable events consumer", "$JS.API.CONSUMER.DURABLE.CREATE." + cluster.StreamEvents + ".evil", `{}`},
		{"the leader's events", "$JS.API.CONSUMER.MSG.NEXT." + cluster.StreamEvents + ".control", `{"batch":10}`},
		{"events consumer delete", "$JS.API.CONSUMER.DELETE." + cluster.StreamEvents + ".control", ""},
		{"events read", "$JS.API.STREAM.MSG.GET." + cluster.StreamEvents, `{"seq":1}`},
		{"events message delete", "$JS.API.STREAM.MSG.DELETE." + cluster.StreamEvents, `{"seq":1}`},
		{"events purge", "$JS.API.STREAM.PURGE." + cluster.StreamEvents, ""},
		{"events delete", "$JS.API.STREAM.DELETE." + cluster.StreamEvents, ""},
		{"events stream change", "$JS.API.STREAM.UPDATE." + cluster.StreamEvents, `{}`},
	}
	for _, r := range requests {
		msg, err := n.nc.Request(r.subject, []byte(r.body), 300*time.Millisecond)
		if err == nil {
			t.Fatalf("%s (%s) answered: %s", r.what, r.subject, msg.Data)
		}
		n.refused(t, r.what, r.subject)
	}
	ack := "$JS.ACK." + cluster.StreamEvents + ".control.1.1.1.0.0"
	_ = n.nc.Publish(ack, []byte("+ACK"))
	n.refused(t, "ack of the leader's event", ack)
	if _, err := n.nc.SubscribeSync("$KV." + cluster.BucketLeader + ".>"); err != nil {
		t.Fatal(err)
	}
	n.refused(t, "lease subscription", "$KV."+cluster.BucketLeader+".>")

	// Nothing changed: the lease is the replica's, at its revision.
	if e, err := lease.Get(ctx, cluster.LeaderKey); err != nil || e.Revision() != rev || string(e.Value()) != string(held) {
		t.Fatalf("lease now %v, %v", e, err)
	}
	// The node's own event goes where it always went, and the stream
	// keeps it for the leader.
	if err := n.nc.Publish(cluster.SubjectEvents("a"), []byte(`{"kind":"connected","node":"a"}`)); err != nil {
		t.Fatal(err)
	}
	waitMsgs(t, ctx, events, 1)
}

func waitMsgs(t *testing.T, ctx context.Context, s jetstream.Stream, want uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := s.Info(ctx)
		if err == nil && info.State.Msgs == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream %s: %v messages (%v), want %d", s.CachedInfo().Config.Name, info, err, want)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// A replica's own identity does every part of its job: the store, the
// lease, the forward subject both ways, and a durable consumer of the
// events stream that acks what it took in.
func TestReplicaIdentityDoesItsJob(t *testing.T) {
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	connect := func(name string) *nats.Conn {
		creds, err := e.Auth().ReplicaCreds(name)
		if err != nil {
			t.Fatal(err)
		}
		u, err := natsauth.ParseCreds(creds)
		if err != nil || u.Name != "oakmeet-control-"+name {
			t.Fatalf("replica user %q, %v", u.Name, err)
		}
		nc, err := bus.Connect(e.URL(), u.Name, bus.Creds(creds), bus.NATSOptions(nats.ErrorHandler(
			func(_ *nats.Conn, _ *nats.Subscription, err error) { t.Errorf("replica %s: %v", name, err) })))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		return nc
	}
	r1, r2 := connect("r1"), connect("r2")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := store.Open(ctx, r1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateMeeting(ctx, "m1", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	lease, events := replicaState(t, ctx, r1)

	// The lease: taken, renewed at its revision, watched and taken over by
	// the other.
	js2, _ := jetstream.New(r2)
	lease2, err := js2.KeyValue(ctx, cluster.BucketLeader)
	if err != nil {
		t.Fatal(err)
	}
	w, err := lease2.Watch(ctx, cluster.LeaderKey)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	rev, err := lease.Create(ctx, cluster.LeaderKey, []byte(`{"replica":"r1","term":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if rev, err = lease.Update(ctx, cluster.LeaderKey, []byte(`{"replica":"r1","term":1}`), rev); err != nil {
		t.Fatal(err)
	}
	for seen := uint64(0); seen < rev; {
		select {
		case u := <-w.Updates():
			if u != nil {
				seen = u.Revision()
			}
		case <-ctx.Done():
			t.Fatal("r2 never saw r1's renewal")
		}
	}
	if _, err := lease2.Update(ctx, cluster.LeaderKey, []byte(`{"replica":"r2","term":2}`), rev); err != nil {
		t.Fatal(err)
	}

	// Forwarding: r2 leads now, r1 hands it a request.
	sub, err := r2.Subscribe(cluster.SubjectForward, func(m *nats.Msg) {
		out, _ := json.Marshal(cluster.ForwardResponse{Status: 200, Leader: "r2"})
		_ = m.Respond(out)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = r2.Flush()
	req, _ := json.Marshal(cluster.ForwardRequest{From: "r1", Method: "GET", URL: "/api/nodes"})
	m, err := r1.Request(cluster.SubjectForward, req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := cluster.Decode[cluster.ForwardResponse]("forward response", m.Data); err != nil || resp.Leader != "r2" {
		t.Fatalf("forward answer %+v, %v", resp, err)
	}

	// The events stream: a node's event, taken in and acked by the
	// leader's durable consumer.
	node, err := e.ConnectNode("a")
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close()
	if err := node.Publish(cluster.SubjectEvents("a"), []byte(`{"kind":"connected"}`)); err != nil {
		t.Fatal(err)
	}
	waitMsgs(t, ctx, events, 1)
	stream2, err := js2.Stream(ctx, cluster.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream2.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "control", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for msg := range batch.Messages() {
		got++
		if err := msg.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if got != 1 || batch.Error() != nil {
		t.Fatalf("fetched %d events, %v", got, batch.Error())
	}
	info, err := cons.Info(ctx)
	if err != nil || info.AckFloor.Stream != 1 || info.NumAckPending != 0 {
		t.Fatalf("consumer %+v, %v", info, err)
	}
}

func TestReplicaCredsRefusesABadName(t *testing.T) {
	d, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "a.b", "a b", "*", ">", "r/1", string(make([]byte, 65))} {
		if _, err := d.ReplicaCreds(name); err == nil {
			t.Fatalf("replica name %q accepted", name)
		}
	}
}
