package replica

import (
	"context"
	"crypto/ed25519"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/store"
)

// rig is one NATS server with JetStream and replicas on it, each with its
// own connection, control plane and HTTP server.
type rig struct {
	t      testing.TB
	emb    *bus.Embedded
	key    ed25519.PrivateKey
	enroll ed25519.PublicKey
	// tune adjusts each replica's config before it starts.
	tune func(*Config)
	// extra handlers the leader's control plane serves beside the API;
	// healthz, when set, instead of its /healthz.
	extra, healthz http.Handler
	// wrapPublish, when set, stands between a leader and the bus for
	// each part of a forwarded answer.
	wrapPublish func(next func(subject string, data []byte) error) func(subject string, data []byte) error

	mu    sync.Mutex
	roles []roleChange
}

type roleChange struct {
	id     string
	leader bool
	term   uint64
	at     time.Time
}

type testReplica struct {
	r      *Replica
	nc     *nats.Conn
	url    string
	cancel context.CancelFunc
	done   chan error
}

func newRig(t testing.TB) *rig {
	t.Helper()
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(t.TempDir(), "js")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	_, key, _ := ed25519.GenerateKey(nil)
	pub, _, _ := ed25519.GenerateKey(nil)
	return &rig{t: t, emb: emb, key: key, enroll: pub}
}

func (g *rig) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (g *rig) config(id string, nc *nats.Conn) Config {
	cfg := Config{
		ID: id, NATS: nc, Key: g.key, LeaseTTL: 400 * time.Millisecond, ForwardWait: 5 * time.Second,
		KeepAlive: 50 * time.Millisecond, ForwardTimeout: 300 * time.Millisecond, Logger: g.logger(),
		New: func(ctx context.Context) (*control.Server, error) {
			st, err := store.Open(ctx, nc)
			if err != nil {
				return nil, err
			}
			loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
			if err != nil {
				return nil, err
			}
			return control.New(ctx, control.Config{Store: st, NATS: nc, Locator: loc, Key: g.key,
				EnrollmentKey: g.enroll, TrustClientLocation: true, Logger: g.logger(), Timing: testTiming(),
				OperatorToken: "operator-token-for-tests", Limits: control.NoLimits()})
		},
	}
	if g.tune != nil {
		g.tune(&cfg)
	}
	return cfg
}

// start runs a replica until the test ends.
func (g *rig) start(id string) *testReplica {
	t := g.t
	t.Helper()
	nc, err := g.emb.ConnectControl("oakmeet-control-" + id)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	r, err := New(g.config(id, nc))
	if err != nil {
		t.Fatal(err)
	}
	if g.wrapPublish != nil {
		r.publish = g.wrapPublish(r.publish)
	}
	r.onRole = func(leader bool, term uint64) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.roles = append(g.roles, roleChange{id: id, leader: leader, term: term, at: time.Now()})
	}
	if g.extra != nil || g.healthz != nil {
		r.handlerOf = func(s *control.Server) http.Handler {
			api := s.Handler()
			var ready atomic.Bool
			return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
				if g.healthz != nil && req.URL.Path == "/healthz" && ready.Load() {
					g.healthz.ServeHTTP(w, req)
					return
				}
				if req.URL.Path == "/healthz" {
					// The control plane's own until it is ready, so the
					// replica knows when to take requests.
					rec := httptest.NewRecorder()
					api.ServeHTTP(rec, req)
					ready.Store(rec.Code == http.StatusOK)
					maps.Copy(w.Header(), rec.Header())
					w.WriteHeader(rec.Code)
					_, _ = w.Write(rec.Body.Bytes())
					return
				}
				if strings.HasPrefix(req.URL.Path, "/test/") {
					w.Header().Set("Test-Served-By", id)
					g.extra.ServeHTTP(w, req)
					return
				}
				api.ServeHTTP(w, req)
			})
		}
	}
	hs := httptest.NewServer(r.Handler())
	t.Cleanup(hs.Close)
	ctx, cancel := context.WithCancel(context.Background())
	tr := &testReplica{r: r, nc: nc, url: hs.URL, cancel: cancel, done: make(chan error, 1)}
	go func() { tr.done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-tr.done:
		case <-time.After(20 * time.Second):
			t.Errorf("replica %s did not stop", id)
		}
	})
	return tr
}

// leader waits until exactly one of reps leads with its control plane
// ready, and returns it.
func (g *rig) leader(reps []*testReplica, within time.Duration) *testReplica {
	g.t.Helper()
	var got *testReplica
	waitFor(g.t, within, "one leader", func() bool {
		got = nil
		n := 0
		for _, tr := range reps {
			if tr.r.Server() != nil {
				got = tr
				n++
			}
		}
		return n == 1
	})
	return got
}

// checkNoOverlap says whether, by the role changes heard, two replicas
// ever led at once, and that terms only grow.
func (g *rig) checkNoOverlap() {
	g.t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	leading := map[string]bool{}
	var last uint64
	for _, c := range g.roles {
		if c.leader {
			for id, on := range leading {
				if on && id != c.id {
					g.t.Errorf("%s led (term %d) while %s did: %v", c.id, c.term, id, g.roles)
				}
			}
			if c.term <= last {
				g.t.Errorf("term %d after term %d", c.term, last)
			}
			last = c.term
		}
		leading[c.id] = c.leader
	}
}

func get(t *testing.T, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, string(body)
}

// waitFor polls cond until it holds or d has passed (what testcluster's
// does; testcluster runs replicas, so these tests cannot import it).
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// testTiming is testcluster's fast timing.
func testTiming() cluster.Timing {
	d := cluster.DefaultTiming()
	return cluster.Timing{
		HeartbeatInterval: 200 * time.Millisecond,
		HeartbeatTimeout:  time.Second,
		MoveDeadline:      d.MoveDeadline,
		ReplacedGrace:     time.Second,
		SeatGrace:         2 * time.Second,
		RelayResend:       time.Second,
		TrafficEvery:      400 * time.Millisecond,
		CheckpointEvery:   100 * time.Millisecond,
	}
}
