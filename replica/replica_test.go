package replica

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
)

func TestOneLeaderAndFailover(t *testing.T) {
	for _, tc := range []struct {
		name string
		kill func(*testReplica)
	}{
		// The process dies: its control plane stops, its lease stays.
		{"killed", func(tr *testReplica) { tr.r.abandon = true; tr.cancel(); <-tr.done; tr.done <- nil }},
		// Cut off from NATS: it goes on running, but steps down before
		// anyone may take over.
		{"cut off", func(tr *testReplica) { tr.nc.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			reps := []*testReplica{g.start("r1"), g.start("r2"), g.start("r3")}
			old := g.leader(reps, 10*time.Second)
			oldTerm := old.r.Status().Term
			for _, tr := range reps {
				if tr != old {
					waitFor(t, 5*time.Second, "followers know the leader", func() bool {
						return tr.r.Status().Leader == old.r.cfg.ID
					})
					resp, body := get(t, tr.url+"/healthz")
					if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderLeader) != old.r.cfg.ID || resp.Header.Get(HeaderReplica) != tr.r.cfg.ID {
						t.Fatalf("follower's /healthz: %d %v", resp.StatusCode, resp.Header)
					}
					var h api.Health
					if err := json.Unmarshal([]byte(body), &h); err != nil || h.Status != "ok" || h.Replica != tr.r.cfg.ID || h.Leader != old.r.cfg.ID {
						t.Fatalf("follower's /healthz: %s", body)
					}
				}
			}
			killed := time.Now()
			tc.kill(old)
			var rest []*testReplica
			for _, tr := range reps {
				if tr != old {
					rest = append(rest, tr)
				}
			}
			ttl := g.config("x", nil).LeaseTTL
			// Another leads within the TTL and a margin for its control
			// plane's start (generous: others share the machine).
			next := g.leader(rest, ttl+5*time.Second)
			took := time.Since(killed)
			if next.r.Status().Term <= oldTerm {
				t.Fatalf("new term %d after %d", next.r.Status().Term, oldTerm)
			}
			if old.r.Server() != nil || old.r.Status().IsLeader {
				t.Fatalf("the old leader still acts: %+v", old.r.Status())
			}
			t.Logf("%s: new leader ready %s after the old one stopped", tc.name, took)
			for _, tr := range rest {
				waitFor(t, 5*time.Second, "answers from the new leader", func() bool {
					resp, _ := get(t, tr.url+"/api/config")
					return resp.StatusCode == http.StatusOK && resp.Header.Get(HeaderLeader) == next.r.cfg.ID
				})
			}
			// The lease names the new leader at its term.
			kv, err := jetstream.New(next.nc)
			if err != nil {
				t.Fatal(err)
			}
			b, err := kv.KeyValue(context.Background(), cluster.BucketLeader)
			if err != nil {
				t.Fatal(err)
			}
			e, err := b.Get(context.Background(), cluster.LeaderKey)
			if err != nil {
				t.Fatal(err)
			}
			var l cluster.Lease
			if err := json.Unmarshal(e.Value(), &l); err != nil || l.Replica != next.r.cfg.ID || l.Term != next.r.Status().Term {
				t.Fatalf("lease %+v (%v), leader %+v", l, err, next.r.Status())
			}
			g.checkNoOverlap()
		})
	}
}

func TestCleanShutdownHandsOverAtOnce(t *testing.T) {
	g := newRig(t)
	g.tune = func(c *Config) { c.LeaseTTL = 10 * time.Second }
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	old := g.leader(reps, 10*time.Second)
	old.cancel()
	if err := <-old.done; err != nil {
		t.Fatal(err)
	}
	old.done <- nil
	rest := reps[0]
	if rest == old {
		rest = reps[1]
	}
	start := time.Now()
	g.leader([]*testReplica{rest}, 5*time.Second)
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s with a 10 s TTL: the lease was not deleted", d)
	}
	g.checkNoOverlap()
}

func TestRestartedLeaderTakesItsLeaseBack(t *testing.T) {
	g := newRig(t)
	g.tune = func(c *Config) { c.LeaseTTL = time.Minute }
	a := g.start("r1")
	g.leader([]*testReplica{a}, 10*time.Second)
	term := a.r.Status().Term
	a.r.abandon = true
	a.cancel()
	<-a.done
	a.done <- nil
	b := g.start("r1") // same id, as after a restart
	g.leader([]*testReplica{b}, 10*time.Second)
	if b.r.Status().Term <= term {
		t.Fatalf("term %d after %d", b.r.Status().Term, term)
	}
}

// echo is a handler of the leader's that says what it received.
type echoed struct {
	Method, URL, Host, RemoteAddr string
	TLS                           bool
	Header                        http.Header
	Body                          string
}

func testHandlers() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/test/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Answer", "yes")
		w.Header().Add("X-Multi", "1")
		w.Header().Add("X-Multi", "2")
		w.WriteHeader(http.StatusTeapot)
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, URL: r.URL.RequestURI(), Host: r.Host,
			RemoteAddr: r.RemoteAddr, TLS: r.TLS != nil, Header: r.Header, Body: string(body)})
	})
	mux.HandleFunc("/test/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bigBody()) //nolint:errcheck
	})
	mux.HandleFunc("/test/slow", func(w http.ResponseWriter, r *http.Request) {
		d, _ := time.ParseDuration(r.URL.Query().Get("d"))
		time.Sleep(d) // the work a lobby wait or a slow store makes the handler do
		_, _ = io.WriteString(w, "done")
	})
	return mux
}

func bigBody() []byte {
	b := make([]byte, 3*cluster.ForwardChunk+12345)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestForwardedRequestReachesTheLeaderAsReceived(t *testing.T) {
	g := newRig(t)
	g.extra = testHandlers()
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	leader := g.leader(reps, 10*time.Second)
	f := reps[0]
	if f == leader {
		f = reps[1]
	}
	waitFor(t, 5*time.Second, "the follower knows the leader", func() bool { return f.r.Status().Leader == leader.r.cfg.ID })

	req, _ := http.NewRequest(http.MethodPost, f.url+"/test/echo?a=1&b=%2F", strings.NewReader(`{"x":1}`))
	req.Host = "meet.example.org"
	req.Header.Set("Authorization", "Bearer secret")
	req.Header.Add("X-Many", "one")
	req.Header.Add("X-Many", "two")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got echoed
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusTeapot || resp.Header.Get("X-Answer") != "yes" || strings.Join(resp.Header.Values("X-Multi"), ",") != "1,2" {
		t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
	}
	if resp.Header.Get("Test-Served-By") != leader.r.cfg.ID || resp.Header.Get(HeaderLeader) != leader.r.cfg.ID || resp.Header.Get(HeaderReplica) != f.r.cfg.ID {
		t.Fatalf("served by %q, leader %q, replica %q", resp.Header.Get("Test-Served-By"), resp.Header.Get(HeaderLeader), resp.Header.Get(HeaderReplica))
	}
	if got.Method != http.MethodPost || got.URL != "/test/echo?a=1&b=%2F" || got.Host != "meet.example.org" || got.Body != `{"x":1}` || got.TLS {
		t.Fatalf("leader saw %+v", got)
	}
	if !strings.HasPrefix(got.RemoteAddr, "127.0.0.1:") || got.Header.Get("Authorization") != "Bearer secret" || strings.Join(got.Header.Values("X-Many"), ",") != "one,two" {
		t.Fatalf("leader saw %+v", got)
	}

	// An answer of several chunks arrives whole.
	resp, body := get(t, f.url+"/test/big")
	if resp.StatusCode != http.StatusOK || !bytes.Equal([]byte(body), bigBody()) {
		t.Fatalf("big answer: %d, %d bytes", resp.StatusCode, len(body))
	}
	// A handler busy for several times ForwardTimeout is kept alive.
	resp, body = get(t, f.url+"/test/slow?d=1s")
	if resp.StatusCode != http.StatusOK || body != "done" {
		t.Fatalf("slow answer: %d %q", resp.StatusCode, body)
	}
	// The API's own bound on bodies.
	resp2, err := http.Post(f.url+"/test/echo", "application/json", bytes.NewReader(make([]byte, maxBody+1)))
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("big body: %d", resp2.StatusCode)
	}
	// An API answer, through the follower, as the leader gives it.
	resp, body = get(t, f.url+"/api/meetings/nosuch")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, api.CodeNotFound) {
		t.Fatalf("api answer: %d %s", resp.StatusCode, body)
	}
}

// putLease writes a lease of a replica that does not exist.
func putLease(t *testing.T, g *rig, l cluster.Lease) {
	t.Helper()
	nc, err := g.emb.ConnectControl("ghost")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := openLeaderBucket(context.Background(), js, 1)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := json.Marshal(l)
	if _, err := kv.Put(context.Background(), cluster.LeaderKey, data); err != nil {
		t.Fatal(err)
	}
}

// signed is l with a forwarding key signed with the deployment's control
// key, as a replica that died would have left it.
func (g *rig) signed(l cluster.Lease) cluster.Lease {
	g.t.Helper()
	tk, err := newTermKey(l.Term)
	if err != nil {
		g.t.Fatal(err)
	}
	return signLease(g.key, l, tk)
}

func decodeError(t *testing.T, body string) api.Error {
	t.Helper()
	var e api.Error
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("not an API error: %q", body)
	}
	return e
}

func TestNoLeaderAnswersUnavailableAfterForwardWait(t *testing.T) {
	g := newRig(t)
	g.tune = func(c *Config) { c.ForwardWait = 300 * time.Millisecond }
	putLease(t, g, g.signed(cluster.Lease{Replica: "ghost", Term: 7, TTLMs: time.Hour.Milliseconds()}))
	f := g.start("r1")
	start := time.Now()
	resp, body := get(t, f.url+"/api/config")
	e := decodeError(t, body)
	if resp.StatusCode != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable || e.Message != msgNoLeader || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("%d %v %+v", resp.StatusCode, resp.Header, e)
	}
	if d := time.Since(start); d < 300*time.Millisecond {
		t.Fatalf("answered after %s, before ForwardWait", d)
	}
	if st := f.r.Status(); st.Leader != "ghost" || st.Term != 7 || st.IsLeader {
		t.Fatalf("status %+v", st)
	}
}

func TestNoLeaderWaitsForTheElection(t *testing.T) {
	g := newRig(t)
	g.tune = func(c *Config) { c.LeaseTTL = time.Second }
	// A leader that died: its lease stands until a TTL passes unchanged.
	putLease(t, g, cluster.Lease{Replica: "ghost", Term: 7, TTLMs: 1000})
	f := g.start("r1")
	resp, _ := get(t, f.url+"/api/config")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderLeader) != "r1" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	if st := f.r.Status(); st.Term != 8 || !st.IsLeader {
		t.Fatalf("status %+v", st)
	}
}

func TestLeaderGoneMidRequest(t *testing.T) {
	g := newRig(t)
	g.extra = testHandlers()
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	leader := g.leader(reps, 10*time.Second)
	f := reps[0]
	if f == leader {
		f = reps[1]
	}
	type answer struct {
		resp *http.Response
		body string
	}
	got := make(chan answer, 1)
	go func() {
		resp, err := http.Get(f.url + "/test/slow?d=3s")
		if err != nil {
			got <- answer{}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- answer{resp, string(b)}
	}()
	waitFor(t, 5*time.Second, "the leader took the request", func() bool {
		_, m := get(t, leader.url+"/metrics")
		return strings.Contains(m, "oakmeet_replica_served_forwarded_total 1")
	})
	leader.nc.Close() // the leader vanishes without a word
	a := <-got
	if a.resp == nil {
		t.Fatal("no answer")
	}
	e := decodeError(t, a.body)
	if a.resp.StatusCode != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable || e.Message != msgSilent {
		t.Fatalf("%d %+v", a.resp.StatusCode, e)
	}
}

func TestAPIClientRetriesThroughAFailover(t *testing.T) {
	g := newRig(t)
	g.tune = func(c *Config) { c.ForwardWait = 50 * time.Millisecond }
	reps := []*testReplica{g.start("r1"), g.start("r2"), g.start("r3")}
	old := g.leader(reps, 10*time.Second)
	var f *testReplica
	for _, tr := range reps {
		if tr != old {
			f = tr
		}
	}
	waitFor(t, 5*time.Second, "the follower knows the leader", func() bool { return f.r.Status().Leader == old.r.cfg.ID })
	old.r.abandon = true
	old.cancel()
	<-old.done
	old.done <- nil
	c := apiclient.New(f.url, nil)
	if _, err := c.Config(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Meeting(context.Background(), "nosuch"); !strings.Contains(fmt.Sprint(err), api.CodeNotFound) {
		t.Fatalf("the new leader's answer: %v", err)
	}
	_, metrics := get(t, f.url+"/metrics")
	if !strings.Contains(metrics, `oakmeet_replica_forward_failures_total{reason="no_leader"}`) {
		t.Fatalf("no request met the election, nothing was retried:\n%s", metrics)
	}
}

// Only the leader takes forwarded requests, and no media node can take,
// send or answer one.
func TestForwardSubjectIsTheLeadersOnly(t *testing.T) {
	g := newRig(t)
	reps := []*testReplica{g.start("r1"), g.start("r2"), g.start("r3")}
	leader := g.leader(reps, 10*time.Second)
	for _, tr := range reps {
		waitFor(t, 5*time.Second, "everyone knows the leader", func() bool { return tr.r.Status().Leader == leader.r.cfg.ID })
	}

	creds, err := g.emb.Auth().NodeCreds("n1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	denied := make(chan string, 16)
	nc, err := bus.Connect(g.emb.URL(), "oakmeet-node-n1", bus.Creds(creds), bus.NATSOptions(nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) || strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			denied <- err.Error()
		}
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	stolen := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe(cluster.SubjectForward, stolen); err != nil {
		t.Fatal(err)
	}
	if _, err := nc.ChanQueueSubscribe(cluster.SubjectForward, "leader", stolen); err != nil {
		t.Fatal(err)
	}
	_ = nc.Publish(cluster.SubjectForward, []byte(`{"method":"GET","url":"/api/config","host":"x"}`))
	_ = nc.Publish("_INBOX.control.forged", []byte(`{"seq":0,"status":200}`))
	_ = nc.Flush()
	for range 4 {
		select {
		case <-denied:
		case <-time.After(5 * time.Second):
			t.Fatal("a node's subscribe or publish on the forward subject or a control inbox was not refused")
		}
	}

	const n = 20
	viaFollowers := 0
	for i := range n {
		tr := reps[i%len(reps)]
		if tr != leader {
			viaFollowers++
		}
		if resp, _ := get(t, tr.url+"/api/config"); resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderLeader) != leader.r.cfg.ID {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
	}
	select {
	case m := <-stolen:
		t.Fatalf("a node received a forwarded request: %q", m.Data)
	default:
	}
	for _, tr := range reps {
		_, metrics := get(t, tr.url+"/metrics")
		want := "oakmeet_replica_served_forwarded_total 0"
		if tr == leader {
			want = fmt.Sprintf("oakmeet_replica_served_forwarded_total %d", viaFollowers)
		}
		if !strings.Contains(metrics, want) {
			t.Fatalf("%s: want %q in\n%s", tr.r.cfg.ID, want, metrics)
		}
	}
}

// A streamed answer (the audit export) reaches the client part by part:
// the client reads the first part while the leader's handler still waits
// to write the second.
func TestStreamedAnswerIsFlushedThroughTheFollower(t *testing.T) {
	g := newRig(t)
	firstRead := make(chan struct{})
	g.extra = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush() //nolint:errcheck
		select {
		case <-firstRead:
			_, _ = io.WriteString(w, "second\n")
		case <-time.After(10 * time.Second):
			_, _ = io.WriteString(w, "the first part never arrived\n")
		}
	})
	reps := []*testReplica{g.start("r1"), g.start("r2")}
	leader := g.leader(reps, 10*time.Second)
	f := reps[0]
	if f == leader {
		f = reps[1]
	}
	resp, err := http.Get(f.url + "/test/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, len("first\n"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first\n" {
		t.Fatalf("first part %q: %v", buf, err)
	}
	close(firstRead)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != "second\n" {
		t.Fatalf("rest %q: %v", rest, err)
	}
}

// A follower's /healthz is 503 whenever the leader's answer is not whole,
// whatever status it began with.
func TestFollowerHealthIsNeverOKForACutAnswer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		health http.HandlerFunc
		// silence drops the leader's parts after the first.
		silence bool
		status  int
	}{
		{"leader silent after its status", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush() //nolint:errcheck
			_, _ = io.WriteString(w, `{"status":"ok"}`)
		}, true, http.StatusServiceUnavailable},
		{"leader's handler aborts after its status", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"status":"ok"`)
			panic(http.ErrAbortHandler)
		}, false, http.StatusBadGateway},
		{"leader's handler aborts after a flushed status", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			http.NewResponseController(w).Flush() //nolint:errcheck
			panic(http.ErrAbortHandler)
		}, false, http.StatusServiceUnavailable},
		{"leader answers an error with 200", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			_, _ = io.WriteString(w, `{"code":"unavailable","error":"`+msgSilent+`"}`)
		}, false, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newRig(t)
			g.healthz = tc.health
			if tc.silence {
				g.wrapPublish = func(next func(string, []byte) error) func(string, []byte) error {
					return func(subject string, data []byte) error {
						if p, err := cluster.ParseSealedPart(data); err == nil && p.Seq > 0 {
							return nil
						}
						return next(subject, data)
					}
				}
			}
			_, f := twoReplicas(t, g)
			resp, body := get(t, f.url+api.PathHealth)
			if resp.StatusCode != tc.status {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if tc.status == http.StatusOK {
				// Passed on as the leader gave it, not made into a Health.
				if strings.Contains(body, `"replica"`) || !strings.Contains(body, msgSilent) {
					t.Fatalf("%s", body)
				}
				return
			}
			if e := decodeError(t, body); e.Code == "" {
				t.Fatalf("%s", body)
			}
		})
	}
}
