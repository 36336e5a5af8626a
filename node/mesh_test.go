package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/store"
	"github.com/oakmeet/oakmeet/token"
)

// mesh is several nodes on one embedded NATS, with the test standing in
// for the control plane: it holds the token key and sends commands.
type mesh struct {
	t   *testing.T
	emb *bus.Embedded
	nc  *nats.Conn
	key ed25519.PrivateKey
	// enroll is the deployment's enrollment key: every node gets a
	// certificate signed by it unless its Config has one.
	enroll ed25519.PrivateKey
	// hosts is each meeting's host key; seq the last statement's seq.
	hostMu sync.Mutex
	hosts  map[string]ed25519.PrivateKey
	seq    uint64
	nodes  map[string]*Node
	logs   map[string]*records
	stops  []func()
}

func startMesh(t *testing.T, cfgs ...Config) *mesh {
	t.Helper()
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := emb.ConnectControl("control")
	if err != nil {
		t.Fatal(err)
	}
	m := &mesh{t: t, emb: emb, nc: nc, nodes: map[string]*Node{}, logs: map[string]*records{}, hosts: map[string]ed25519.PrivateKey{}}
	_, m.enroll, _ = ed25519.GenerateKey(nil)
	ctx := context.Background()
	st, err := store.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	_, m.key, _ = ed25519.GenerateKey(nil)
	if err := st.PutControl(ctx, cluster.KeyTokenPublicKey, m.key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	m.answerTokenKey()
	for _, cfg := range cfgs {
		m.start(cfg)
	}
	t.Cleanup(m.close)
	return m
}

func (m *mesh) start(cfg Config) {
	t := m.t
	nc, err := m.emb.ConnectNode(cfg.ID)
	if err != nil {
		t.Fatal(err)
	}
	rec := &records{}
	cfg.NATS, cfg.LoopbackOnly, cfg.Logger = nc, true, slog.New(rec)
	if cfg.Timing == (cluster.Timing{}) {
		cfg.Timing = fastTiming()
	}
	if cfg.Cert == "" {
		if cfg.IdentityKey == nil {
			_, cfg.IdentityKey, _ = ed25519.GenerateKey(nil)
		}
		cfg.Cert = m.certify(cfg.ID, cfg.Country, cfg.Region, cfg.IdentityKey.Public().(ed25519.PublicKey), time.Now().Add(time.Hour))
	}
	n, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	m.nodes[cfg.ID], m.logs[cfg.ID] = n, rec
	m.stops = append(m.stops, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: %v", cfg.ID, err)
		}
		nc.Close()
	})
	// Commands are taken once the first heartbeat is out.
	sub, err := m.nc.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for {
		msg, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("node %s sends no heartbeat: %v", cfg.ID, err)
		}
		if hb, _ := cluster.Decode[cluster.Heartbeat]("heartbeat", msg.Data); hb.Node.ID == cfg.ID {
			return
		}
	}
}

// certify issues a certificate by the mesh's enrollment key, valid from an
// hour ago until notAfter. Without a region the node stands at its
// country's representative point, whose region the certificate names.
func (m *mesh) certify(id, country, region string, key ed25519.PublicKey, notAfter time.Time) string {
	m.t.Helper()
	if region == "" {
		loc, _ := geo.CountryLocation(country)
		region = loc.Region
	}
	serial, _ := nodecert.NewSerial()
	cert, err := nodecert.Issue(m.enroll, nodecert.Cert{Serial: serial, NodeID: id, Country: country, Region: region,
		IdentityKey: key, NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter})
	if err != nil {
		m.t.Fatal(err)
	}
	return string(cert)
}

// hostKey is the meeting's host key, made on first use.
func (m *mesh) hostKey(meeting string) ed25519.PrivateKey {
	m.hostMu.Lock()
	defer m.hostMu.Unlock()
	if m.hosts[meeting] == nil {
		_, m.hosts[meeting], _ = ed25519.GenerateKey(nil)
	}
	return m.hosts[meeting]
}

// statement is a policy statement for p (with no floor) signed by key,
// each one with a higher seq than the last.
func (m *mesh) statement(key ed25519.PrivateKey, p policy.Policy) json.RawMessage {
	m.t.Helper()
	eff, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		m.t.Fatal(err)
	}
	m.hostMu.Lock()
	m.seq++
	st := hoststmt.NewPolicy(uint64(time.Now().UnixMilli())+m.seq, eff, m.enroll.Public().(ed25519.PublicKey))
	m.hostMu.Unlock()
	if err := st.Sign(key); err != nil {
		m.t.Fatal(err)
	}
	raw, err := json.Marshal(st)
	if err != nil {
		m.t.Fatal(err)
	}
	return raw
}

// hostJoin connects a signaling-only participant that names host key key
// and its statement of policy p, as a client that checked them does.
func (m *mesh) hostJoin(node, meeting, id string, key ed25519.PrivateKey, p policy.Policy) *sfutest.Peer {
	m.t.Helper()
	return sfutest.JoinWith(m.t, m.nodes[node].Info().URL, id, signal.Message{
		Token: m.joinToken(node, meeting, id, time.Now()), HostKey: key.Public().(ed25519.PublicKey), Statement: m.statement(key, p),
	})
}

// hostOn has each node learn the meeting's host policy p from a
// participant of its own ("h-" and the node), for tests whose other
// participants are Go clients that name none.
func (m *mesh) hostOn(meeting string, p policy.Policy, nodes ...string) {
	m.t.Helper()
	for _, n := range nodes {
		m.hostJoin(n, meeting, "h-"+n, m.hostKey(meeting), p)
	}
}

// close stops every node, then NATS; safe to call twice.
func (m *mesh) close() {
	for _, stop := range m.stops {
		stop()
	}
	m.stops = nil
	if m.emb != nil {
		m.nc.Close()
		m.emb.Shutdown()
		m.emb = nil
	}
}

// fastTiming is the cluster's clocks ten times faster, so that tests that
// wait for heartbeats wait a tenth as long.
func fastTiming() cluster.Timing { return cluster.DefaultTiming().Scaled(10) }

func relayNode(n *Node) token.RelayNode {
	i := n.Info()
	return token.RelayNode{ID: i.ID, Country: i.Country, Region: i.Region, IdentityKey: i.IdentityKey}
}

// relayClaims are valid claims for a link from node from to node to.
func (m *mesh) relayClaims(meeting, from, to string, p policy.Policy) token.RelayClaims {
	now := time.Now()
	return token.RelayClaims{
		Meeting: meeting, From: relayNode(m.nodes[from]), To: relayNode(m.nodes[to]), Policy: p,
		IssuedAt: now, Expires: now.Add(time.Minute),
	}
}

func (m *mesh) sign(c token.RelayClaims) string {
	m.t.Helper()
	tok, err := token.SignRelay(m.key, c)
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

func (m *mesh) command(node string, cmd cluster.Command) {
	m.t.Helper()
	data, _ := json.Marshal(cmd)
	if err := m.nc.Publish(cluster.SubjectCommand(node), data); err != nil {
		m.t.Fatal(err)
	}
}

// relay tells node from to open a link for meeting to node to.
func (m *mesh) relay(meeting, from, to string, p policy.Policy) {
	m.t.Helper()
	m.command(from, cluster.Command{
		Kind: cluster.CommandRelay, Meeting: meeting, Peer: to, PeerURL: m.nodes[to].Info().URL,
		Token: m.sign(m.relayClaims(meeting, from, to, p)),
	})
}

func (m *mesh) joinToken(node, meeting, id string, issued time.Time) string {
	m.t.Helper()
	tok, err := token.SignJoin(m.key, token.JoinClaims{
		Meeting: meeting, Participant: id, Name: "name-" + id, Node: node,
		IssuedAt: issued, Expires: issued.Add(time.Minute),
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return tok
}

// records is a slog.Handler that keeps what a node logs, so tests can see
// why it refused something.
type records struct {
	mu   sync.Mutex
	recs []map[string]string
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	m := map[string]string{"msg": rec.Message}
	rec.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.String()
		return true
	})
	r.mu.Lock()
	r.recs = append(r.recs, m)
	r.mu.Unlock()
	return nil
}

// find returns the first record with msg and the given code.
func (r *records) find(msg, code string) (map[string]string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, x := range r.recs {
		if x["msg"] == msg && (code == "" || x["code"] == code) {
			return x, true
		}
	}
	return nil, false
}

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// peer is a Go client on a node that records what it receives.
type peer struct {
	s  *client.Session
	mu sync.Mutex
	// packets per publisher and kind; events as received
	packets map[string]int
	events  []client.Event
	done    chan struct{}
	readers sync.WaitGroup
	stop    context.CancelFunc
	pubDone chan struct{}
}

func (m *mesh) connect(node, meeting, id string, issued time.Time) *peer {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info := m.nodes[node].Info()
	// A verifying client: it names the meeting's host key and a statement
	// allowing every node here, and checks the node's SDPs with its key.
	host := m.hostKey(meeting)
	s, err := client.Connect(ctx, client.JoinResult{
		ParticipantID: id, Node: client.NodeInfo{ID: info.ID, URL: info.URL}, Token: m.joinToken(node, meeting, id, issued),
	}, client.Options{LoopbackOnly: true, HostKey: host.Public().(ed25519.PublicKey), Statement: m.statement(host, policy.Policy{}),
		NodeKey: info.IdentityKey})
	if err != nil {
		m.t.Fatalf("connect %s to %s: %v", id, node, err)
	}
	p := &peer{s: s, packets: map[string]int{}, done: make(chan struct{})}
	go p.collect()
	m.t.Cleanup(p.close)
	return p
}

func (p *peer) collect() {
	defer close(p.done)
	for e := range p.s.Events() {
		p.mu.Lock()
		p.events = append(p.events, e)
		p.mu.Unlock()
		if e.Type == client.EventTrackAdded {
			key := e.Info.Participant + "/" + e.Track.Kind().String()
			p.readers.Add(1)
			go func(tr *webrtc.TrackRemote) {
				defer p.readers.Done()
				for {
					if _, _, err := tr.ReadRTP(); err != nil {
						return
					}
					p.mu.Lock()
					p.packets[key]++
					p.mu.Unlock()
				}
			}(e.Track)
		}
	}
}

func (p *peer) count(publisher, kind string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.packets[publisher+"/"+kind]
}

func (p *peer) has(pred func(client.Event) bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.events {
		if pred(e) {
			return true
		}
	}
	return false
}

// sawLeave reports whether the peer saw participant id leave and its
// tracks go.
func (p *peer) sawLeave(id string) bool {
	return p.has(func(e client.Event) bool {
		return e.Type == client.EventParticipantLeft && e.Participant.ID == id
	}) && p.has(func(e client.Event) bool {
		return e.Type == client.EventTrackRemoved && e.Info.Participant == id
	})
}

// publish sends synthetic Opus and VP8 (a key frame every second and on
// request) until the peer closes.
func (p *peer) publish(t *testing.T) {
	t.Helper()
	a, err := p.s.PublishAudio(client.TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, err := p.s.PublishVideo(client.TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.stop, p.pubDone = cancel, make(chan struct{})
	go func() {
		defer close(p.pubDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			_ = a.WriteSample(media.Sample{Data: make([]byte, 60), Duration: 20 * time.Millisecond})
			if n%2 == 0 {
				frame := make([]byte, 500)
				copy(frame, []byte{0x11, 0x02, 0x00})
				if v.TakeKeyFrameRequest("") || n%50 == 0 {
					copy(frame, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00})
				}
				_ = v.WriteSample(media.Sample{Data: frame, Duration: 40 * time.Millisecond})
			}
		}
	}()
}

func (p *peer) close() {
	if p.stop != nil {
		p.stop()
		<-p.pubDone
		p.stop = nil
	}
	_ = p.s.Close()
	<-p.done
	p.readers.Wait()
}
