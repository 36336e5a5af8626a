package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/natsauth"
)

func open(t *testing.T, dir string) (*Store, func()) {
	t.Helper()
	// The deployment's keys live beside its data, as under serve's --data:
	// JetStream state belongs to the account, which a restart keeps.
	auth, err := natsauth.LoadOrCreate(filepath.Join(dir, "nats"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(dir, "jetstream"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	nc, err := e.ConnectControl("test")
	if err != nil {
		e.Shutdown()
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := Open(ctx, nc)
	if err != nil {
		nc.Close()
		e.Shutdown()
		t.Fatal(err)
	}
	return s, func() { nc.Close(); e.Shutdown() }
}

func TestMeetingsCreateUpdateConflict(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx := context.Background()
	if _, err := s.Meeting(ctx, "m1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("missing meeting: %v", err)
	}
	rev, err := s.CreateMeeting(ctx, "m1", []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMeeting(ctx, "m1", []byte("b")); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	if _, err := s.UpdateMeeting(ctx, "m1", []byte("c"), rev); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateMeeting(ctx, "m1", []byte("d"), rev); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	r, err := s.Meeting(ctx, "m1")
	if err != nil || string(r.Value) != "c" {
		t.Fatalf("got %q, %v", r.Value, err)
	}
	ids, err := s.MeetingIDs(ctx)
	if err != nil || len(ids) != 1 || ids[0] != "m1" {
		t.Fatalf("ids %v, %v", ids, err)
	}
}

// readAll reads every record of a chain (or all) from the first to last.
func readAll(t *testing.T, s *Store, chain string, all bool) []AuditRecord {
	t.Helper()
	ctx := context.Background()
	last, err := s.AuditLastSeq(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []AuditRecord
	if last == 0 {
		return nil
	}
	// to must be a record of the chain: find the chain's newest.
	var to uint64
	if err := s.ReadAudit(ctx, "", true, 1, last, 0, func(r AuditRecord) error {
		if all || r.Chain == chain {
			to = r.Seq
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.ReadAudit(ctx, chain, all, 1, to, 0, func(r AuditRecord) error {
		out = append(out, r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestAuditLogIsOneSequence(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx := context.Background()
	if last, err := s.AuditLastSeq(ctx); err != nil || last != 0 {
		t.Fatalf("empty log: last %d, %v", last, err)
	}
	a1, err := s.AppendAudit(ctx, "m1", []byte("m1-1"), 0)
	if err != nil {
		t.Fatal(err)
	}
	d1, err := s.AppendAudit(ctx, "", []byte("d-1"), a1)
	if err != nil {
		t.Fatal(err)
	}
	// Another chain's record moved the log on: an append expecting a1 forks.
	if _, err := s.AppendAudit(ctx, "m1", []byte("fork"), a1); !errors.Is(err, ErrConflict) {
		t.Fatalf("fork accepted: %v", err)
	}
	if _, err := s.AppendAudit(ctx, "m1", []byte("m1-2"), d1); err != nil {
		t.Fatal(err)
	}
	one := readAll(t, s, "m1", false)
	if len(one) != 2 || string(one[0].Data) != "m1-1" || string(one[1].Data) != "m1-2" || one[1].Chain != "m1" {
		t.Fatalf("chain m1: %+v", one)
	}
	all := readAll(t, s, "", true)
	if len(all) != 3 || all[1].Chain != "" || string(all[1].Data) != "d-1" || all[2].Seq != 3 {
		t.Fatalf("all: %+v", all)
	}
	// A bounded read stops at n.
	var got []uint64
	if err := s.ReadAudit(ctx, "", true, 2, 3, 1, func(r AuditRecord) error { got = append(got, r.Seq); return nil }); err != nil || len(got) != 1 || got[0] != 2 {
		t.Fatalf("bounded read: %v, %v", got, err)
	}
}

func TestStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	s, stop := open(t, dir)
	ctx := context.Background()
	if _, err := s.CreateMeeting(ctx, "m1", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAudit(ctx, "m1", []byte("e1"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.PutControl(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	stop()

	s, stop = open(t, dir)
	defer stop()
	if r, err := s.Meeting(ctx, "m1"); err != nil || string(r.Value) != "kept" {
		t.Fatalf("meeting after restart: %q, %v", r.Value, err)
	}
	if recs := readAll(t, s, "m1", false); len(recs) != 1 {
		t.Fatalf("audit after restart: %+v", recs)
	}
	if v, err := s.Control(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("control after restart: %q, %v", v, err)
	}
}

func TestNodes(t *testing.T) {
	s, stop := open(t, t.TempDir())
	defer stop()
	ctx := context.Background()
	if err := s.PutNode(ctx, "n1", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := s.PutNode(ctx, "n2", []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	ns, err := s.Nodes(ctx)
	if err != nil || len(ns) != 1 || string(ns[0]) != "y" {
		t.Fatalf("nodes %q, %v", ns, err)
	}
}

func TestOpenWithReplicasNeedsAClusteredJetStream(t *testing.T) {
	e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Shutdown()
	nc, err := e.ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	if _, err := OpenWith(ctx, nc, Options{Replicas: 3}); err == nil || !strings.Contains(err.Error(), "3 replicas") {
		t.Fatalf("3 replicas on one server: %v", err)
	}
	// Said at once, not after waiting out the context: nothing changes
	// by trying again.
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
	for _, n := range []int{-1, 6} {
		if _, err := OpenWith(ctx, nc, Options{Replicas: n}); err == nil {
			t.Fatalf("%d replicas accepted", n)
		}
	}
}

// cluster3 is three embedded NATS servers clustered on loopback, one
// deployment.
func cluster3(t *testing.T) []*bus.Embedded {
	t.Helper()
	auth, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	var addrs, routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		routes = append(routes, "nats-route://"+l.Addr().String())
		_ = l.Close()
	}
	var out []*bus.Embedded
	for i, a := range addrs {
		e, err := bus.Embed(bus.EmbedConfig{StoreDir: t.TempDir(), Auth: auth,
			Cluster: &bus.ClusterConfig{Name: "c", ServerName: fmt.Sprintf("s%d", i), Listen: a, Routes: routes}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(e.Shutdown)
		out = append(out, e)
	}
	return out
}

// A deployment that started on one replica grows to three in place: the
// buckets and the stream keep what they held.
func TestOpenWithRaisesTheReplicasOfWhatExists(t *testing.T) {
	servers := cluster3(t)
	nc, err := servers[1].ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Open waits out the cluster's first leader election.
	s1, err := Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s1.CreateMeeting(ctx, "m1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.AppendAudit(ctx, "m1", []byte("r1"), 0); err != nil {
		t.Fatal(err)
	}
	s3, err := OpenWith(ctx, nc, Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"KV_oakmeet_meetings", "KV_oakmeet_nodes", "KV_oakmeet_control", "OAKMEET_AUDIT"} {
		st, err := s3.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := st.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s: %d replicas", name, r)
		}
	}
	if r, err := s3.Meeting(ctx, "m1"); err != nil || string(r.Value) != "a" {
		t.Fatalf("meeting after the change: %q, %v", r.Value, err)
	}
	// A second writer's append at a stale sequence is a conflict on the
	// replicated log too.
	if _, err := s3.AppendAudit(ctx, "m1", []byte("r2"), 0); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale append: %v", err)
	}
}

// A server that leads the deployment's streams hands them to the others.
func TestStepDownLeadersMovesThemOffAServer(t *testing.T) {
	servers := cluster3(t)
	nc, err := servers[0].ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s, err := OpenWith(ctx, nc, Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	st, err := s.js.Stream(ctx, "KV_oakmeet_meetings")
	if err != nil {
		t.Fatal(err)
	}
	leader := st.CachedInfo().Cluster.Leader
	if err := s.StepDownLeaders(ctx, leader); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		names := []string{"KV_oakmeet_meetings", "KV_oakmeet_nodes", "KV_oakmeet_control", "OAKMEET_AUDIT"}
		led := ""
		for _, name := range names {
			st, err := s.js.Stream(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			if c := st.CachedInfo().Cluster; c == nil || c.Leader == "" || c.Leader == leader {
				led = name
			}
		}
		if led == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still led by %s, or by none", led, leader)
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	// And writes go on.
	if _, err := s.CreateMeeting(ctx, "m1", []byte("a")); err != nil {
		t.Fatal(err)
	}
}

// Three processes that start together, each with its own cluster member
// and each opening the store at once, all get it: creations that race
// with one another are tried again.
func TestOpenWithOnMembersStartingTogether(t *testing.T) {
	auth, err := natsauth.New()
	if err != nil {
		t.Fatal(err)
	}
	var addrs, routes []string
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		routes = append(routes, "nats-route://"+l.Addr().String())
		_ = l.Close()
	}
	errs := make(chan error, 3)
	for i := range 3 {
		dir := t.TempDir()
		go func() {
			e, err := bus.Embed(bus.EmbedConfig{StoreDir: dir, Auth: auth,
				Cluster: &bus.ClusterConfig{Name: "c", ServerName: fmt.Sprintf("s%d", i), Listen: addrs[i], Routes: routes}})
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(e.Shutdown)
			nc, err := e.ConnectControl("test")
			if err != nil {
				errs <- err
				return
			}
			t.Cleanup(nc.Close)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			s, err := OpenWith(ctx, nc, Options{Replicas: 3})
			if err == nil {
				_, err = s.CreateMeeting(ctx, fmt.Sprintf("m%d", i), []byte("a"))
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// A process that restarts while another member is down still opens its
// store: two of three replicas are a quorum.
func TestOpenWithWhileAMemberIsDown(t *testing.T) {
	servers := cluster3(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	nc, err := servers[0].ConnectControl("test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	s, err := OpenWith(ctx, nc, Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateMeeting(ctx, "m1", []byte("a")); err != nil {
		t.Fatal(err)
	}
	servers[2].Shutdown()
	// Once the leader sees the member gone, not every replica is current.
	deadline := time.Now().Add(30 * time.Second)
	for {
		ictx, icancel := context.WithTimeout(ctx, time.Second)
		st, err := s.js.Stream(ictx, "KV_oakmeet_meetings")
		icancel()
		if err == nil && st.CachedInfo().Cluster != nil {
			down := 0
			for _, p := range st.CachedInfo().Cluster.Replicas {
				if !p.Current || p.Offline {
					down++
				}
			}
			if down > 0 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader never saw the member gone")
		}
		time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
	}
	nc2, err := servers[1].ConnectControl("again")
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	s2, err := OpenWith(ctx, nc2, Options{Replicas: 3})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := s2.Meeting(ctx, "m1"); err != nil || string(r.Value) != "a" {
		t.Fatalf("meeting %q, %v", r.Value, err)
	}
	if _, err := s2.CreateMeeting(ctx, "m2", []byte("b")); err != nil {
		t.Fatal(err)
	}
}
