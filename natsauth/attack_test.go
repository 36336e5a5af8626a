package natsauth_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/testcluster"
)

// These tests attack a real embedded NATS server in operator mode, each as
// someone on the cluster network would, and fail if the attack works.

func TestConnectionWithoutCredentialsIsRefused(t *testing.T) {
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	if nc, err := nats.Connect(e.URL(), nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Fatal("anonymous connection to the embedded server accepted")
	}
	// A user JWT of a key the deployment never issued is refused as well.
	other, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	creds, _ := other.ControlCreds()
	if nc, err := bus.Connect(e.URL(), "stranger", bus.Creds(creds)); err == nil {
		nc.Close()
		t.Fatal("credentials of another deployment accepted")
	}
}

func TestListenerForOtherMachinesRequiresTLSAndCredentials(t *testing.T) {
	dir := t.TempDir()
	ca, err := natsauth.LoadOrCreateCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvTLS, err := ca.ServerTLS("0.0.0.0", "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir(), Listen: "0.0.0.0:0", TLS: srvTLS, TLSCA: ca.PEM()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.PEM())
	url := strings.Replace(e.URL(), "tls://", "nats://", 1)
	if nc, err := nats.Connect(url, nats.MaxReconnects(0), nats.RootCAs(dir+"/ca.pem")); err == nil {
		nc.Close()
		t.Fatal("anonymous TLS connection accepted")
	}
	creds, _ := e.Auth().NodeCreds("a", time.Time{})
	user, _ := natsauth.ParseCreds(creds)
	plain := nats.UserJWT(func() (string, error) { return user.JWT, nil }, user.Key.Sign)
	if nc, err := nats.Connect(url, nats.MaxReconnects(0), plain); err == nil {
		nc.Close()
		t.Fatal("a connection without TLS accepted")
	}
	// The node's own enrollment gets in, verifying the server with its CA.
	nc, err := bus.Connect(e.URL(), "a", bus.Creds(creds), bus.CA(ca.PEM()))
	if err != nil {
		t.Fatalf("enrolled node refused: %v", err)
	}
	defer nc.Close()
	if !nc.TLSRequired() {
		t.Fatal("connection without TLS")
	}
	// Nor does a node trust a server that its CA did not certify.
	if nc, err := bus.Connect(e.URL(), "a", bus.Creds(creds)); err == nil {
		nc.Close()
		t.Fatal("server certificate accepted without the deployment's CA")
	}
}

// node is media node "a" on a fresh deployment, with the violations its
// connection reports, beside a control-plane connection that owns the
// buckets and the stream.
type node struct {
	nc   *nats.Conn
	ctl  *nats.Conn
	st   *store.Store
	errs chan error
}

func startNode(t *testing.T) *node {
	t.Helper()
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Shutdown)
	ctl, err := e.ConnectControl("control")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ctl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := store.Open(ctx, ctl)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.PutControl(ctx, cluster.KeyTokenPublicKey, []byte("key")); err != nil {
		t.Fatal(err)
	}
	n := &node{ctl: ctl, st: st, errs: make(chan error, 64)}
	creds, err := e.Auth().NodeCreds("a", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	n.nc, err = bus.Connect(e.URL(), "a", bus.Creds(creds), bus.NATSOptions(
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { n.errs <- err })))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.nc.Close)
	return n
}

// refused waits for the server to report a permission violation naming
// subject on the node's connection.
func (n *node) refused(t *testing.T, what, subject string) {
	t.Helper()
	_ = n.nc.Flush()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-n.errs:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-deadline:
			t.Fatalf("%s (%s) was not refused; last error %v", what, subject, n.nc.LastError())
		}
	}
}

func TestNodeCannotSpeakForAnotherNode(t *testing.T) {
	n := startNode(t)
	heard, err := n.ctl.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	_ = n.ctl.Flush()
	hb, _ := json.Marshal(cluster.Heartbeat{Node: cluster.NodeInfo{ID: "b", Country: "DE"}})
	_ = n.nc.Publish(cluster.SubjectHeartbeat("b"), hb)
	n.refused(t, "heartbeat as b", cluster.SubjectHeartbeat("b"))
	_ = n.nc.Publish(cluster.SubjectEvents("b"), []byte(`{"kind":"connected","node":"b"}`))
	n.refused(t, "event as b", cluster.SubjectEvents("b"))
	_ = n.nc.Publish(cluster.SubjectCommand("b"), []byte(`{"kind":"drain"}`))
	n.refused(t, "command to b", cluster.SubjectCommand("b"))

	// Its own heartbeat goes through, and is the first the control plane
	// hears: b's never arrived.
	own, _ := json.Marshal(cluster.Heartbeat{Node: cluster.NodeInfo{ID: "a", Country: "DE"}})
	if err := n.nc.Publish(cluster.SubjectHeartbeat("a"), own); err != nil {
		t.Fatal(err)
	}
	m, err := heard.NextMsg(5 * time.Second)
	if err != nil || m.Subject != cluster.SubjectHeartbeat("a") {
		t.Fatalf("control plane heard %v, %v; want a's own heartbeat", m, err)
	}
}

func TestNodeCannotListenBeyondItsOwnSubjects(t *testing.T) {
	n := startNode(t)
	for _, subject := range []string{
		cluster.SubjectCommand("b"), ">", "oakmeet.>", cluster.SubjectHeartbeat("*"), cluster.SubjectEvents("b"),
		"_INBOX.>", "_INBOX.control.>", "_INBOX.node.b.>", cluster.AuditSubjectAll,
	} {
		if _, err := n.nc.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		n.refused(t, "subscription", subject)
	}
	// Its own command subject is allowed: no violation before a command
	// it then receives.
	sub, err := n.nc.SubscribeSync(cluster.SubjectCommand("a"))
	if err != nil {
		t.Fatal(err)
	}
	_ = n.nc.Flush()
	if err := n.ctl.Publish(cluster.SubjectCommand("a"), []byte("drain")); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("own command: %v (%v)", err, n.nc.LastError())
	}
}

func TestNodeCannotWriteKVOrTheAuditLog(t *testing.T) {
	n := startNode(t)
	js, err := jetstream.New(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	writes := []struct{ what, subject string }{
		{"meeting policy", "$KV." + cluster.BucketMeetings + ".m1"},
		{"node registration", "$KV." + cluster.BucketNodes + ".b"},
		{"token key", "$KV." + cluster.BucketControl + "." + cluster.KeyTokenPublicKey},
		{"audit entry", cluster.AuditSubject("m1")},
		{"audit entry of the deployment", cluster.AuditSubject("")},
		{"bucket purge", "$JS.API.STREAM.PURGE.KV_" + cluster.BucketControl},
		{"bucket delete", "$JS.API.STREAM.DELETE.KV_" + cluster.BucketMeetings},
		{"audit stream change", "$JS.API.STREAM.UPDATE." + cluster.StreamAudit},
		{"message delete", "$JS.API.STREAM.MSG.DELETE." + cluster.StreamAudit},
		{"new stream", "$JS.API.STREAM.CREATE.EVIL"},
	}
	for _, w := range writes {
		wctx, wcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := js.Publish(wctx, w.subject, []byte("evil"))
		wcancel()
		if err == nil {
			t.Fatalf("%s (%s) acknowledged", w.what, w.subject)
		}
		n.refused(t, w.what, w.subject)
	}
	// Nothing changed: the control plane reads what it wrote.
	if v, err := n.st.Control(ctx, cluster.KeyTokenPublicKey); err != nil || string(v) != "key" {
		t.Fatalf("token key now %q, %v", v, err)
	}
	if recs, err := n.st.AuditRecords(ctx, "", true); err != nil || len(recs) != 0 {
		t.Fatalf("audit log now %q, %v", recs, err)
	}
}

// A node has no JetStream rights at all, not even a read of the token key:
// JetStream answers to the reply subject a request names, with the
// account's rights, so any request it may make could write its answer
// into the audit log or a bucket's key.
func TestNodeHasNoJetStreamRights(t *testing.T) {
	n := startNode(t)
	ctl := "KV_" + cluster.BucketControl
	reqs := []struct{ what, subject, body string }{
		{"account info", "$JS.API.INFO", ""},
		{"control bucket info", "$JS.API.STREAM.INFO." + ctl, ""},
		{"control bucket message", "$JS.API.STREAM.MSG.GET." + ctl, `{"last_by_subj":"$KV.` + cluster.BucketControl + `.` + cluster.KeyTokenPublicKey + `"}`},
		{"control bucket direct get", "$JS.API.DIRECT.GET." + ctl, `{"last_by_subj":"$KV.` + cluster.BucketControl + `.` + cluster.KeyTokenPublicKey + `"}`},
		{"token key direct get", "$JS.API.DIRECT.GET." + ctl + ".$KV." + cluster.BucketControl + "." + cluster.KeyTokenPublicKey, ""},
		{"stream list", "$JS.API.STREAM.NAMES", ""},
		{"events stream info", "$JS.API.STREAM.INFO." + cluster.StreamEvents, ""},
		{"consumer on the control bucket", "$JS.API.CONSUMER.CREATE." + ctl, `{}`},
	}
	for _, r := range reqs {
		msg, err := n.nc.Request(r.subject, []byte(r.body), 300*time.Millisecond)
		if err == nil {
			t.Fatalf("%s (%s) answered: %s", r.what, r.subject, msg.Data)
		}
		n.refused(t, r.what, r.subject)
	}
	// The reader nodes once used gets nothing either.
	reader, err := store.OpenReader(n.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if v, err := reader.Control(ctx, cluster.KeyTokenPublicKey); err == nil {
		t.Fatalf("node reads the token key from the store: %q", v)
	}
	// Nor may it publish anywhere JetStream listens besides.
	for _, subject := range []string{"$JS.ACK." + cluster.StreamEvents + ".x.1.1.1.1.1", "$JS.FC.x.y.z"} {
		if err := n.nc.Publish(subject, nil); err != nil {
			t.Fatal(err)
		}
		n.refused(t, "JetStream publish", subject)
	}
}

// The inbox a node's credentials give it is the one the control plane
// answers token key requests into, and only the control plane may take
// those requests: a node answering them could hand another node its key.
func TestTokenKeyRequestsReachOnlyTheControlPlane(t *testing.T) {
	n := startNode(t)
	if _, err := n.nc.SubscribeSync(cluster.SubjectTokenKey); err != nil {
		t.Fatal(err)
	}
	n.refused(t, "token key subscription", cluster.SubjectTokenKey)
	d, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := d.NodeCreds("de-fra", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	user, err := natsauth.ParseCreds(creds)
	if err != nil {
		t.Fatal(err)
	}
	if want := cluster.NodeInboxRoot + ".de-fra"; user.InboxPrefix != want {
		t.Fatalf("node inbox %q, want %q", user.InboxPrefix, want)
	}
	if cluster.CheckNodeReply(user.InboxPrefix+".reply") != nil {
		t.Fatal("the control plane would not answer into the node's inbox")
	}
	// The node may ask, and a control plane answering gets the answer to it.
	sub, err := n.ctl.Subscribe(cluster.SubjectTokenKey, func(m *nats.Msg) { _ = m.Respond([]byte("answer")) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := n.ctl.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := n.nc.Request(cluster.SubjectTokenKey, nil, 5*time.Second); err != nil || string(msg.Data) != "answer" {
		t.Fatalf("token key request: %v (%v)", err, n.nc.LastError())
	}
}

// A node reads nothing but the control bucket: not a meeting's record (its
// policy and host token hash), not a registration, not the audit log.
func TestNodeCannotReadOtherState(t *testing.T) {
	n := startNode(t)
	if _, err := n.st.CreateMeeting(context.Background(), "m1", []byte(`{"host_token_hash":"secret"}`)); err != nil {
		t.Fatal(err)
	}
	reads := []struct{ what, subject, body string }{
		{"meeting record", "$JS.API.DIRECT.GET.KV_" + cluster.BucketMeetings + ".$KV." + cluster.BucketMeetings + ".m1", ""},
		{"meeting stream message", "$JS.API.STREAM.MSG.GET.KV_" + cluster.BucketMeetings, `{"last_by_subj":"$KV.` + cluster.BucketMeetings + `.m1"}`},
		{"node registrations", "$JS.API.STREAM.INFO.KV_" + cluster.BucketNodes, ""},
		{"audit log", "$JS.API.STREAM.MSG.GET." + cluster.StreamAudit, `{"seq":1}`},
		{"audit consumer", "$JS.API.CONSUMER.CREATE." + cluster.StreamAudit, `{}`},
	}
	for _, r := range reads {
		msg, err := n.nc.Request(r.subject, []byte(r.body), 300*time.Millisecond)
		if err == nil {
			t.Fatalf("%s (%s) answered: %s", r.what, r.subject, msg.Data)
		}
		n.refused(t, r.what, r.subject)
	}
}

// A node that names another node inside its own heartbeat is not believed:
// the made-up node is never listed nor placed on.
func TestControlPlaneIgnoresAHeartbeatNamingAnotherNode(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	nc, err := c.NATS().ConnectNode("a-node")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for _, id := range []string{"evil-de", "a-node"} {
		hb, _ := json.Marshal(cluster.Heartbeat{Node: cluster.NodeInfo{ID: id, Country: "DE", URL: "ws://127.0.0.1:1/ws"}, Sent: time.Now()})
		if err := nc.Publish(cluster.SubjectHeartbeat("a-node"), hb); err != nil {
			t.Fatal(err)
		}
	}
	// One connection's messages arrive in order: once a-node is listed,
	// evil-de's heartbeat has been handled.
	c.WaitHealthy(1)
	nodes, err := c.API.Nodes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.ID != "a-node" {
			t.Fatalf("control plane lists %s from a heartbeat on a-node's subject", n.ID)
		}
	}
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"DE"}})
	for range 4 {
		jr, ae, _ := c.Join(m.ID, "DE")
		if ae == nil && jr.Node.ID != "a-node" {
			t.Fatalf("placed on %s", jr.Node.ID)
		}
	}
}
