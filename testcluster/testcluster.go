// Package testcluster runs a whole oakmeet deployment inside a test: an
// embedded NATS server with JetStream, the control plane behind a real HTTP
// server, and real media nodes, all in-process on loopback and random
// ports, so system tests can join, publish and break things.
package testcluster

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"github.com/oakmeet/oakmeet/api"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/store"
)

// NodeSpec describes a node to start.
type NodeSpec struct {
	ID, Country, Region string
	Max                 int // participants; 0 = unlimited
	// Interceptors see every packet the node's media engine handles.
	Interceptors []interceptor.Factory
}

// World is eight nodes on five continents, including CN and RU.
func World() []NodeSpec {
	return []NodeSpec{
		{ID: "de-fra", Country: "DE", Region: "eu-central-1", Max: 0},
		{ID: "us-iad", Country: "US", Region: "us-east-1", Max: 0},
		{ID: "jp-tyo", Country: "JP", Region: "ap-northeast-1", Max: 0},
		{ID: "sg-sin", Country: "SG", Region: "ap-southeast-1", Max: 0},
		{ID: "br-gru", Country: "BR", Region: "sa-east-1", Max: 0},
		{ID: "in-bom", Country: "IN", Region: "ap-south-1", Max: 0},
		{ID: "cn-pek", Country: "CN", Region: "cn-north-1", Max: 0},
		{ID: "ru-mow", Country: "RU", Region: "ru-central1", Max: 0},
	}
}

// Cluster is a control plane with real in-process nodes over an embedded
// NATS server.
type Cluster struct {
	t     testing.TB
	URL   string // the control plane's base URL
	Srv   *control.Server
	dir   string
	key   ed25519.PrivateKey
	floor policy.Policy
	emb   *bus.Embedded
	http  *httptest.Server
	stop  context.CancelFunc
	wg    sync.WaitGroup
	nodes map[string]context.CancelFunc
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// Start runs a cluster with the given deployment floor and nodes, waits until
// every node is healthy, and stops everything when the test ends.
func Start(t testing.TB, floor policy.Policy, nodes []NodeSpec) *Cluster {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	c := &Cluster{t: t, dir: t.TempDir(), key: key, floor: floor, nodes: map[string]context.CancelFunc{}}
	c.startControl()
	for _, n := range nodes {
		c.StartNode(n)
	}
	c.WaitHealthy(len(nodes))
	t.Cleanup(c.shutdown)
	return c
}

func (c *Cluster) startControl() {
	t := c.t
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: c.dir})
	if err != nil {
		t.Fatal(err)
	}
	c.emb = emb
	nc, err := emb.Connect("control")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := store.Open(ctx, nc)
	if err != nil {
		t.Fatal(err)
	}
	loc, err := locate.New(locate.Config{TrustClientHints: true, DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := control.New(ctx, control.Config{Store: st, NATS: nc, Locator: loc, Floor: c.floor, Key: c.key, TrustClientLocation: true, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	c.Srv = srv
	c.http = httptest.NewServer(srv.Handler())
	c.URL = c.http.URL
	runCtx, cancel := context.WithCancel(ctx)
	c.stop = func() { cancel(); nc.Close() }
	c.wg.Go(func() {
		if err := srv.Run(runCtx); err != nil {
			t.Errorf("control run: %v", err)
		}
	})
	WaitFor(t, 10*time.Second, "control ready", func() bool {
		resp, err := http.Get(c.URL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

// StartNode starts a media node (loopback media) and registers it.
func (c *Cluster) StartNode(s NodeSpec) {
	t := c.t
	nc, err := c.emb.Connect("node-" + s.ID)
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.New(context.Background(), node.Config{
		ID: s.ID, Country: s.Country, Region: s.Region, MaxParticipants: s.Max, NATS: nc, Logger: quietLogger(),
		LoopbackOnly: true, TURNPort: -1, Interceptors: s.Interceptors,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	c.nodes[s.ID] = func() { cancel(); <-done; nc.Close() }
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("node %s: %v", s.ID, err)
		}
	}()
}

// StopNode stops a node cleanly (it deregisters and its heartbeats end).
func (c *Cluster) StopNode(id string) {
	if stop, ok := c.nodes[id]; ok {
		stop()
		delete(c.nodes, id)
	}
}

// RestartControl stops the control plane and its NATS server and starts
// them again on the same data directory.
func (c *Cluster) RestartControl() {
	c.shutdown()
	c.startControl()
}

// shutdown stops the nodes, then the control plane and NATS.
func (c *Cluster) shutdown() {
	for id := range c.nodes {
		c.StopNode(id)
	}
	c.http.Close()
	c.stop()
	c.wg.Wait()
	c.emb.Shutdown()
}

// WaitHealthy waits until exactly n nodes are healthy.
func (c *Cluster) WaitHealthy(n int) {
	WaitFor(c.t, 10*time.Second, fmt.Sprintf("%d healthy nodes", n), func() bool {
		var nodes []api.Node
		c.Get("/api/nodes", &nodes)
		healthy := 0
		for _, v := range nodes {
			if v.Healthy {
				healthy++
			}
		}
		return healthy == n
	})
}

// WaitFor polls cond until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
}

// APIError is an error answer of the API.
type APIError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// Do sends a request with an optional bearer token and JSON body (a string
// is sent as is) and decodes the answer into out.
func (c *Cluster) Do(method, path, auth string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		data, _ := json.Marshal(b)
		rd = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, c.URL+path, rd)
	if auth != "" {
		req.Header.Set("Authorization", "Bearer "+auth)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, data, err)
		}
	}
	return resp.StatusCode
}

// Get is Do for a GET.
func (c *Cluster) Get(path string, out any) int { return c.Do("GET", path, "", nil, out) }

// Created is the answer to creating a meeting.
type Created struct {
	ID              string        `json:"id"`
	HostToken       string        `json:"host_token"`
	Policy          policy.Policy `json:"policy"`
	EffectivePolicy policy.Policy `json:"effective_policy"`
	Warnings        []string      `json:"warnings"`
}

// CreateMeeting creates a meeting with policy p.
func (c *Cluster) CreateMeeting(p policy.Policy) Created {
	c.t.Helper()
	var m Created
	if code := c.Do("POST", "/api/meetings", "", map[string]any{"title": "t", "policy": p}, &m); code != 201 {
		c.t.Fatalf("create: %d", code)
	}
	return m
}

// Join joins meeting id with a location hint.
func (c *Cluster) Join(id, country string) (api.JoinResponse, APIError, int) {
	c.t.Helper()
	var raw json.RawMessage
	code := c.Do("POST", "/api/meetings/"+id+"/join", "", map[string]any{"name": "n-" + country, "location": map[string]string{"country": country}}, &raw)
	var jr api.JoinResponse
	var ae APIError
	if code == 200 {
		json.Unmarshal(raw, &jr)
	} else {
		json.Unmarshal(raw, &ae)
	}
	return jr, ae, code
}
