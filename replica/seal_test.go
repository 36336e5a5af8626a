package replica

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// attacker is a connection to the bus with the control plane's NATS
// permissions but without its key: a NATS server, or a stolen control
// credential. It records everything on the forward subject and the
// replicas' inboxes.
type attacker struct {
	nc *nats.Conn

	mu       sync.Mutex
	requests [][]byte
	inbox    [][]byte
	answers  []chan *nats.Msg
}

func (a *attacker) replies() []chan *nats.Msg {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.answers
}

func newAttacker(t *testing.T, g *rig) *attacker {
	t.Helper()
	nc, err := g.emb.ConnectControl("oakmeet-control-evil")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	a := &attacker{nc: nc}
	for subj, into := range map[string]*[][]byte{cluster.SubjectForward: &a.requests, "_INBOX.control.>": &a.inbox} {
		if _, err := nc.Subscribe(subj, func(m *nats.Msg) {
			a.mu.Lock()
			defer a.mu.Unlock()
			*into = append(*into, append([]byte(nil), m.Data...))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return a
}

func (a *attacker) seen() (requests, inbox [][]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([][]byte(nil), a.requests...), append([][]byte(nil), a.inbox...)
}

// send publishes data on the forward subject with a reply inbox of its
// own, whose messages come on the returned channel.
func (a *attacker) send(t *testing.T, data []byte) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 16)
	a.mu.Lock()
	a.answers = append(a.answers, ch)
	a.mu.Unlock()
	inbox := a.nc.NewRespInbox()
	if _, err := a.nc.ChanSubscribe(inbox, ch); err != nil {
		t.Fatal(err)
	}
	if err := a.nc.PublishMsg(&nats.Msg{Subject: cluster.SubjectForward, Reply: inbox, Data: data}); err != nil {
		t.Fatal(err)
	}
	return ch
}

func refused(t *testing.T, tr *testReplica, reason string) int {
	t.Helper()
	_, m := get(t, tr.url+"/metrics")
	var n int
	for _, line := range strings.Split(m, "\n") {
		if v, ok := strings.CutPrefix(line, `oakmeet_replica_forward_refused_total{reason="`+reason+`"} `); ok {
			_, _ = fmt.Sscan(v, &n)
		}
	}
	return n
}

func twoReplicas(t *testing.T, g *rig) (leader, follower *testReplica) {
	t.Helper()
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	leader = g.leader(reps, 10*time.Second)
	follower = reps[0]
	if follower == leader {
		follower = reps[1]
	}
	waitFor(t, 5*time.Second, "the follower knows the leader", func() bool {
		h, tg, _ := follower.r.forwardTo()
		return h == nil && tg.present && tg.err == nil && tg.leader == leader.r.cfg.ID
	})
	return leader, follower
}

func TestTheBusSeesNoPlaintext(t *testing.T) {
	g := newRig(t)
	g.extra = testHandlers()
	_, f := twoReplicas(t, g)
	a := newAttacker(t, g)

	const hostToken = "host-token-7c1d2e9b4f"
	const joinSecret = "join-secret-a83b1f0c"
	req, _ := http.NewRequest(http.MethodPost, f.url+"/test/echo", strings.NewReader(`{"secret":"`+joinSecret+`"}`))
	req.Header.Set("Authorization", "Bearer "+hostToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusTeapot || !strings.Contains(string(body), hostToken) || !strings.Contains(string(body), joinSecret) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	waitFor(t, 5*time.Second, "the attacker saw the request and the answer", func() bool {
		r, in := a.seen()
		return len(r) >= 1 && len(in) >= 1
	})
	reqs, parts := a.seen()
	for _, data := range append(reqs, parts...) {
		for _, secret := range []string{hostToken, joinSecret, base64.StdEncoding.EncodeToString([]byte(`{"secret":"` + joinSecret + `"}`))} {
			if bytes.Contains(data, []byte(secret)) {
				t.Fatalf("%q in the clear on the bus: %q", secret, data)
			}
		}
	}
}

func TestABusAttackerCannotGetARequestServed(t *testing.T) {
	g := newRig(t)
	var served atomic.Int32
	mux := http.NewServeMux()
	mux.HandleFunc("/test/count", func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		_, _ = io.WriteString(w, "counted")
	})
	g.extra = mux
	leader, f := twoReplicas(t, g)
	a := newAttacker(t, g)

	if resp, body := get(t, f.url+"/test/count"); resp.StatusCode != http.StatusOK || body != "counted" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	waitFor(t, 5*time.Second, "the attacker captured the request", func() bool {
		r, _ := a.seen()
		return len(r) == 1
	})
	reqs, _ := a.seen()
	captured := reqs[0]

	// Replayed as it was.
	a.send(t, captured)
	waitFor(t, 5*time.Second, "the replay refused", func() bool { return refused(t, leader, "replay") == 1 })

	// Re-targeted at another term, or edited: the signature no longer fits.
	sr, err := cluster.ParseSealedRequest(captured)
	if err != nil {
		t.Fatal(err)
	}
	sr.Term++
	a.send(t, sr.Marshal())
	sr.Term--
	sr.Issued = time.Now().UnixMilli()
	a.send(t, sr.Marshal())
	waitFor(t, 5*time.Second, "the edited ones refused", func() bool { return refused(t, leader, "signature") == 2 })

	// Forged: sealed to the leader's key read from the lease, signed with
	// a key of the attacker's.
	js, _ := jetstream.New(a.nc)
	kv, err := js.KeyValue(context.Background(), cluster.BucketLeader)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(context.Background(), cluster.LeaderKey)
	if err != nil {
		t.Fatal(err)
	}
	var l cluster.Lease
	if err := json.Unmarshal(e.Value(), &l); err != nil {
		t.Fatal(err)
	}
	tg := leaseTarget(g.key.Public().(ed25519.PublicKey), l)
	if tg.err != nil {
		t.Fatal(tg.err)
	}
	_, evil, _ := ed25519.GenerateKey(nil)
	plain, _ := json.Marshal(cluster.ForwardRequest{From: "evil", Method: "GET", URL: "/test/count", Host: "x", RemoteAddr: "203.0.113.9:1"})
	forged, _, err := sealRequest(evil, "evil", tg, time.Now(), plain)
	if err != nil {
		t.Fatal(err)
	}
	a.send(t, forged)
	a.send(t, []byte(`{"method":"GET","url":"/test/count","host":"x"}`))
	waitFor(t, 5*time.Second, "the forged ones refused", func() bool {
		return refused(t, leader, "signature") == 3 && refused(t, leader, "malformed") == 1
	})

	// The next leader refuses what was sealed to the last.
	leader.cancel()
	<-leader.done
	leader.done <- nil
	next := g.leader([]*testReplica{f}, 10*time.Second)
	answer := a.send(t, captured)
	waitFor(t, 5*time.Second, "the old term's request refused", func() bool { return refused(t, next, "term") == 1 })
	select {
	case m := <-answer:
		if len(m.Data) != 0 || m.Header.Get(cluster.HeaderForwardRefused) != "term" {
			t.Fatalf("answer %v %q", m.Header, m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no refusal")
	}
	if n := served.Load(); n != 1 {
		t.Fatalf("served %d times", n)
	}
	// The attacker heard no answer, only refusals.
	for _, ch := range a.replies() {
		for len(ch) > 0 {
			if m := <-ch; len(m.Data) != 0 {
				t.Fatalf("the attacker got %q", m.Data)
			}
		}
	}
}

func TestAlteredOrSwappedAnswerPartsAreRefused(t *testing.T) {
	for _, mode := range []string{"altered", "swapped"} {
		t.Run(mode, func(t *testing.T) {
			g := newRig(t)
			g.extra = testHandlers()
			var mu sync.Mutex
			held := map[string][]byte{}
			g.wrapPublish = func(next func(string, []byte) error) func(string, []byte) error {
				return func(subject string, data []byte) error {
					p, err := cluster.ParseSealedPart(data)
					if err != nil || !strings.HasPrefix(subject, "_INBOX.") {
						return next(subject, data)
					}
					mu.Lock()
					defer mu.Unlock()
					switch {
					case mode == "altered" && p.Seq == 0:
						data = bytes.Clone(data)
						data[len(data)-1] ^= 1
					case mode == "swapped" && p.Seq == 0:
						held[subject] = data
						return nil
					case mode == "swapped" && p.Seq == 1:
						if err := next(subject, data); err != nil {
							return err
						}
						data = held[subject]
					}
					return next(subject, data)
				}
			}
			_, f := twoReplicas(t, g)
			resp, body := get(t, f.url+"/test/slow?d=200ms")
			e := decodeError(t, body)
			if resp.StatusCode != http.StatusBadGateway || e.Message != msgBroken {
				t.Fatalf("%d %+v", resp.StatusCode, e)
			}
		})
	}
}

func TestAForgedLeaseIsNotForwardedTo(t *testing.T) {
	_, other, _ := ed25519.GenerateKey(nil)
	for _, tc := range []struct {
		name string
		sign func(g *rig, l cluster.Lease) cluster.Lease
		want string
	}{
		{"unsigned", func(g *rig, l cluster.Lease) cluster.Lease { return l }, "names no signed forwarding key"},
		{"another key", func(g *rig, l cluster.Lease) cluster.Lease {
			tk, _ := newTermKey(l.Term)
			return signLease(other, l, tk)
		}, "not signed with this deployment's control key"},
		{"another term", func(g *rig, l cluster.Lease) cluster.Lease {
			l = g.signed(l)
			l.Term++
			return l
		}, "not signed with this deployment's control key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.tune = func(c *Config) { c.ForwardWait = 300 * time.Millisecond }
			putLease(t, g, tc.sign(g, cluster.Lease{Replica: "ghost", Term: 7, TTLMs: time.Hour.Milliseconds()}))
			f := g.start("r1")
			resp, body := get(t, f.url+"/api/config")
			e := decodeError(t, body)
			if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(e.Message, tc.want) || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("%d %+v", resp.StatusCode, e)
			}
		})
	}
}

func TestOpenerWindowAndReplays(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	tk, err := newTermKey(4)
	if err != nil {
		t.Fatal(err)
	}
	tg := leaseTarget(key.Public().(ed25519.PublicKey), signLease(key, cluster.Lease{Replica: "r1", Term: 4}, tk))
	now := time.Unix(1_800_000_000, 0)
	op := newOpener("r1", tk, key.Public().(ed25519.PublicKey), 30*time.Second, func() time.Time { return now })
	plain := []byte(`{"from":"r2","method":"GET","url":"/","host":"x"}`)
	reason := func(data []byte) string {
		_, _, _, err := op.open(data)
		if err == nil {
			return ""
		}
		rf, ok := isRefusal(err)
		if !ok {
			t.Fatalf("not a refusal: %v", err)
		}
		return rf.reason
	}
	fresh, _, _ := sealRequest(key, "r2", tg, now.Add(-10*time.Second), plain)
	if r := reason(fresh); r != "" {
		t.Fatalf("fresh: %s", r)
	}
	if r := reason(fresh); r != "replay" {
		t.Fatalf("again: %s", r)
	}
	for _, d := range []time.Duration{-31 * time.Second, 31 * time.Second} {
		old, _, _ := sealRequest(key, "r2", tg, now.Add(d), plain)
		if r := reason(old); r != "stale" {
			t.Fatalf("issued %s away: %s", d, r)
		}
	}
	// Once out of the window the id is forgotten, and the request is
	// refused as stale instead.
	now = now.Add(25 * time.Second)
	if r := reason(fresh); r != "stale" {
		t.Fatalf("after the window: %s", r)
	}
	if len(op.seen) != 0 || len(op.order) != 0 {
		t.Fatalf("remembers %d", len(op.seen))
	}
	other, _ := newTermKey(5)
	op5 := newOpener("r1", other, key.Public().(ed25519.PublicKey), 30*time.Second, func() time.Time { return now })
	if _, _, _, err := op5.open(fresh); err == nil {
		t.Fatal("another term opened it")
	} else if rf, _ := isRefusal(err); rf.reason != "term" || !rf.answer {
		t.Fatalf("%+v", rf)
	}
}
