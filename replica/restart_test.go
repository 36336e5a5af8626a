package replica

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/control"
)

// errStore is what a store still electing its stream leader answers.
var errStore = fmt.Errorf("store control value audit_checkpoint: %w", jetstream.ErrNoStreamResponse)

// failFirst makes a replica's first n control-plane starts fail with err.
func failFirst(n int32, err error, tries *atomic.Int32) func(*Config) {
	return func(c *Config) {
		build := c.New
		c.New = func(ctx context.Context) (*control.Server, error) {
			if tries.Add(1) <= n {
				return nil, err
			}
			return build(ctx)
		}
	}
}

func TestAFailedStartStepsDownAndStandsAgain(t *testing.T) {
	g := newRig(t)
	var tries atomic.Int32
	g.tune = failFirst(2, errStore, &tries)
	a := g.start("r1")
	g.leader([]*testReplica{a}, 15*time.Second)
	if n := tries.Load(); n != 3 {
		t.Fatalf("%d starts, want 3", n)
	}
	resp, _ := get(t, a.url+"/api/config")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%d", resp.StatusCode)
	}
	select {
	case err := <-a.done:
		t.Fatalf("Run ended: %v", err)
	default:
	}
	g.checkNoOverlap()
}

func TestAFailedStartLetsAnotherReplicaLead(t *testing.T) {
	g := newRig(t)
	var tries atomic.Int32
	// Every start of r1 fails; r2 starts after r1 took the lease, and
	// leads once r1 gave it up.
	g.tune = func(c *Config) {
		if c.ID == "r1" {
			failFirst(1000, errStore, &tries)(c)
			c.RetryBackoff = 2 * time.Second
		}
	}
	a := g.start("r1")
	var first time.Time
	waitRole(t, g, "r1", &first)
	b := g.start("r2")
	if got := g.leader([]*testReplica{a, b}, 15*time.Second); got != b {
		t.Fatal("r1 leads")
	}
	resp, _ := get(t, a.url+"/api/config")
	if resp.StatusCode != http.StatusOK || resp.Header.Get(HeaderLeader) != "r2" {
		t.Fatalf("%d %v", resp.StatusCode, resp.Header)
	}
	g.checkNoOverlap()
}

// waitRole waits until id has led at least once.
func waitRole(t *testing.T, g *rig, id string, at *time.Time) {
	t.Helper()
	waitFor(t, 15*time.Second, id+" leads", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		for _, c := range g.roles {
			if c.id == id && c.leader {
				*at = c.at
				return true
			}
		}
		return false
	})
}

func TestAFatalStartErrorEndsTheRun(t *testing.T) {
	g := newRig(t)
	bad := errors.New("control: deployment floor: unknown country XX")
	var tries atomic.Int32
	g.tune = func(c *Config) {
		failFirst(1000, bad, &tries)(c)
		c.Fatal = func(err error) bool { return errors.Is(err, bad) }
	}
	a := g.start("r1")
	select {
	case err := <-a.done:
		if !errors.Is(err, bad) {
			t.Fatalf("Run ended with %v", err)
		}
		a.done <- err
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not end")
	}
	if n := tries.Load(); n != 1 {
		t.Fatalf("%d starts", n)
	}
}
