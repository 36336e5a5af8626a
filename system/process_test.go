package system

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// procHeartbeat is how often the deployment's nodes report: five times as
// often as in production, so that node loss, drains and moves play out in
// about a second. Every process is given the same interval, as a deployment
// must be.
const procHeartbeat = 200 * time.Millisecond

// deployment is oakmeet as separate processes: `oakmeet serve --nodes 0`
// with NATS for other processes, and one `oakmeet node` process per node.
type deployment struct {
	t       *testing.T
	timing  cluster.Timing // every process's, from procHeartbeat
	bin     string
	dir     string
	url     string
	api     *apiclient.Client
	natsURL string
	port    int
	natsPt  int
	control *exec.Cmd
	nodes   map[string]*exec.Cmd
	// operator: d.api sends the operator token serve made, and reads all
	// of the audit log.
	operator bool
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func buildBinary(t *testing.T) string {
	t.Helper()
	bin, err := oakmeetBinary()
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

func startDeployment(t *testing.T) *deployment {
	timing, err := cluster.TimingForHeartbeat(procHeartbeat)
	if err != nil {
		t.Fatal(err)
	}
	d := &deployment{t: t, timing: timing, bin: buildBinary(t), dir: t.TempDir(), nodes: map[string]*exec.Cmd{}}
	d.port, d.natsPt = freePort(t), freePort(t)
	d.url = fmt.Sprintf("http://127.0.0.1:%d", d.port)
	d.api = apiclient.New(d.url, nil)
	d.natsURL = fmt.Sprintf("nats://127.0.0.1:%d", d.natsPt)
	d.startControl()
	t.Cleanup(d.stopAll)
	t.Cleanup(d.logsOnFailure) // runs first: the processes' logs outlive them
	return d
}

// logsOnFailure shows the end of every process's log when the test has
// failed, so a failure on a busy machine can be understood afterwards.
func (d *deployment) logsOnFailure() {
	if !d.t.Failed() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(d.dir, "*.log"))
	for _, name := range logs {
		data, err := os.ReadFile(name)
		if err != nil {
			continue
		}
		if len(data) > 20000 {
			data = data[len(data)-20000:]
		}
		d.t.Logf("--- %s (end) ---\n%s", filepath.Base(name), data)
	}
}

func (d *deployment) logFile(name string) *os.File {
	// Appending keeps a restarted process's earlier log.
	f, err := os.OpenFile(filepath.Join(d.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		d.t.Fatal(err)
	}
	return f
}

// logger writes to the deployment's log called name, which a failure shows.
func (d *deployment) logger(name string) *slog.Logger {
	f := d.logFile(name)
	d.t.Cleanup(func() { f.Close() })
	return slog.New(slog.NewTextHandler(f, nil))
}

func (d *deployment) startControl() {
	cmd := exec.Command(d.bin, "serve", "--nodes", "0", "--listen", fmt.Sprintf("127.0.0.1:%d", d.port),
		"--nats-listen", fmt.Sprintf("127.0.0.1:%d", d.natsPt), "--trust-client-location", "--data", filepath.Join(d.dir, "control"),
		"--heartbeat-interval", procHeartbeat.String())
	log := d.logFile("control")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.control = cmd
	testcluster.WaitFor(d.t, 15*time.Second, "control plane ready", func() bool {
		_, err := d.api.Health(context.Background())
		return err == nil
	})
	// serve made the operator token on its first start: the tests read
	// the routing and audit log of every meeting with it.
	if tok, err := os.ReadFile(filepath.Join(d.dir, "control", "operator.token")); err == nil {
		d.api = apiclient.New(d.url, nil).WithBearer(strings.TrimSpace(string(tok)))
		d.operator = true
	}
}

// enroll writes node id's enrollment as the operator would, once.
func (d *deployment) enroll(id, country, region string) string {
	out := filepath.Join(d.dir, "enroll-"+id)
	if _, err := os.Stat(out); err == nil {
		return out
	}
	cmd := exec.Command(d.bin, "enroll", "--data", filepath.Join(d.dir, "control"), "--id", id, "--country", country,
		"--region", region, "--out", out)
	if data, err := cmd.CombinedOutput(); err != nil {
		d.t.Fatalf("enroll %s: %v\n%s", id, err, data)
	}
	return out
}

func (d *deployment) startNode(id, country, region string, extra ...string) {
	args := append([]string{"node", "--enrollment", d.enroll(id, country, region),
		"--id", id, "--country", country, "--region", region, "--nats", d.natsURL,
		"--listen", "127.0.0.1:0", "--loopback", "--turn-port", "-1", "--drain-timeout", "10s",
		"--heartbeat-interval", procHeartbeat.String()}, extra...)
	cmd := exec.Command(d.bin, args...)
	log := d.logFile("node-" + id)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		d.t.Fatal(err)
	}
	d.nodes[id] = cmd
}

func (d *deployment) signalNode(id string, sig syscall.Signal) {
	if cmd := d.nodes[id]; cmd != nil {
		_ = cmd.Process.Signal(sig)
	}
}

func (d *deployment) stopAll() {
	for _, cmd := range d.nodes {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	if d.control != nil {
		_ = d.control.Process.Kill()
		_ = d.control.Wait()
	}
}

func (d *deployment) healthy() map[string]bool {
	nodes, _ := d.api.Nodes(context.Background()) // none healthy until it answers
	out := map[string]bool{}
	for _, n := range nodes {
		if n.Healthy {
			out[n.ID] = true
		}
	}
	return out
}

func (d *deployment) waitHealthy(ids ...string) {
	testcluster.WaitFor(d.t, 15*time.Second, "nodes healthy: "+strings.Join(ids, ","), func() bool {
		h := d.healthy()
		for _, id := range ids {
			if !h[id] {
				return false
			}
		}
		return true
	})
}

func (d *deployment) participantsOn(meeting string) map[string]string {
	rv, _ := d.api.Routing(context.Background(), meeting) // no one placed until it answers
	out := map[string]string{}
	for _, p := range rv.Participants {
		out[p.Name] = p.Node.ID
	}
	return out
}

// nodesOf is every node the meeting's participants called name are placed
// on: more than one while a move is under way.
func (d *deployment) nodesOf(meeting, name string) []string {
	rv, _ := d.api.Routing(context.Background(), meeting) // no one placed until it answers
	var out []string
	for _, p := range rv.Participants {
		if p.Name == name {
			out = append(out, p.Node.ID)
		}
	}
	return out
}

// placedOnce is, by name, the node of every participant of the meeting
// when each is placed exactly once: no move is under way and no try at
// joining a node that turned out dead is left over. ok is false otherwise.
func (d *deployment) placedOnce(meeting string) (on map[string]api.PlacedNode, ok bool) {
	rv, err := d.api.Routing(context.Background(), meeting)
	if err != nil {
		return nil, false
	}
	on = map[string]api.PlacedNode{}
	for _, p := range rv.Participants {
		if _, twice := on[p.Name]; twice {
			return nil, false
		}
		on[p.Name] = p.Node
	}
	return on, true
}

func (d *deployment) verifyAudit(meeting string) {
	d.t.Helper()
	if !d.operator {
		d.t.Logf("serve wrote no operator token: verifying meeting %s's chain alone", meeting)
		verifyAuditOf(d.t, d.api, meeting)
		return
	}
	verifyAudit(d.t, d.api)
}

// Real processes: five nodes in five countries. A node killed with
// SIGKILL loses its participant to an allowed node; a node sent SIGTERM
// drains its participant away and exits; a join beyond all allowed
// capacity is refused; the control plane restarts without losing the
// meeting or the log. The policy holds throughout and the log verifies.
// One scenario in order, each step starting where the last left the
// deployment, so it stays one function.
func TestProcessesNodeLossDrainOverloadRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	d := startDeployment(t)
	d.startNode("de-1", "DE", "eu-central-1")
	d.startNode("fr-1", "FR", "eu-west-3")
	d.startNode("jp-1", "JP", "ap-northeast-1")
	d.startNode("us-1", "US", "us-east-1")
	d.startNode("cn-1", "CN", "cn-north-1", "--max-participants", "1")
	d.waitHealthy("de-1", "fr-1", "jp-1", "us-1", "cn-1")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	m, host, err := d.api.CreateHosted(ctx, api.CreateRequest{Title: "procs", Policy: policy.Policy{BlockedCountries: []string{"CN"}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if !d.operator {
		// Without the operator token, the meeting's own host token reads
		// its routing and audit log.
		d.api = d.api.WithBearer(m.HostToken)
	}
	w := watch(t, d.api, m.ID, d.timing.MoveDeadline)

	// Three bots: from JP, DE and FR.
	var wg sync.WaitGroup
	reports := map[string]*bot.Report{}
	var mu sync.Mutex
	var ready sync.WaitGroup
	for _, cc := range []string{"JP", "DE", "FR"} {
		ready.Add(1)
		wg.Go(func() {
			// A bot whose node is lost retries its join as often as the
			// deployment's nodes report: a try that lands on a node not yet
			// known to be gone is followed by another a heartbeat later.
			rep, err := bot.Run(ctx, bot.Config{Server: d.url, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "bot-" + cc, Country: cc, LoopbackOnly: true,
				Linger: 200 * time.Millisecond, RejoinPause: d.timing.HeartbeatInterval, Logger: d.logger("bot-" + cc),
				Ready: func(string) { ready.Done() }})
			if err != nil {
				t.Errorf("bot %s: %v", cc, err)
			}
			mu.Lock()
			reports[cc] = rep
			mu.Unlock()
		})
	}
	ready.Wait()
	on := d.participantsOn(m.ID)
	// JP is far from the others: its own node. DE and FR are near each
	// other, so they share one node (fewer relays).
	if on["bot-JP"] != "jp-1" || on["bot-DE"] != on["bot-FR"] || (on["bot-DE"] != "de-1" && on["bot-DE"] != "fr-1") {
		t.Fatalf("placements %v", on)
	}
	europe := on["bot-FR"]
	// The meeting is under way, media crossing between the nodes, before
	// anything breaks: a node lost while its participants are still
	// setting up their connections is not what this test is about.
	waitTraffic(t, d.api, m.ID, map[string]uint64{"jp-1": 0, europe: 0}, mediaWhile, 10*time.Second)

	// SIGKILL the JP node: its bot is back on an allowed node within 5 s
	// of the control plane noticing (its heartbeat timeout).
	killed := time.Now()
	d.signalNode("jp-1", syscall.SIGKILL)
	// Until the control plane notices, a try may land on the dead node
	// again, fail to connect and be retried: the bot is off the killed node
	// once it is placed anywhere else.
	testcluster.WaitFor(t, 12*time.Second, "bot-JP off the killed node", func() bool {
		return slices.ContainsFunc(d.nodesOf(m.ID, "bot-JP"), func(n string) bool { return n != "jp-1" })
	})
	t.Logf("bot-JP moved %s after SIGKILL", time.Since(killed).Round(100*time.Millisecond))
	if took := time.Since(killed); took > d.timing.HeartbeatTimeout+5*time.Second {
		t.Errorf("bot-JP took %s to leave the killed node", took)
	}
	if slices.Contains(d.nodesOf(m.ID, "bot-JP"), "cn-1") {
		t.Fatal("bot-JP landed in CN")
	}

	// SIGTERM the European node: it drains — both bots move away — and
	// exits.
	d.signalNode(europe, syscall.SIGTERM)
	testcluster.WaitFor(t, 12*time.Second, "bots drained off "+europe, func() bool {
		on := d.participantsOn(m.ID)
		return on["bot-FR"] != "" && on["bot-FR"] != europe && on["bot-DE"] != "" && on["bot-DE"] != europe
	})
	done := make(chan error, 1)
	go func() { done <- d.nodes[europe].Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal(europe + " did not exit after draining")
	}
	delete(d.nodes, europe)

	// A policy change forces a migration: block the country of the node
	// bot-JP is on now; it moves within the deadline.
	var at map[string]api.PlacedNode
	testcluster.WaitFor(t, 5*time.Second, "every bot placed once after the drain", func() bool {
		var ok bool
		at, ok = d.placedOnce(m.ID)
		return ok && len(at) == 3
	})
	blocked := []string{"CN", at["bot-JP"].Country}
	changed := time.Now()
	if _, err := host.SetPolicy(ctx, policy.Policy{BlockedCountries: blocked}); err != nil {
		t.Fatalf("policy change: %v", err)
	}
	testcluster.WaitFor(t, 8*time.Second, "every bot moved off "+blocked[1], func() bool {
		var ok bool
		if at, ok = d.placedOnce(m.ID); !ok || len(on) != 3 {
			return false // a move under way
		}
		for _, n := range at {
			if slices.Contains(blocked, n.Country) {
				return false
			}
		}
		return true
	})
	t.Logf("the bots moved %s after the policy change", time.Since(changed).Round(100*time.Millisecond))
	// Media flows on the new nodes for a while before the bots leave: the
	// three of them on one node forward more than twice the bytes of two,
	// and the wait is long enough for the frames counted below.
	base := map[string]uint64{}
	for _, n := range at {
		base[n.ID] = 0
	}
	for n, b := range nodeBytes(d.api, m.ID) {
		if _, ok := base[n]; ok {
			base[n] = b
		}
	}
	waitTraffic(t, d.api, m.ID, base, 4*mediaWhile, 10*time.Second)

	// Overload: a meeting allowed only in CN, whose node takes one (and
	// which the bots' meeting blocks, so they never fill it).
	only, _, err := d.api.CreateHosted(ctx, api.CreateRequest{Policy: policy.Policy{AllowedCountries: []string{"CN"}}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	if _, err := d.api.Join(ctx, only.ID, api.JoinRequest{Name: "a", Location: api.Hint{Country: "CN"}, Secret: only.JoinSecret}); err != nil {
		t.Fatalf("first CN join: %v", err)
	}
	_, err = d.api.Join(ctx, only.ID, api.JoinRequest{Name: "b", Location: api.Hint{Country: "CN"}, Secret: only.JoinSecret})
	var refusal *api.Error
	if !errors.As(err, &refusal) || refusal.Status != http.StatusServiceUnavailable || refusal.Code != placement.CodeNoCapacity {
		t.Fatalf("over capacity: %v", err)
	}

	cancel()
	wg.Wait()
	w.finish()

	// Restart the control plane: the meeting and the log are kept, nodes
	// come back by their heartbeats.
	_ = d.control.Process.Signal(syscall.SIGTERM)
	_ = d.control.Wait()
	d.startControl()
	var alive []string
	for id := range d.nodes {
		if id != "jp-1" {
			alive = append(alive, id)
		}
	}
	d.waitHealthy(alive...)
	if got, err := d.api.Meeting(context.Background(), m.ID); err != nil || got.ID != m.ID {
		t.Fatalf("meeting after restart: %+v %v", got, err)
	}
	d.verifyAudit(m.ID)
	a, err := d.api.Audit(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range a.Entries {
		kinds[e.Kind]++
	}
	if kinds[audit.KindPlacement] < 3 || kinds[audit.KindMigration] < 2 {
		t.Fatalf("audit kinds %v", kinds)
	}
	// Media crossed between nodes all along: every bot received video
	// from the others, across kills, drains and moves, and from each of
	// them as the participant it was at the end, on the last nodes.
	for cc, r := range reports {
		if r == nil {
			t.Fatalf("bot %s: no report", cc)
		}
		var video int64
		from := map[string]bool{}
		for _, tr := range r.Tracks {
			if tr.Kind == "video" && tr.Frames > 0 {
				video += tr.Frames
				from[tr.ParticipantID] = true
			}
		}
		t.Logf("bot %s: %d video frames from %d participants, moves %+v", cc, video, len(from), r.Moves)
		if video < 100 || len(from) < 2 {
			t.Errorf("bot %s received %d video frames from %d participants", cc, video, len(from))
		}
		for other, o := range reports {
			if other == cc || o == nil {
				continue
			}
			if v, a := framesFrom(r, o.ParticipantID); v < minVideo || a < minAudio {
				t.Errorf("bot %s received %d video and %d audio frames from bot %s after the last move", cc, v, a, other)
			}
		}
	}
}

// verifyAudit checks the whole audit log as the control plane exports it.
func verifyAudit(t *testing.T, cl *apiclient.Client) {
	t.Helper()
	verifyAuditOf(t, cl, "")
}

// verifyAuditOf checks one meeting's chain ("" = all of them).
func verifyAuditOf(t *testing.T, cl *apiclient.Client, meeting string) {
	t.Helper()
	adversary.VerifyExport(t, cl, meeting)
}
