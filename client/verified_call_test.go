package client_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/pion/interceptor"
	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// dials records the hosts a client opened a connection to: which nodes it
// spoke to at all.
type dials struct {
	mu    sync.Mutex
	hosts []string
}

func (d *dials) RoundTrip(r *http.Request) (*http.Response, error) {
	d.mu.Lock()
	d.hosts = append(d.hosts, r.URL.Host)
	d.mu.Unlock()
	return http.DefaultTransport.RoundTrip(r)
}

func (d *dials) dialled(nodeURL string) bool {
	u, err := url.Parse(nodeURL)
	if err != nil {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Contains(d.hosts, u.Host)
}

// refusalsAudited are the meeting's node_refused audit entries.
func refusalsAudited(t *testing.T, c *testcluster.Cluster, meeting string) []audit.Entry {
	t.Helper()
	a, err := c.API.Audit(context.Background(), meeting)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Entry
	for _, e := range a.Entries {
		if e.Kind == audit.KindNodeRefused {
			out = append(out, e)
		}
	}
	return out
}

// A control plane that places a participant on a node the host-signed
// policy blocks gets the placement refused before the client opens any
// connection to that node; the refusal is reported, audited, and the call
// goes on from an allowed node. With the control plane honest, the same
// meeting places it there directly.
func TestCallRefusesANodeTheHostPolicyBlocks(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	s := callSetup{cluster: c, gate: newGate(t, c.URL), meeting: c.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE"}}), log: newLegLog()}
	d := &dials{}
	call := s.start(t, client.CallConfig{Options: client.Options{HTTPClient: &http.Client{Transport: d}}})
	if l := s.log.next(t, "honest"); l.Node().ID != "us-iad" || len(call.Refusals()) != 0 {
		t.Fatalf("honest control plane: on %s, refusals %+v", l.Node().ID, call.Refusals())
	}
	_ = call.Close()

	adversary.Misplace(t, c, s.meeting.ID, policy.Policy{})
	d = &dials{}
	call = s.start(t, client.CallConfig{Options: client.Options{HTTPClient: &http.Client{Transport: d}}})
	l := s.log.next(t, "after the refusal")
	if l.Node().ID != "us-iad" {
		t.Fatalf("call on %s", l.Node().ID)
	}
	if cert := l.NodeCert(); cert.Cert.NodeID != "us-iad" || cert.Cert.Country != "US" || cert.Text != l.Node().Cert {
		t.Fatalf("verified cert %+v", cert.Cert)
	}
	rs := call.Refusals()
	if len(rs) != 1 || rs[0].Node.ID != "de-fra" || rs[0].Code != api.CodeNodeNotAllowed || !strings.Contains(rs[0].Message, "Germany (DE)") {
		t.Fatalf("refusals %+v", rs)
	}
	if u := s.gate.nodeURL("de-fra"); u == "" || d.dialled(u) {
		t.Fatal("the client connected to the node it refused")
	}
	if got := s.gate.refusals(); len(got) != 3 || got[2] != api.CodeNodeNotAllowed {
		t.Fatalf("joins' refusals %q: the second call's second join reports the refusal", got)
	}
	audited := refusalsAudited(t, c, s.meeting.ID)
	if len(audited) != 1 || audited[0].Node != "de-fra" || audited[0].NodeCountry != "DE" || !strings.HasPrefix(audited[0].Reason, api.CodeNodeNotAllowed+": ") {
		t.Fatalf("audited %+v", audited)
	}
}

// Without a host fingerprint in its link a call has nothing to check any
// node against: it refuses at once, before asking for a placement.
func TestCallWithoutHostFingerprintRefuses(t *testing.T) {
	s := twoNodes(t)
	_, err := client.StartCall(context.Background(), client.CallConfig{
		Server: s.gate.URL, Meeting: s.meeting.ID, Join: client.JoinRequest{Country: "DE", Secret: s.meeting.JoinSecret},
		Options: client.Options{LoopbackOnly: true},
	})
	if r, ok := client.AsRefusal(err); !ok || r.Code != api.CodeNoHostPolicy || !strings.Contains(r.Message, "#h=") {
		t.Fatalf("StartCall: %v", err)
	}
	if j := s.gate.joins(); len(j) != 0 {
		t.Fatalf("joins %q without a host fingerprint", j)
	}
}

// A control plane that keeps placing the call where the host's policy
// forbids gets MaxRefusals refusals in a row, and the call fails with the
// last one, without ever connecting.
func TestCallGivesUpAfterThreeRefusals(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:3])
	m := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"FR"}})
	adversary.Misplace(t, c, m.ID, policy.Policy{})
	g := newGate(t, c.URL)
	d := &dials{}
	_, err := client.StartCall(context.Background(), client.CallConfig{
		Server: g.URL, Meeting: m.ID, Join: client.JoinRequest{Country: "DE", Secret: m.JoinSecret},
		Options: client.Options{LoopbackOnly: true, HTTPClient: &http.Client{Transport: d}},
		Host:    client.NewHostView(callSetup{cluster: c, meeting: m}.fingerprint()),
		OnLeg: func(*client.Leg) (client.LegHooks, error) {
			t.Error("a refused node made a leg")
			return client.LegHooks{}, nil
		},
	})
	r, ok := client.AsRefusal(err)
	if !ok || r.Code != api.CodeNodeNotAllowed || !errors.Is(err, &client.RefusalError{Code: api.CodeNodeNotAllowed}) {
		t.Fatalf("StartCall: %v", err)
	}
	var gave *client.GaveUpError
	if !errors.As(err, &gave) || len(gave.Refusals) != client.MaxRefusals || gave.Refusals[0].Node.ID == gave.Refusals[1].Node.ID {
		t.Fatalf("gave up with %+v", gave)
	}
	if got := g.refusals(); len(got) != client.MaxRefusals || got[0] != "" || got[1] != api.CodeNodeNotAllowed || got[2] != api.CodeNodeNotAllowed {
		t.Fatalf("joins' refusals %q", got)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if len(d.hosts) != 0 {
		t.Fatalf("connected to %q", d.hosts)
	}
}

// A node whose certificate is not one the host's enrollment key vouches
// for now — self-signed, expired — is refused as node_cert_invalid, as is
// a join answer naming another node than the certificate.
func TestCallRefusesAnInvalidNodeCert(t *testing.T) {
	_, stranger, _ := ed25519.GenerateKey(nil)
	for name, bad := range map[string]func(*testcluster.Cluster, *api.JoinNode){
		"signed by another key": func(_ *testcluster.Cluster, n *api.JoinNode) {
			serial, _ := nodecert.NewSerial()
			cert, _ := nodecert.Issue(stranger, nodecert.Cert{Serial: serial, NodeID: n.ID, Country: n.Country, Region: n.Region,
				IdentityKey: stranger.Public().(ed25519.PublicKey), NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(time.Hour)})
			n.Cert = string(cert)
		},
		"expired": func(c *testcluster.Cluster, n *api.JoinNode) {
			_, n.Cert = c.Enroll(n.ID, n.Country, n.Region, -30*time.Second)
		},
		"another node's": func(c *testcluster.Cluster, n *api.JoinNode) {
			_, n.Cert = c.Enroll("de-ber", n.Country, n.Region, time.Hour)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := twoNodes(t)
			s.gate.setAnswer(func(jr *api.JoinResponse) {
				if jr.Node.ID == "de-fra" {
					bad(s.cluster, &jr.Node)
				}
			})
			call := s.start(t, client.CallConfig{})
			if l := s.log.next(t, "after the refusal"); l.Node().ID != "us-iad" {
				t.Fatalf("call on %s", l.Node().ID)
			}
			if rs := call.Refusals(); len(rs) != 1 || rs[0].Node.ID != "de-fra" || rs[0].Code != api.CodeNodeCertInvalid {
				t.Fatalf("refusals %+v", rs)
			}
			if a := refusalsAudited(t, s.cluster, s.meeting.ID); len(a) != 1 || !strings.HasPrefix(a[0].Reason, api.CodeNodeCertInvalid) {
				t.Fatalf("audited %+v", a)
			}
		})
	}
}

// A node that cannot prove it holds the identity key its certificate names
// (here the control plane hands out a genuine certificate for another key)
// is refused at its welcome, whose signature over the ICE URLs it vouches
// for does not verify: before any SDP, so the call makes no leg there and
// sends it no media, and goes on from another node.
func TestCallRefusesANodeThatCannotProveItsKey(t *testing.T) {
	s := twoNodes(t)
	s.gate.setAnswer(func(jr *api.JoinResponse) {
		if jr.Node.ID == "de-fra" {
			_, jr.Node.Cert = s.cluster.Enroll(jr.Node.ID, jr.Node.Country, jr.Node.Region, time.Hour)
		}
	})
	var mu sync.Mutex
	var legs []*client.Leg
	call := s.start(t, client.CallConfig{OnLeg: func(l *client.Leg) (client.LegHooks, error) {
		mu.Lock()
		legs = append(legs, l)
		mu.Unlock()
		// Publishing makes the client offer: the node's answer is its
		// first SDP.
		if _, err := l.Session().PublishVideo(client.TrackOptions{}); err != nil {
			return client.LegHooks{}, err
		}
		return s.log.onLeg(l)
	}})
	first := s.log.next(t, "first")
	if first.Node().ID != "us-iad" {
		t.Fatalf("first leg on %s", first.Node().ID)
	}
	testcluster.WaitFor(t, 5*time.Second, "the leg current", func() bool { return call.Current() == first })
	mu.Lock()
	n := len(legs)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("%d legs: the unproven node made one", n)
	}
	testcluster.WaitFor(t, 10*time.Second, "us-iad to prove its key", func() bool {
		select {
		case <-first.Session().Proven():
			return true
		default:
			return false
		}
	})
	if rs := call.Refusals(); len(rs) != 1 || rs[0].Code != api.CodeNodeProofInvalid || rs[0].Node.ID != "de-fra" || !strings.Contains(rs[0].Message, "welcome") {
		t.Fatalf("refusals %+v", rs)
	}
	if got := s.gate.refusals(); len(got) != 2 || got[1] != api.CodeNodeProofInvalid {
		t.Fatalf("joins' refusals %q", got)
	}
	if a := refusalsAudited(t, s.cluster, s.meeting.ID); len(a) != 1 || !strings.HasPrefix(a[0].Reason, api.CodeNodeProofInvalid) {
		t.Fatalf("audited %+v", a)
	}
}

// dropMoves stands between clients and nodes and passes every signaling
// message on but the nodes' move messages: a control plane that changes
// the policy and leaves participants where the host's new policy forbids.
func dropMoves(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		target := r.URL.Query().Get("to")
		up, _, err := websocket.Dial(r.Context(), target, nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer up.CloseNow()
		down, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer down.CloseNow()
		up.SetReadLimit(signal.MaxRelayBytes)
		down.SetReadLimit(signal.MaxRelayBytes)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pipe := func(from, to *websocket.Conn, drop func([]byte) bool) {
			defer cancel()
			for {
				typ, b, err := from.Read(ctx)
				if err != nil {
					return
				}
				if drop(b) {
					continue
				}
				if to.Write(ctx, typ, b) != nil {
					return
				}
			}
		}
		go pipe(down, up, func([]byte) bool { return false })
		pipe(up, down, func(b []byte) bool {
			m, err := signal.Decode(b)
			return err == nil && m.Type == signal.TypeMove
		})
	}))
	t.Cleanup(srv.Close)
	return "ws" + strings.TrimPrefix(srv.URL, "http")
}

// On a newer host-signed policy that blocks its node, the call leaves the
// node by itself when no move message comes, reporting the refusal.
func TestCallLeavesANodeTheNewPolicyBlocks(t *testing.T) {
	s := twoNodes(t)
	proxy := dropMoves(t)
	s.gate.setAnswer(func(jr *api.JoinResponse) {
		jr.Node.URL = proxy + "/?to=" + url.QueryEscape(jr.Node.URL)
	})
	call := s.start(t, client.CallConfig{PolicyMoveGrace: 300 * time.Millisecond, HandoverTimeout: 200 * time.Millisecond})
	if l := s.log.next(t, "first"); l.Node().ID != "de-fra" {
		t.Fatalf("first leg on %s", l.Node().ID)
	}
	s.blockDE(t)
	second := s.log.next(t, "after the new policy")
	if second.Node().ID != "us-iad" {
		t.Fatalf("moved to %s", second.Node().ID)
	}
	testcluster.WaitFor(t, 5*time.Second, "the new leg current", func() bool { return call.Current() == second })
	if mv := call.Moves(); len(mv) != 1 || mv[0].Reason != api.CodeNodeNotAllowed {
		t.Fatalf("moves %+v", mv)
	}
	if got := s.gate.refusals(); len(got) != 2 || got[1] != api.CodeNodeNotAllowed {
		t.Fatalf("joins' refusals %q", got)
	}
	if a := refusalsAudited(t, s.cluster, s.meeting.ID); len(a) != 1 || a[0].Node != "de-fra" || a[0].NodeCountry != "DE" {
		t.Fatalf("audited %+v", a)
	}
	if call.Err() != nil {
		t.Fatalf("call ended: %v", call.Err())
	}
}

// On a newer host-signed policy that rules out its node, the call stops
// sending media to that node at once: while it waits PolicyMoveGrace for a
// move message that never comes (the proxy drops it), and until the old
// leg closes, not one more RTP packet leaves for the old node (counted by
// an interceptor closest to the network); the next leg sends.
func TestCallStopsSendingToANodeTheNewPolicyBlocks(t *testing.T) {
	s := twoNodes(t)
	proxy := dropMoves(t)
	s.gate.setAnswer(func(jr *api.JoinResponse) {
		jr.Node.URL = proxy + "/?to=" + url.QueryEscape(jr.Node.URL)
	})
	// Every PeerConnection's RTP packets as they leave for the network,
	// in the order the connections were made: a leg's connections are
	// made before its OnLeg runs, so legConns[i] of them are legs 0..i's.
	counter := &rtpCounter{}
	var legConns []int
	sent := func(l int) uint64 {
		lo := 0
		if l > 0 {
			lo = legConns[l-1]
		}
		return counter.sum(lo, legConns[l])
	}
	var (
		mu          sync.Mutex
		legs        []*client.Leg
		tracks      []*client.LocalTrack
		atStatement uint64
		statement   = make(chan struct{})
		atClose     uint64
		closed      bool
	)
	call := s.start(t, client.CallConfig{PolicyMoveGrace: 500 * time.Millisecond, HandoverTimeout: 200 * time.Millisecond,
		Options: client.Options{Interceptors: []interceptor.Factory{counter}},
		OnLeg: func(l *client.Leg) (client.LegHooks, error) {
			tr, err := l.Session().PublishVideo(client.TrackOptions{})
			if err != nil {
				return client.LegHooks{}, err
			}
			mu.Lock()
			legConns = append(legConns, counter.conns())
			first := len(legs) == 0
			legs, tracks = append(legs, l), append(tracks, tr)
			mu.Unlock()
			hooks, err := s.log.onLeg(l)
			logEvent := hooks.Event
			hooks.Event = func(ev client.Event) {
				// The call handles the statement before the hook sees it.
				if first && ev.Type == client.EventHost && ev.Statement != nil && ev.Statement.Kind == hoststmt.KindPolicy {
					mu.Lock()
					atStatement = sent(0)
					mu.Unlock()
					close(statement)
				}
				logEvent(ev)
			}
			logClosed := hooks.Closed
			hooks.Closed = func() {
				if first {
					mu.Lock()
					atClose, closed = sent(0), true
					mu.Unlock()
				}
				logClosed()
			}
			return hooks, err
		}})
	// A camera: a frame every 20 ms on every leg's track.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			ts := slices.Clone(tracks)
			mu.Unlock()
			for _, tr := range ts {
				_ = tr.WriteSample(media.Sample{Data: []byte{0x10, 0x02, 0x00, 1, 2, 3}, Duration: 20 * time.Millisecond})
			}
		}
	})
	t.Cleanup(func() { close(stop); wg.Wait() })

	first := s.log.next(t, "first")
	if first.Node().ID != "de-fra" {
		t.Fatalf("first leg on %s", first.Node().ID)
	}
	testcluster.WaitFor(t, 10*time.Second, "media flowing to de-fra", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return sent(0) > 20
	})
	s.blockDE(t)
	select {
	case <-statement:
	case <-time.After(10 * time.Second):
		t.Fatal("the new host policy did not reach the call")
	}
	second := s.log.next(t, "after the new policy")
	if second.Node().ID != "us-iad" {
		t.Fatalf("moved to %s", second.Node().ID)
	}
	testcluster.WaitFor(t, 10*time.Second, "the old leg closed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return closed
	})
	mu.Lock()
	before, after := atStatement, atClose
	mu.Unlock()
	if after != before {
		t.Fatalf("%d RTP packets went to de-fra after the policy that rules it out (%d before, %d by its leg's close)", after-before, before, after)
	}
	testcluster.WaitFor(t, 10*time.Second, "media flowing to us-iad", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return sent(1) > 10
	})
	if mv := call.Moves(); len(mv) != 1 || mv[0].Reason != api.CodeNodeNotAllowed {
		t.Fatalf("moves %+v", mv)
	}
}

// rtpCounter is an interceptor factory counting the RTP packets each
// PeerConnection sends, by the order the connections were made.
type rtpCounter struct {
	mu     sync.Mutex
	counts []*atomic.Uint64
}

func (c *rtpCounter) NewInterceptor(string) (interceptor.Interceptor, error) {
	n := &atomic.Uint64{}
	c.mu.Lock()
	c.counts = append(c.counts, n)
	c.mu.Unlock()
	return &countingInterceptor{n: n}, nil
}

// conns is how many connections have been made.
func (c *rtpCounter) conns() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.counts)
}

// sum is the packets sent by connections lo..hi-1.
func (c *rtpCounter) sum(lo, hi int) (n uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, x := range c.counts[lo:hi] {
		n += x.Load()
	}
	return n
}

type countingInterceptor struct {
	interceptor.NoOp
	n *atomic.Uint64
}

func (i *countingInterceptor) BindLocalStream(_ *interceptor.StreamInfo, w interceptor.RTPWriter) interceptor.RTPWriter {
	return interceptor.RTPWriterFunc(func(h *rtp.Header, payload []byte, a interceptor.Attributes) (int, error) {
		i.n.Add(1)
		return w.Write(h, payload, a)
	})
}
