package node

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/token"
)

type fixture struct {
	node *Node
	key  ed25519.PrivateKey
	nc   *nats.Conn
}

// start runs one node on its own NATS, the test holding the token key.
func start(t *testing.T, cfg Config) *fixture {
	t.Helper()
	m := startMesh(t, cfg)
	return &fixture{node: m.nodes[cfg.ID], key: m.key, nc: m.nc}
}

func (f *fixture) token(t *testing.T, key ed25519.PrivateKey, node string, exp time.Time) string {
	t.Helper()
	tok, err := token.SignJoin(key, token.JoinClaims{
		Meeting: "m1", Participant: "p1", Name: "Ada", Node: node,
		IssuedAt: exp.Add(-time.Minute), Expires: exp,
	})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// dial connects, sends msg, and returns the node's first answer.
func (f *fixture) dial(t *testing.T, msg string) signal.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, _, err := websocket.Dial(ctx, f.node.Info().URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	if err := ws.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	_, data, err := ws.Read(ctx)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	m, err := signal.Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func joinMsg(tok string) string {
	b, _ := json.Marshal(signal.Message{V: signal.Version, Type: signal.TypeJoin, Token: tok, Nonce: make([]byte, signal.JoinNonceBytes)})
	return string(b)
}

func TestSignalingRefusesBadTokens(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	_, other, _ := ed25519.GenerateKey(nil)
	future := time.Now().Add(time.Minute)
	cases := []struct {
		name, msg, code string
	}{
		{"expired", joinMsg(f.token(t, f.key, "de-fra", time.Now().Add(-time.Second))), CodeTokenExpired},
		{"forged", joinMsg(f.token(t, other, "de-fra", future)), CodeBadToken},
		{"wrong node", joinMsg(f.token(t, f.key, "us-iad", future)), CodeWrongNode},
		{"garbage token", joinMsg("v1.abc.def"), CodeBadToken},
		{"not json", "{", CodeBadJoin},
		{"not a join", `{"v":1,"type":"chat","text":"hi"}`, CodeBadJoin},
		{"unknown version", `{"v":9,"type":"join","token":"x"}`, CodeBadJoin},
		{"short nonce", `{"v":1,"type":"join","token":"x","nonce":"AAAA"}`, CodeBadJoin},
		{"no nonce", `{"v":1,"type":"join","token":"` + f.token(t, f.key, "de-fra", future) + `"}`, CodeBadJoin},
	}
	for _, tc := range cases {
		m := f.dial(t, tc.msg)
		if m.Type != signal.TypeError || m.Code != tc.code || m.Message == "" {
			t.Errorf("%s: got %+v, want error %s", tc.name, m, tc.code)
		}
	}
	// A good token is welcomed.
	m := f.dial(t, joinMsg(f.token(t, f.key, "de-fra", future)))
	if m.Type != signal.TypeWelcome || m.ID != "p1" || m.Meeting != "m1" {
		t.Fatalf("good token: %+v", m)
	}
}

func TestDrainingNodeRefusesAndReports(t *testing.T) {
	f := start(t, Config{ID: "de-fra", Country: "DE"})
	sub, err := f.nc.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	// The first heartbeat comes after the command subscription is up.
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("no heartbeat: %v", err)
	}
	cmd, _ := json.Marshal(cluster.Command{Kind: cluster.CommandDrain})
	if err := f.nc.Publish(cluster.SubjectCommand("de-fra"), cmd); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("no draining heartbeat: %v", err)
		}
		hb, err := cluster.Decode[cluster.Heartbeat]("heartbeat", msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		if hb.Draining {
			if hb.Node.Country != "DE" || hb.Node.Lat == 0 {
				t.Fatalf("heartbeat node %+v", hb.Node)
			}
			break
		}
	}
	m := f.dial(t, joinMsg(f.token(t, f.key, "de-fra", time.Now().Add(time.Minute))))
	if m.Type != signal.TypeError || m.Code != CodeDraining {
		t.Fatalf("join while draining: %+v", m)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer emb.Shutdown()
	nc, _ := emb.ConnectControl("t")
	defer nc.Close()
	for _, cfg := range []Config{
		{ID: "x", Country: "XX"},
		{ID: "x", Country: "DE", Region: "us-east-1"},
		{ID: "x", Country: "DE", Region: "mars-1"},
		{ID: "a.b", Country: "DE"},
		{ID: "x", Country: "DE", MaxParticipants: -1},
	} {
		cfg.NATS = nc
		if _, err := New(context.Background(), cfg); err == nil || strings.TrimSpace(err.Error()) == "" {
			t.Errorf("%+v accepted", cfg)
		}
	}
}

func TestHeartbeatsStopListingAFinishedMeeting(t *testing.T) {
	m := startMesh(t, Config{ID: "de-fra", Country: "DE"})
	a := m.connect("de-fra", "m1", "a", time.Now())
	b := m.connect("de-fra", "m1", "b", time.Now())
	a.publish(t)
	waitFor(t, 10*time.Second, "b receives a", func() bool { return b.count("a", "audio") > 10 })
	live := m.heartbeat("de-fra", func(hb cluster.Heartbeat) bool { return hb.MeetingBytes["m1"] > 0 }).MeetingBytes["m1"]
	a.close()
	b.close()

	// Once the room has closed, the final count is listed a few times,
	// never below what was reported live, and then no more.
	reports := endedMeetingReports(m.nodes["de-fra"].cfg.Timing)
	sub, err := m.nc.SubscribeSync(cluster.SubjectHeartbeat("*"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	deadline := time.Now().Add(10 * time.Second)
	ended, absent := 0, 0
	var last uint64
	for absent < 3 {
		msg, err := sub.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for heartbeats without m1 (%d listed it after its room closed): %v", ended, err)
		}
		hb, err := cluster.Decode[cluster.Heartbeat]("heartbeat", msg.Data)
		if err != nil {
			t.Fatal(err)
		}
		bytes, listed := hb.MeetingBytes["m1"]
		switch {
		case listed && absent > 0:
			t.Fatalf("m1 listed again after it was dropped: %v", hb.MeetingBytes)
		case listed && bytes < max(live, last):
			t.Fatalf("m1 reported %d bytes after %d", bytes, max(live, last))
		case listed && hb.Load.Meetings == 0:
			ended++
		case !listed:
			if hb.Load.Meetings != 0 {
				t.Fatalf("m1 not listed while the node has %d meetings", hb.Load.Meetings)
			}
			absent++
		}
		last = max(last, bytes)
	}
	if ended < 1 || ended > reports {
		t.Fatalf("m1 listed in %d heartbeats after its room closed, want 1 to %d", ended, reports)
	}
}

func TestEndedMeetingReportsOutlastTheTrafficInterval(t *testing.T) {
	long := cluster.DefaultTiming()
	long.TrafficEvery = 10 * long.HeartbeatInterval
	short := cluster.DefaultTiming()
	short.TrafficEvery = short.HeartbeatInterval / 2
	for _, tc := range []struct {
		name string
		t    cluster.Timing
		want int
	}{
		{"defaults", cluster.DefaultTiming(), 4},
		{"scaled", cluster.DefaultTiming().Scaled(10), 4},
		{"rare traffic writes", long, 12},
		{"traffic written every half heartbeat", short, 3},
	} {
		if got := endedMeetingReports(tc.t); got != tc.want {
			t.Errorf("%s: %d reports, want %d", tc.name, got, tc.want)
		}
	}
}
