package web_test

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/web"
)

// jsunitServer serves the app's modules, the JS unit tests
// (testdata/jsunit at /test/) and the Go side's test vectors.
func jsunitServer(t *testing.T) *httptest.Server {
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler(nil))
	mux.Handle("/test/", http.StripPrefix("/test/", http.FileServer(http.Dir("testdata/jsunit"))))
	mux.HandleFunc("/vectors/sframe.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/sframe/testdata/sframe-rfc9605-vectors.json")
	})
	mux.HandleFunc("/vectors/keymsg.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/keymsg/testdata/example.json")
	})
	mux.HandleFunc("/vectors/presence.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/keymsg/testdata/presence.json")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// TestJSUnit runs the browser's end-to-end encryption unit tests
// (testdata/jsunit: unit.js, groupsim.js, scale.js, worker.js) inside
// Chromium against the app's own modules: SFrame and HPKE vectors, the Go
// side's example key messages (v2: names, digest, ack, commit), the worked
// examples of docs/E2EE.md, the member state machine, a simulation of JS
// members under a lying server (a ghost, a removal, a join burst, seeded
// churn with reordering, duplicates, drops and views in different orders),
// 1,000-member rosters, the media Worker, and move handling.
func TestJSUnit(t *testing.T) {
	b := newBrowser(t, "unit", browserOpts{})
	srv := jsunitServer(t)
	b.navigate(srv.URL + "/test/unit.html")
	b.waitJS(60*time.Second, "unit tests to load", `window.__unit`, `document.body.textContent`)
	raw := evalJS[string](b, `window.__unit`)
	var results []struct {
		Name  string   `json:"name"`
		OK    bool     `json:"ok"`
		Error string   `json:"error"`
		Ms    int      `json:"ms"`
		Notes []string `json:"notes"`
	}
	if err := json.Unmarshal([]byte(raw), &results); err != nil {
		t.Fatalf("results %q: %v", raw, err)
	}
	if len(results) < 20 {
		t.Errorf("only %d JS tests ran", len(results))
	}
	for _, r := range results {
		for _, n := range r.Notes {
			t.Logf("     %s: %s", r.Name, n)
		}
		if r.OK {
			t.Logf("ok   %s (%d ms)", r.Name, r.Ms)
		} else {
			t.Errorf("FAIL %s: %s", r.Name, r.Error)
		}
	}
	b.checkConsole()
}

// TestJSUnitGoAndJSMembers puts Go members (e2ee/group) and browser
// members (web/static/js/e2ee/group.js) in one group, the test carrying
// every key message between them with a fake clock: both implementations
// converge on one epoch and one code whoever leads, decrypt each other's
// frames, gather joins into one epoch, agree on the policy hash, and cut a
// removed member off.
func TestJSUnitGoAndJSMembers(t *testing.T) {
	b := newBrowser(t, "mixed", browserOpts{})
	srv := jsunitServer(t)
	b.navigate(srv.URL + "/test/mixed.html")
	b.waitJS(30*time.Second, "the mixed group page", `window.__mixedReady === true`, `document.body.textContent`)
	n := newMixedNet(t, b, "m-mixed")

	n.join("ann", "bea:js", "cal", "dan:js")
	n.run(3 * time.Second)
	n.converged("four members", "ann", "bea", "cal", "dan")
	n.frames("four members", []string{"ann", "bea", "cal", "dan"}, nil)
	n.nodesKnown("four members", "ann", "bea", "cal", "dan")

	// The Go leader leaves: the browser member next in line leads.
	n.leave("ann")
	n.run(3 * time.Second)
	n.converged("after the Go leader left", "bea", "cal", "dan")
	if got := n.members["cal"].(*mixedGo).m.Leader(); got != "bea" {
		t.Errorf("cal's leader is %q, want bea", got)
	}
	n.frames("under the browser leader", []string{"bea", "cal", "dan"}, nil)

	// Two joins together, one of each kind: one epoch for both.
	made := len(n.epochs)
	n.join("eve", "fay:js")
	n.run(3 * time.Second)
	n.converged("after two joins", "bea", "cal", "dan", "eve", "fay")
	n.nodesKnown("after two joins", "bea", "cal", "dan", "eve", "fay")
	if d := len(n.epochs) - made; d != 1 {
		t.Errorf("%d epochs for two joins together, want 1", d)
	}

	// The policy hash: the same one everywhere gives one new code.
	before := n.members["bea"].code()
	for _, p := range n.order {
		n.members[p].setPolicy(strings.Repeat("ab", 32))
	}
	n.converged("with a policy hash", "bea", "cal", "dan", "eve", "fay")
	if n.members["bea"].code() == before {
		t.Error("the code did not change with the policy hash")
	}

	// The host removes cal; the node keeps listing it and forwarding to it.
	id := n.members["cal"].identity()
	for _, p := range n.order {
		if p != "cal" {
			n.send(p, n.members[p].remove("cal", id))
		}
	}
	n.deliver()
	n.run(3 * time.Second)
	n.converged("after the removal", "bea", "dan", "eve", "fay")
	n.frames("after the removal", []string{"bea", "dan", "eve", "fay"}, []string{"cal"})
	b.checkConsole()
}

// TestJSUnitGoAndJSMembersChurn runs Go and browser members through joins
// and leaves (the leader leaving mid re-key) while the relay reorders,
// duplicates and drops messages the protocol repeats (announcements, acks,
// commits), for several seeds; once the churn stops, everyone left holds
// one epoch and one code and decrypts everyone else. A failure names its
// seed.
func TestJSUnitGoAndJSMembersChurn(t *testing.T) {
	b := newBrowser(t, "churn", browserOpts{})
	srv := jsunitServer(t)
	b.navigate(srv.URL + "/test/mixed.html")
	b.waitJS(30*time.Second, "the mixed group page", `window.__mixedReady === true`, `document.body.textContent`)
	for seed := uint64(1); seed <= 8; seed++ {
		n := newMixedNet(t, b, fmt.Sprintf("m-churn-%d", seed))
		n.rnd = rand.New(rand.NewPCG(seed, 18))
		n.chaos = true
		p := func(spec string) string { return fmt.Sprintf("s%d%s", seed, spec) }
		n.join(p("a"), p("b:js"), p("c"), p("d:js"))
		n.run(1500 * time.Millisecond)
		n.join(p("e:js"), p("f"))
		n.run(200 * time.Millisecond)
		n.leave(p("a"))
		n.run(200 * time.Millisecond)
		n.leave(p("d"))
		n.join(p("g:js"))
		n.run(time.Second)
		n.chaos = false
		n.run(12 * time.Second)
		what := fmt.Sprintf("seed %d", seed)
		stay := []string{p("b"), p("c"), p("e"), p("f"), p("g")}
		n.converged(what, stay...)
		n.frames(what, stay, nil)
	}
	b.checkConsole()
}

func newMixedNet(t *testing.T, b *browser, meeting string) *mixedNet {
	n := &mixedNet{t: t, b: b, meeting: meeting, start: time.Unix(1_800_000_000, 0), members: map[string]mixedMember{}, epochs: map[string]bool{}}
	n.now = n.start
	return n
}

// mixedMember is a Go or a browser group member as the test drives it.
type mixedMember interface {
	roster(view []string) []group.Outgoing
	handle(from string, payload []byte) []group.Outgoing
	tick() []group.Outgoing
	remove(pid string, identity []byte) []group.Outgoing
	setPolicy(h string)
	epoch() uint64
	code() string
	identity() []byte
	nodes() map[string]string      // participant -> the node certificate its People names
	protect(frame []byte) []byte   // nil while it sends nothing
	unprotect(frame []byte) []byte // nil if it cannot decrypt
}

// mixedNet is an in-memory relay between the members, in order, with the
// test's clock. Only the test goroutine touches it.
type mixedNet struct {
	t          *testing.T
	b          *browser
	meeting    string
	start, now time.Time
	// With chaos, rnd picks which queued message goes next, duplicates
	// some and drops some that the protocol sends again.
	rnd     *rand.Rand
	chaos   bool
	members map[string]mixedMember
	order   []string // join order: every member's roster view
	queue   []mixedDelivery
	epochs  map[string]bool // "leader/epoch" of every epoch message sent
}

type mixedDelivery struct {
	from, to, typ string
	payload       []byte
}

// join adds participants (id, or id:js for a browser member) one after
// the other, as clients join: each announces itself to those present, then
// everyone learns the roster.
func (n *mixedNet) join(specs ...string) {
	n.t.Helper()
	for _, spec := range specs {
		pid, kind, _ := strings.Cut(spec, ":")
		var m mixedMember
		var intro []group.Outgoing
		if kind == "js" {
			m, intro = n.newJS(pid)
		} else {
			m, intro = n.newGo(pid)
		}
		n.members[pid] = m
		n.order = append(n.order, pid)
		n.send(pid, intro)
		n.rosterChanged()
	}
}

func (n *mixedNet) leave(pid string) {
	delete(n.members, pid)
	n.order = slices.DeleteFunc(n.order, func(p string) bool { return p == pid })
	n.rosterChanged()
}

func (n *mixedNet) rosterChanged() {
	for _, p := range n.order {
		n.send(p, n.members[p].roster(slices.Clone(n.order)))
	}
	n.deliver()
}

func (n *mixedNet) send(from string, outs []group.Outgoing) {
	for _, o := range outs {
		var head struct {
			Type  string `json:"type"`
			Epoch uint64 `json:"epoch"`
		}
		if json.Unmarshal(o.Payload, &head) == nil && head.Type == "epoch" {
			n.epochs[fmt.Sprintf("%s/%d", from, head.Epoch)] = true
		}
		for _, p := range n.order {
			if p != from && (o.To == "" || o.To == p) {
				n.queue = append(n.queue, mixedDelivery{from, p, head.Type, o.Payload})
			}
		}
	}
}

func (n *mixedNet) deliver() {
	n.t.Helper()
	for i := 0; len(n.queue) > 0; i++ {
		if i > 100000 {
			n.t.Fatal("the relay does not go quiet")
		}
		next := 0
		if n.chaos {
			next = n.rnd.IntN(len(n.queue))
		}
		d := n.queue[next]
		n.queue = slices.Delete(n.queue, next, next+1)
		if n.chaos {
			switch r := n.rnd.Float64(); {
			case r < 0.1:
				n.queue = append(n.queue, d)
			case r < 0.2 && (d.typ == "announce" || d.typ == "ack" || d.typ == "commit"):
				continue
			}
		}
		if m, ok := n.members[d.to]; ok {
			n.send(d.to, m.handle(d.from, d.payload))
		}
	}
}

// run lets d pass in ticks of 100 ms, every member ticking each time.
func (n *mixedNet) run(d time.Duration) {
	n.t.Helper()
	for end := n.now.Add(d); n.now.Before(end); {
		n.now = n.now.Add(100 * time.Millisecond)
		for _, p := range n.order {
			n.send(p, n.members[p].tick())
		}
		n.deliver()
	}
}

func (n *mixedNet) converged(what string, pids ...string) {
	n.t.Helper()
	first := n.members[pids[0]]
	if first.epoch() == 0 || first.code() == "" {
		n.t.Fatalf("%s: %s has no sending epoch", what, pids[0])
	}
	for _, p := range pids[1:] {
		m := n.members[p]
		if m.epoch() != first.epoch() || m.code() != first.code() {
			n.t.Fatalf("%s: %s holds epoch %d code %s; %s holds %d %s", what, p, m.epoch(), m.code(), pids[0], first.epoch(), first.code())
		}
	}
}

// frames has each of senders protect a frame that every other sender, and
// none of outsiders, decrypts.
func (n *mixedNet) frames(what string, senders, outsiders []string) {
	n.t.Helper()
	for i, s := range senders {
		frame := []byte{0x78, byte(i), 2, 3, 4}
		f := n.members[s].protect(frame)
		if f == nil {
			n.t.Fatalf("%s: %s sends nothing", what, s)
		}
		for _, r := range senders {
			if got := n.members[r].unprotect(f); r != s && string(got) != string(frame) {
				n.t.Errorf("%s: %s decrypts %s's frame to %x", what, r, s, got)
			}
		}
		for _, o := range outsiders {
			if got := n.members[o].unprotect(f); got != nil {
				n.t.Errorf("%s: outsider %s decrypts %s's frame", what, o, s)
			}
		}
	}
}

// nodeCertOf is the node certificate text member pid says it is on: the
// test checks the signed node messages cross between the two
// implementations, not the certificates (TestNodeCertsMatchGo does).
func nodeCertOf(pid string) string { return "cert-of-" + pid }

// nodesKnown checks that each of pids holds every other's signed node
// message, whichever implementation sent it.
func (n *mixedNet) nodesKnown(what string, pids ...string) {
	n.t.Helper()
	for _, p := range pids {
		got := n.members[p].nodes()
		for _, o := range pids {
			if got[o] != nodeCertOf(o) {
				n.t.Errorf("%s: %s holds node %q for %s, want %q", what, p, got[o], o, nodeCertOf(o))
			}
		}
	}
}

func (n *mixedNet) newGo(pid string) (mixedMember, []group.Outgoing) {
	n.t.Helper()
	id, err := identity.Generate()
	if err != nil {
		n.t.Fatal(err)
	}
	m, err := group.NewMember(group.Config{Meeting: n.meeting, Participant: pid, Name: strings.ToUpper(pid), Identity: id, Now: func() time.Time { return n.now }, NodeCert: nodeCertOf(pid)})
	if err != nil {
		n.t.Fatal(err)
	}
	return &mixedGo{t: n.t, m: m, id: id}, m.Introduce()
}

func (g *mixedGo) nodes() map[string]string {
	out := map[string]string{}
	for _, p := range g.m.People() {
		out[p.Participant] = p.NodeCert
	}
	return out
}

type mixedGo struct {
	t  *testing.T
	m  *group.Member
	id *identity.Identity
}

func (g *mixedGo) must(out []group.Outgoing, err error) []group.Outgoing {
	g.t.Helper()
	if err != nil {
		g.t.Fatalf("%s: %v", g.m.Participant(), err)
	}
	return out
}

func (g *mixedGo) roster(view []string) []group.Outgoing { return g.must(g.m.OnRosterChange(view)) }
func (g *mixedGo) tick() []group.Outgoing                { return g.must(g.m.Tick()) }
func (g *mixedGo) remove(pid string, id []byte) []group.Outgoing {
	return g.must(g.m.Remove(pid, id))
}

// handle ignores refusals: a stale or early message is part of the protocol.
func (g *mixedGo) handle(from string, payload []byte) []group.Outgoing {
	out, _ := g.m.HandleMessage(from, payload)
	return out
}

func (g *mixedGo) setPolicy(h string) { g.m.SetPolicyHash(h) }
func (g *mixedGo) epoch() uint64      { return g.m.Epoch() }
func (g *mixedGo) identity() []byte   { return g.id.Public() }

func (g *mixedGo) code() string {
	c, ok := g.m.SecurityCode()
	if !ok {
		return ""
	}
	return c.String()
}

func (g *mixedGo) protect(frame []byte) []byte {
	f, err := g.m.Protect(nil, mediaframe.Opus, frame)
	if err != nil {
		return nil
	}
	return f
}

func (g *mixedGo) unprotect(frame []byte) []byte {
	f, err := g.m.Unprotect(nil, mediaframe.Opus, frame)
	if err != nil {
		return nil
	}
	return f
}

// mixedJS is a member in the page, driven through window.__mixed.
type mixedJS struct {
	n   *mixedNet
	pid string
	id  []byte
}

type mixedOut struct {
	To      string `json:"to"`
	Payload string `json:"payload"`
}

func (n *mixedNet) newJS(pid string) (mixedMember, []group.Outgoing) {
	n.t.Helper()
	j := &mixedJS{n: n, pid: pid}
	r := mixedCall[struct {
		Intro    []mixedOut `json:"intro"`
		Identity string     `json:"identity"`
	}](j, "add", j.n.meeting, strings.ToUpper(pid), "", nodeCertOf(pid))
	id, err := hex.DecodeString(r.Identity)
	if err != nil {
		n.t.Fatal(err)
	}
	j.id = id
	return j, mixedOutgoing(r.Intro)
}

func (j *mixedJS) nodes() map[string]string {
	st := mixedCall[struct {
		People []struct {
			Participant string `json:"participant"`
			Node        string `json:"node"`
		} `json:"people"`
	}](j, "state")
	out := map[string]string{}
	for _, p := range st.People {
		out[p.Participant] = p.Node
	}
	return out
}

// mixedCall calls window.__mixed(now, op, pid, args…) and decodes its answer.
func mixedCall[T any](j *mixedJS, op string, args ...any) T {
	j.n.t.Helper()
	parts := []string{fmt.Sprint(j.n.now.Sub(j.n.start).Milliseconds()), jsString(op), jsString(j.pid)}
	for _, a := range args {
		b, err := json.Marshal(a)
		if err != nil {
			j.n.t.Fatal(err)
		}
		parts = append(parts, string(b))
	}
	return evalJS[T](j.n.b, "window.__mixed("+strings.Join(parts, ", ")+")")
}

func mixedOutgoing(outs []mixedOut) []group.Outgoing {
	var out []group.Outgoing
	for _, o := range outs {
		out = append(out, group.Outgoing{To: o.To, Payload: []byte(o.Payload)})
	}
	return out
}

func (j *mixedJS) roster(view []string) []group.Outgoing {
	return mixedOutgoing(mixedCall[[]mixedOut](j, "roster", view))
}

func (j *mixedJS) tick() []group.Outgoing { return mixedOutgoing(mixedCall[[]mixedOut](j, "tick")) }

func (j *mixedJS) handle(from string, payload []byte) []group.Outgoing {
	r := mixedCall[struct {
		Outs []mixedOut `json:"outs"`
	}](j, "handle", from, string(payload))
	return mixedOutgoing(r.Outs)
}

func (j *mixedJS) remove(pid string, id []byte) []group.Outgoing {
	return mixedOutgoing(mixedCall[[]mixedOut](j, "remove", pid, hex.EncodeToString(id)))
}

func (j *mixedJS) setPolicy(h string) { mixedCall[any](j, "policy", h) }
func (j *mixedJS) identity() []byte   { return j.id }

type mixedState struct {
	Epoch uint64 `json:"epoch"`
	Code  string `json:"code"`
}

func (j *mixedJS) epoch() uint64 { return mixedCall[mixedState](j, "state").Epoch }
func (j *mixedJS) code() string  { return mixedCall[mixedState](j, "state").Code }

func (j *mixedJS) protect(frame []byte) []byte {
	return mixedHex(j.n.t, mixedCall[string](j, "protect", hex.EncodeToString(frame)))
}

func (j *mixedJS) unprotect(frame []byte) []byte {
	return mixedHex(j.n.t, mixedCall[string](j, "unprotect", hex.EncodeToString(frame)))
}

func mixedHex(t *testing.T, s string) []byte {
	t.Helper()
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
