package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/replica"
	"github.com/oakmeet/oakmeet/testcluster"
)

// childEnv makes the test binary run the oakmeet command instead of the
// tests, so a test can start (and SIGKILL) real oakmeet processes.
const childEnv = "OAKMEET_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// process is an oakmeet command running in a process of its own.
type process struct {
	cmd *exec.Cmd
	out *syncBuffer
}

func startProcess(t *testing.T, args ...string) *process {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: cmd, out: out}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return p
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// killRig is three `oakmeet serve` replicas on one NATS server (in the
// test process) with two media nodes.
type killRig struct {
	urls     []string
	procs    []*process
	operator string
	tokenTTL time.Duration
	hold     time.Duration
}

func startKillRig(t *testing.T) *killRig {
	base := t.TempDir()
	dirs := []string{filepath.Join(base, "d1"), filepath.Join(base, "d2"), filepath.Join(base, "d3")}
	for _, d := range dirs {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// The replicas share the signing key, the enrollment public key and
	// the operator token; the NATS deployment (and so the nodes'
	// enrollment) is the first's.
	if _, err := keyfile.LoadOrCreate(filepath.Join(dirs[0], controlKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := loadEnrollmentKey(defaultEnrollmentKey(dirs[0]), dirs[0]); err != nil {
		t.Fatal(err)
	}
	op, err := loadOrCreateOperatorToken(filepath.Join(dirs[0], operatorTokenName))
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] {
		for _, f := range []string{controlKeyFile, enrollmentPubFile, operatorTokenName} {
			copyFile(t, filepath.Join(dirs[0], f), filepath.Join(d, f))
		}
	}
	auth, err := natsauth.LoadOrCreate(natsDir(dirs[0]))
	if err != nil {
		t.Fatal(err)
	}
	emb, err := bus.Embed(bus.EmbedConfig{StoreDir: filepath.Join(base, "js"), Auth: auth})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Shutdown)
	creds, err := auth.ControlCreds()
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(base, "control.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}

	g := &killRig{operator: op, tokenTTL: 2 * time.Second, hold: 2 * time.Second}
	for i, d := range dirs {
		addr := freeAddr(t)
		g.urls = append(g.urls, "http://"+addr)
		g.procs = append(g.procs, startProcess(t, "serve", "--nats", emb.URL(), "--nats-creds", credsFile, "--data", d,
			"--nodes", "0", "--listen", addr, "--replica-id", fmt.Sprintf("r%d", i+1), "--lease-ttl", "1s",
			"--heartbeat-interval", "200ms", "--token-ttl", g.tokenTTL.String(), "--limit-pending-hold", g.hold.String(),
			"--trust-client-location", "--limit-join", "off", "--limit-create", "off",
			"--limit-pending-seats-per-meeting", "off", "--limit-pending-seats-per-address", "off",
			"--limit-pending-seats-per-meeting-address", "off", "--log-level", "warn"))
	}
	for _, id := range []string{"de-1", "de-2"} {
		out := filepath.Join(base, id)
		if code, _, errOut := runCmd("enroll", "--data", dirs[0], "--id", id, "--country", "DE", "--out", out); code != 0 {
			t.Fatal(errOut)
		}
		start(t, "node", "--enrollment", out, "--nats", emb.URL(), "--loopback", "--turn-port", "-1",
			"--heartbeat-interval", "200ms", "--max-participants", "1000", "--log-level", "warn")
	}
	c := apiclient.New(g.urls[0], nil)
	testcluster.WaitFor(t, 60*time.Second, "three replicas and two certified nodes", func() bool {
		for _, u := range g.urls {
			if _, err := apiclient.New(u, nil).WithRetry(0).Health(context.Background()); err != nil {
				return false
			}
		}
		nodes, err := c.Nodes(context.Background())
		n := 0
		for _, nd := range nodes {
			if nd.Healthy && nd.Certified {
				n++
			}
		}
		return err == nil && n == 2
	})
	return g
}

// leader is the replica whose control plane answers now.
func (g *killRig) leader(t *testing.T) int {
	t.Helper()
	resp, err := http.Get(g.urls[0] + api.PathHealth)
	if err != nil {
		resp, err = http.Get(g.urls[1] + api.PathHealth)
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get(replica.HeaderLeader)
	for i := range g.urls {
		if id == fmt.Sprintf("r%d", i+1) {
			return i
		}
	}
	t.Fatalf("no leader named: %q", id)
	return -1
}

type joinResult struct {
	meeting, pid string
	err          error
}

// join asks replicas in turn, from first, as a client with several
// addresses would: a replica that cannot be reached is skipped; every
// answer (503s retried by apiclient) is final.
func (g *killRig) join(ctx context.Context, first int, m api.CreatedMeeting, name string) joinResult {
	var last error
	for k := range g.urls {
		u := g.urls[(first+k)%len(g.urls)]
		jr, err := apiclient.New(u, nil).Join(ctx, m.ID, api.JoinRequest{Name: name, Secret: m.JoinSecret, Location: api.Hint{Country: "DE"}})
		if err == nil {
			return joinResult{meeting: m.ID, pid: jr.ParticipantID}
		}
		if ae := (*api.Error)(nil); errors.As(err, &ae) {
			return joinResult{meeting: m.ID, err: err}
		}
		last = err
	}
	return joinResult{meeting: m.ID, err: last}
}

// A burst of joins through all three replicas with the leader SIGKILLed
// in the middle: every join either succeeded and is in the (verifying)
// audit log, or failed with a clear error; in the end no participant holds
// a seat beyond the seat hold.
func TestSIGKILLedLeaderMidJoinBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three control-plane processes")
	}
	g := startKillRig(t)
	ctx := context.Background()
	c := apiclient.New(g.urls[0], nil)
	var meetings []api.CreatedMeeting
	for i := range 3 {
		m, _, err := c.CreateHosted(ctx, api.CreateRequest{Title: fmt.Sprintf("burst %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		meetings = append(meetings, m)
	}
	leader := g.leader(t)

	const joins, parallel = 60, 6
	results := make([]joinResult, joins)
	var wg sync.WaitGroup
	next := make(chan int)
	var done sync.WaitGroup
	done.Add(joins / 3)
	for range parallel {
		wg.Go(func() {
			for i := range next {
				results[i] = g.join(ctx, i, meetings[i%len(meetings)], fmt.Sprintf("p%d", i))
				if i < joins/3 {
					done.Done()
				}
			}
		})
	}
	var survivor int
	for i := range g.urls {
		if i != leader {
			survivor = i
			break
		}
	}
	takeover := make(chan time.Duration, 1)
	go func() {
		// SIGKILL the leader once a third of the joins are answered,
		// while the rest are in flight, and time the first answer of
		// the next leader.
		done.Wait()
		killed := time.Now()
		_ = g.procs[leader].cmd.Process.Kill()
		old := fmt.Sprintf("r%d", leader+1)
		// A request the dead leader took is never answered: each poll
		// gives up soon, so the first answer is seen when it comes.
		hc := &http.Client{Timeout: 200 * time.Millisecond}
		for time.Since(killed) < 30*time.Second {
			resp, err := hc.Get(g.urls[survivor] + api.PathConfig)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && resp.Header.Get(replica.HeaderLeader) != old {
					takeover <- time.Since(killed)
					return
				}
			}
			time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
		}
		takeover <- -1
	}()
	for i := range joins {
		next <- i
	}
	close(next)
	wg.Wait()
	lastJoin := time.Now()
	d := <-takeover
	if d < 0 {
		t.Fatal("no new leader answered within 30 s of the SIGKILL")
	}
	t.Logf("the new leader answered %s after the SIGKILL", d.Round(time.Millisecond))

	ok, failed := 0, 0
	for i, r := range results {
		if r.err == nil {
			ok++
			continue
		}
		failed++
		var ae *api.Error
		if !errors.As(r.err, &ae) || ae.Code == "" || ae.Message == "" {
			t.Errorf("join %d failed without a clear error: %v", i, r.err)
		}
		t.Logf("join %d: %v", i, r.err)
	}
	t.Logf("%d joins placed, %d failed", ok, failed)
	if ok < joins/3 {
		t.Fatalf("only %d of %d joins placed", ok, joins)
	}

	// Every placement answered is in the log, and the log verifies.
	sc := apiclient.New(g.urls[survivor], nil).WithBearer(g.operator)
	log, err := sc.Audit(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	placed := map[string]bool{}
	for _, e := range log.Entries {
		if e.Kind == audit.KindPlacement {
			placed[e.Meeting+"/"+e.Participant] = true
		}
	}
	for i, r := range results {
		if r.err == nil && !placed[r.meeting+"/"+r.pid] {
			t.Errorf("join %d (%s) was answered but its placement is not in the log", i, r.pid)
		}
	}
	cfg, err := sc.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	export := filepath.Join(t.TempDir(), "audit.export")
	if code, _, errOut := runCmd("audit", "export", "--server", g.urls[survivor], "--token", g.operator, "--out", export); code != 0 {
		t.Fatal(errOut)
	}
	if code, out, errOut := runCmd("audit", "verify", export, "--public-key", cfg.AuditVerifierKey); code != 0 {
		t.Fatalf("the log does not verify: %s %s", out, errOut)
	}

	// Nobody connected: once the seat hold has passed, no participant is
	// placed in any meeting, whether it was logged or not.
	bound := g.tokenTTL + g.hold + 15*time.Second
	testcluster.WaitFor(t, time.Until(lastJoin.Add(bound)), "every unconnected seat released", func() bool {
		for _, m := range meetings {
			rt, err := sc.Routing(ctx, m.ID)
			if err != nil || len(rt.Participants) > 0 {
				return false
			}
		}
		return true
	})
}
