package system

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/testcluster"
)

// The tests in this file are issue 12's acceptance: a participant's own
// client checks where its media goes, against the host's signed policy,
// and refuses what a lying control plane (its store rewritten, its join
// answers edited) or a node that cannot prove who it is puts before it.
// Each lie is a real component of package adversary made to misbehave.

// botRun is one bot running until stopped, telling when it is in.
type botRun struct {
	in     chan string // the participant it first connected as
	done   chan struct{}
	cancel context.CancelFunc
	rep    *bot.Report
	err    error
}

// runBot starts a bot; it stops when the test ends if not before.
func runBot(t *testing.T, cfg bot.Config) *botRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &botRun{in: make(chan string, 1), done: make(chan struct{}), cancel: cancel}
	cfg.Ready = func(pid string) {
		select {
		case b.in <- pid:
		default:
		}
	}
	cfg.LoopbackOnly = true
	if cfg.Linger == 0 {
		cfg.Linger = 200 * time.Millisecond
	}
	if cfg.RejoinPause == 0 {
		cfg.RejoinPause = 100 * time.Millisecond
	}
	go func() {
		defer close(b.done)
		b.rep, b.err = bot.Run(ctx, cfg)
	}()
	t.Cleanup(func() { cancel(); <-b.done })
	return b
}

// waitIn waits until the bot is connected and returns the participant it
// connected as; a bot that ends first fails the test.
func (b *botRun) waitIn(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case pid := <-b.in:
		return pid
	case <-b.done:
		t.Fatalf("bot ended before it was in: %v", b.err)
	case <-time.After(d):
		t.Fatalf("bot not in after %s", d)
	}
	return ""
}

// stop ends the bot and returns what it reported.
func (b *botRun) stop() (*bot.Report, error) {
	b.cancel()
	<-b.done
	return b.rep, b.err
}

// ended waits until the bot ends by itself.
func (b *botRun) ended(t *testing.T, d time.Duration) (*bot.Report, error) {
	t.Helper()
	select {
	case <-b.done:
		return b.rep, b.err
	case <-time.After(d):
		t.Fatalf("bot still running after %s", d)
	}
	return nil, nil
}

// placedOn is the node the routing view shows a participant on ("" when
// it is not there).
func placedOn(t *testing.T, c *testcluster.Cluster, meeting, pid string) string {
	t.Helper()
	rv, err := c.API.Routing(context.Background(), meeting)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range rv.Participants {
		if p.ID == pid {
			return p.Node.ID
		}
	}
	return ""
}

// successor waits until the routing view shows the participant that
// replaced pid, and returns it.
func successor(t *testing.T, c *testcluster.Cluster, meeting, pid string) string {
	t.Helper()
	var next string
	testcluster.WaitFor(t, 15*time.Second, "the participant replacing "+pid, func() bool {
		rv, err := c.API.Routing(context.Background(), meeting)
		if err != nil {
			return false
		}
		for _, p := range rv.Participants {
			if p.Replaces == pid {
				next = p.ID
				return true
			}
		}
		return false
	})
	return next
}

// rewriter is the control plane's store, opened with its own NATS
// credentials.
func rewriter(t *testing.T, c *testcluster.Cluster) *adversary.Store {
	t.Helper()
	nc, err := c.NATS().ConnectControl("rewriter")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	st, err := adversary.OpenStore(context.Background(), nc)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// front is a lying control plane before c, stopped when the test ends.
func front(t *testing.T, c *testcluster.Cluster) *adversary.Front {
	t.Helper()
	f, err := adversary.StartFront(c.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// noConnections fails the test if the node saw anyone connect or try to.
func noConnections(t *testing.T, n *adversary.Node) {
	t.Helper()
	for _, e := range n.Log.Find(func(e adversary.Entry) bool {
		return e.Message == "participant connected" || e.Message == "signaling refused"
	}) {
		t.Errorf("node %s: %s", n.ID, e)
	}
}

// A control plane whose stored policy was rewritten with its own
// credentials (CN unblocked behind the host's back) places a participant
// from China on the CN node. The Go bot refuses it before opening its
// WebSocket — the CN node never sees it, so no media is sent there —
// reports node_not_allowed_by_policy naming CN, the control plane audits
// the refusal (verifiably) and places it again, on the allowed node,
// where it and a bot placed while the control plane was honest exchange
// media.
func TestMisplacingControlPlaneIsRefused(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	de := adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	cn := adversary.StartNode(t, c, adversary.NodeSpec{ID: "cn-pek", Country: "CN", Region: "cn-north-1"})
	c.WaitHealthy(2)
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
	cfg := func(name string) bot.Config {
		return bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: name, Country: "CN"}
	}

	// Honest: the meeting works; a participant is in on de-fra.
	hc := cfg("honest")
	hc.Country = "DE"
	honest := runBot(t, hc)
	first := honest.waitIn(t, 20*time.Second)
	if on := placedOn(t, c, m.ID, first); on != "de-fra" {
		t.Fatalf("honest placement: %q", on)
	}

	// Misplacing: the stored policy no longer blocks CN.
	if err := rewriter(t, c).RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
		t.Fatal(err)
	}
	lied := runBot(t, cfg("misplaced"))
	second := lied.waitIn(t, 20*time.Second)
	e := adversary.WaitRefused(t, c, m.ID, "cn-pek", api.CodeNodeNotAllowed, 15*time.Second)
	if e.NodeCountry != "CN" || e.Participant == "" || e.Participant == second || !strings.Contains(e.Reason, "CN") {
		t.Errorf("refusal entry %+v (the bot is in as %s)", e, second)
	}
	if on := placedOn(t, c, m.ID, second); on != "de-fra" {
		t.Errorf("after the refusal the bot is on %q", on)
	}
	noConnections(t, cn)
	if !de.Connected(second) {
		t.Errorf("de-fra never saw %s connect", second)
	}
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0}, mediaWhile, 20*time.Second)
	honestRep, err := honest.stop()
	if err != nil {
		t.Fatalf("honest bot: %v", err)
	}
	liedRep, err := lied.stop()
	if err != nil {
		t.Fatalf("misplaced bot: %v", err)
	}
	if v, _ := framesFrom(honestRep, second); v == 0 {
		t.Errorf("the honest bot received no video from the re-placed one")
	}
	// The honest bot checked the other's word on its node (its signed
	// node message) against the host's policy, as the other checked it.
	judged := false
	for _, p := range honestRep.People {
		if p.ParticipantID == second {
			judged = p.Node.Status == client.NodeVerified && p.Node.ID == "de-fra"
		}
	}
	if !judged {
		t.Errorf("the honest bot does not hold the re-placed bot's node as verified on de-fra: %+v", honestRep.People)
	}
	checkRefusals(t, liedRep, refusalWant{node: "cn-pek", code: api.CodeNodeNotAllowed, mentions: "CN"})
	// The control plane may move the honest bot to cn-pek too (the
	// meeting's nodes are consolidated): it must refuse it alike.
	if len(honestRep.Refusals) > 0 {
		checkRefusals(t, honestRep, refusalWant{node: "cn-pek", code: api.CodeNodeNotAllowed, mentions: "CN"})
	}
	if liedRep.Node.ID != "de-fra" || liedRep.NodeCert == nil || liedRep.NodeCert.Node != "de-fra" || liedRep.NodeCert.Country != "DE" {
		t.Errorf("the misplaced bot ended on %+v, certified %+v", liedRep.Node, liedRep.NodeCert)
	}
	rep, err := c.API.MeetingReport(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range rep.Nodes {
		if u.Node == "cn-pek" && u.Bytes > 0 {
			t.Errorf("cn-pek forwarded %d bytes", u.Bytes)
		}
	}
	verifyAuditOf(t, c.API, m.ID)
}

// refusalWant is a refusal a bot must report.
type refusalWant struct{ node, code, mentions string }

func (w refusalWant) matches(node, code, message string) bool {
	return node == w.node && code == w.code && strings.Contains(message, w.mentions)
}

// checkRefusals checks that the bot reported a refusal matching each of
// want and none that matches none of them: a control plane that keeps
// moving participants about may place a bot on the same wrong node more
// than once, and each time it must be refused alike.
func checkRefusals(t *testing.T, rep *bot.Report, want ...refusalWant) {
	t.Helper()
	got := rep.Refusals
	seen := make([]bool, len(want))
	for _, g := range got {
		ok := false
		for i, w := range want {
			if w.matches(g.Node, g.Code, g.Message) {
				seen[i], ok = true, true
			}
		}
		if !ok {
			t.Errorf("bot %s refused %+v, want only %+v", rep.ParticipantID, g, want)
		}
	}
	for i, w := range want {
		if !seen[i] {
			t.Errorf("bot %s did not report refusing %+v (refusals %+v)", rep.ParticipantID, w, got)
		}
	}
}

// A control plane that hands out a certificate other than the node's
// own: self-signed, expired, another node's; or names another node (id,
// place and certificate of fr-par) for de-fra's address, which cannot
// prove the certified key. The Go client refuses de-fra each time
// (node_cert_invalid, or node_proof_invalid once it has seen the node's
// signed welcome), the refusal is audited, and it goes on to fr-par. A
// participant on de-fra gets no media from the refused placement.
func TestForgedNodeIdentityIsRefused(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	de := adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	fr := adversary.StartNode(t, c, adversary.NodeSpec{ID: "fr-par", Country: "FR", Region: "eu-west-3"})
	c.WaitHealthy(2)
	f := front(t, c)
	_, expired := c.Enroll("de-fra", "DE", "eu-central-1", -30*time.Second)
	selfSigned, err := adversary.SelfSigned(de.Cert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		edit   func(*api.JoinNode)
		code   string
		proven bool // the node is reached, and fails its proof
		// named is the node the bot was told it was on, which its
		// refusal names (the audit names the node of the placement).
		named string
	}{
		{"self-signed", func(n *api.JoinNode) { n.Cert = selfSigned }, api.CodeNodeCertInvalid, false, "de-fra"},
		{"expired", func(n *api.JoinNode) { n.Cert = expired }, api.CodeNodeCertInvalid, false, "de-fra"},
		{"another node's certificate", func(n *api.JoinNode) { n.Cert = fr.Cert }, api.CodeNodeCertInvalid, false, "de-fra"},
		{"cannot prove the certified key", func(n *api.JoinNode) {
			n.ID, n.Country, n.Region, n.Cert = "fr-par", "FR", "eu-west-3", fr.Cert // the URL stays de-fra's
		}, api.CodeNodeProofInvalid, true, "fr-par"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := c.CreateMeeting(policy.Policy{})
			cfg := func(server, name string) bot.Config {
				return bot.Config{Server: server, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: name, Country: "DE"}
			}
			// A witness on de-fra, placed honestly.
			witness := runBot(t, cfg(c.URL, "witness"))
			wid := witness.waitIn(t, 20*time.Second)
			if on := placedOn(t, c, m.ID, wid); on != "de-fra" {
				t.Fatalf("witness on %q", on)
			}
			f.SetJoinEdit(func(meeting string, jr *api.JoinResponse) {
				if meeting == m.ID && jr.Node.ID == "de-fra" {
					tc.edit(&jr.Node)
				}
			})
			defer f.SetJoinEdit(nil)
			b := runBot(t, cfg(f.URL, "target"))
			first := b.waitIn(t, 20*time.Second)
			e := adversary.WaitRefused(t, c, m.ID, "de-fra", tc.code, 15*time.Second)
			pid := successor(t, c, m.ID, e.Participant)
			// Ready tells of the first connection the bot took: the one
			// that replaced the refused placement, even when the node was
			// reached (its signed welcome fails before any media
			// connection is made).
			if first != pid {
				t.Errorf("the bot was first in as %s, want %s (refused %s)", first, pid, e.Participant)
			}
			if on := placedOn(t, c, m.ID, pid); on != "fr-par" {
				t.Errorf("after refusing de-fra the bot is on %q", on)
			}
			testcluster.WaitFor(t, 10*time.Second, "the bot connected on fr-par", func() bool { return fr.Connected(pid) })
			if reached := de.Connected(e.Participant); reached != tc.proven {
				t.Errorf("de-fra saw the refused participant %s connect: %v", e.Participant, reached)
			}
			waitTraffic(t, c.API, m.ID, map[string]uint64{"de-fra": 0, "fr-par": 0}, mediaWhile, 20*time.Second)
			rep, err := b.stop()
			if err != nil {
				t.Fatalf("bot: %v", err)
			}
			wrep, err := witness.stop()
			if err != nil {
				t.Fatalf("witness: %v", err)
			}
			checkRefusals(t, rep, refusalWant{node: tc.named, code: tc.code})
			if rep.NodeCert == nil || rep.NodeCert.Node != "fr-par" || rep.NodeCert.Country != "FR" {
				t.Errorf("the bot ended on a node certified %+v", rep.NodeCert)
			}
			if v, a := framesFrom(wrep, e.Participant); v+a != 0 {
				t.Errorf("the witness received %d video and %d audio frames from the refused placement", v, a)
			}
			if v, _ := framesFrom(wrep, pid); v == 0 {
				t.Errorf("the witness received no video from the bot once it was on fr-par")
			}
			verifyAuditOf(t, c.API, m.ID)
		})
	}
}

// A policy the host did not sign changes nothing for a client, however the
// control plane presents it. With the store rewritten to allow CN, the
// front adds to the join answer a newer policy statement allowing CN that
// is not signed by the host key: the bot keeps to the host's own, refuses
// the CN node (node_not_allowed_by_policy) and counts the forgery. When
// the front swaps the host key itself for the forger's, the key does not
// match the link's fingerprint: the bot has no host policy, refuses every
// node it is given (no_host_policy) and gives up, and no node sees it.
func TestPolicyWithoutHostKeyIsRefused(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	de := adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	cn := adversary.StartNode(t, c, adversary.NodeSpec{ID: "cn-pek", Country: "CN", Region: "cn-north-1"})
	c.WaitHealthy(2)
	f := front(t, c)
	st := rewriter(t, c)
	_, forger, _ := ed25519.GenerateKey(nil)
	open, err := policy.Combine(policy.Policy{}, policy.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	// forged is a policy statement allowing everything, newer than the
	// host's, signed by the forger.
	forged := func(hs api.HostState) hoststmt.Statement {
		var seq uint64
		var enroll ed25519.PublicKey
		for _, s := range hs.Statements {
			if s.Kind == hoststmt.KindPolicy {
				seq, enroll = s.Seq, s.EnrollmentKey
			}
		}
		s := hoststmt.NewPolicy(seq+1, open, enroll)
		if err := s.Sign(forger); err != nil {
			t.Fatal(err)
		}
		return s
	}

	t.Run("forged statement", func(t *testing.T) {
		m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
		if err := st.RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
			t.Fatal(err)
		}
		f.SetJoinEdit(func(meeting string, jr *api.JoinResponse) {
			if meeting == m.ID {
				jr.Host.Statements = append(jr.Host.Statements, forged(jr.Host))
				jr.Host.PolicyHash = open.Hash()
			}
		})
		defer f.SetJoinEdit(nil)
		b := runBot(t, bot.Config{Server: f.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "cn", Country: "CN"})
		pid := b.waitIn(t, 20*time.Second)
		adversary.WaitRefused(t, c, m.ID, "cn-pek", api.CodeNodeNotAllowed, 15*time.Second)
		if on := placedOn(t, c, m.ID, pid); on != "de-fra" {
			t.Errorf("the bot is on %q", on)
		}
		rep, err := b.stop()
		if err != nil {
			t.Fatal(err)
		}
		checkRefusals(t, rep, refusalWant{node: "cn-pek", code: api.CodeNodeNotAllowed, mentions: "CN"})
		if rep.Host.Refused == 0 || !rep.Host.KeyChecked {
			t.Errorf("host view %+v: the forged statement was not refused", rep.Host)
		}
	})
	noConnections(t, cn)

	t.Run("host key swapped", func(t *testing.T) {
		m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN"}})
		if err := st.RewritePolicy(ctx, m.ID, adversary.Unblock("CN")); err != nil {
			t.Fatal(err)
		}
		f.SetJoinEdit(func(meeting string, jr *api.JoinResponse) {
			if meeting == m.ID {
				jr.Host.Key = forger.Public().(ed25519.PublicKey)
				jr.Host.Statements = []hoststmt.Statement{forged(jr.Host)}
				jr.Host.PolicyHash = open.Hash()
			}
		})
		defer f.SetJoinEdit(nil)
		b := runBot(t, bot.Config{Server: f.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "cn", Country: "CN"})
		_, err := b.ended(t, 30*time.Second)
		var r *client.RefusalError
		if !errors.As(err, &r) || r.Code != api.CodeNoHostPolicy {
			t.Fatalf("the bot ended with %v, want it to give up refusing with %s", err, api.CodeNoHostPolicy)
		}
		// The refusal that makes it give up is carried by no join: the
		// others are audited.
		refused := adversary.RefusedEntries(t, c, m.ID)
		if len(refused) != client.MaxRefusals-1 {
			t.Errorf("%d refusals audited, want %d", len(refused), client.MaxRefusals-1)
		}
		for _, e := range refused {
			if !strings.HasPrefix(e.Reason, api.CodeNoHostPolicy) {
				t.Errorf("refusal %+v", e)
			}
		}
		for _, n := range []*adversary.Node{de, cn} {
			for _, e := range n.Log.Find(adversary.Match("participant connected", "meeting", m.ID)) {
				t.Errorf("node %s: %s", n.ID, e)
			}
		}
		verifyAuditOf(t, c.API, m.ID)
	})
}

// A host-signed change is followed by the client itself: the host blocks
// Germany while a bot is on de-fra, whose signaling is a lying front that
// passes the host's statement on but withholds every move message. The
// bot checks its node against the new statement, refuses it
// (node_not_allowed_by_policy, audited) and moves to fr-par well before
// the control plane's move deadline would have cut it off.
func TestHostSignedChangeIsFollowed(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	fr := adversary.StartNode(t, c, adversary.NodeSpec{ID: "fr-par", Country: "FR", Region: "eu-west-3"})
	l := startLiar(t, c, testcluster.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	c.WaitHealthy(2)
	var hostSeen, movesWithheld atomic.Int32
	l.setCensor(func(_ string, msg signal.Message) (signal.Message, bool) {
		switch msg.Type {
		case signal.TypeMove:
			movesWithheld.Add(1)
			return msg, false
		case signal.TypeHost:
			hostSeen.Add(1)
		}
		return msg, true
	})
	m := c.CreateMeeting(policy.Policy{})
	b := runBot(t, bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "de", Country: "DE"})
	pid := b.waitIn(t, 20*time.Second)
	if on := placedOn(t, c, m.ID, pid); on != "de-fra" {
		t.Fatalf("placed on %q", on)
	}
	changed := time.Now()
	if _, err := c.Host(m.ID).SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"DE"}}); err != nil {
		t.Fatal(err)
	}
	e := adversary.WaitRefused(t, c, m.ID, "de-fra", api.CodeNodeNotAllowed, 15*time.Second)
	if e.Participant != pid || e.NodeCountry != "DE" {
		t.Errorf("refusal %+v", e)
	}
	// The control plane would cut the bot off the move deadline after it
	// ordered the move (audited as a migration asking it to leave); the
	// refusal, as audited, must come before. Both times are the control
	// plane's, so how long this test took to see the refusal does not
	// count.
	ordered := changed
	if a, err := c.API.Audit(ctx, m.ID); err == nil {
		for _, x := range a.Entries {
			if x.Kind == audit.KindMigration && x.Participant == pid && strings.Contains(x.Reason, "asked to leave") {
				ordered = x.Time
				break
			}
		}
	}
	if took := e.Time.Sub(ordered); took >= c.Timing.MoveDeadline {
		t.Errorf("the bot moved by itself only %s after the move was ordered (move deadline %s)", took, c.Timing.MoveDeadline)
	}
	next := successor(t, c, m.ID, pid)
	if on := placedOn(t, c, m.ID, next); on != "fr-par" {
		t.Errorf("the bot moved to %q", on)
	}
	testcluster.WaitFor(t, 10*time.Second, "the bot connected on fr-par", func() bool { return fr.Connected(next) })
	rep, err := b.stop()
	if err != nil {
		t.Fatal(err)
	}
	checkRefusals(t, rep, refusalWant{node: "de-fra", code: api.CodeNodeNotAllowed, mentions: "DE"})
	if hostSeen.Load() == 0 {
		t.Errorf("the node passed on no host statement (moves withheld: %d)", movesWithheld.Load())
	}
}

// A relay link is opened only to a peer the host-signed policy allows,
// whatever the relay token says. The host blocks CN and RU; the store
// rewritten behind its back allows them, so the control plane places
// participants of its own (which check nothing but carry the host's genuine
// statement to their node) on cn-pek and ru-mow, and orders relay links
// between them and de-fra, where an honest bot is. de-fra refuses both,
// accepting (cn-pek dials it) and dialling (it dials ru-mow), with
// relay_not_allowed_by_host naming the peer and its country; no link ever
// connects.
func TestRelayToBlockedPeerIsRefused(t *testing.T) {
	ctx := context.Background()
	c := testcluster.Start(t, policy.Policy{}, nil)
	de := adversary.StartNode(t, c, adversary.NodeSpec{ID: "de-fra", Country: "DE", Region: "eu-central-1"})
	cn := adversary.StartNode(t, c, adversary.NodeSpec{ID: "cn-pek", Country: "CN", Region: "cn-north-1"})
	ru := adversary.StartNode(t, c, adversary.NodeSpec{ID: "ru-mow", Country: "RU", Region: "ru-central1"})
	c.WaitHealthy(3)
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN", "RU"}})
	honest := runBot(t, bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(t, m), Name: "de", Country: "DE"})
	honest.waitIn(t, 20*time.Second)
	if err := rewriter(t, c).RewritePolicy(ctx, m.ID, adversary.Unblock("CN", "RU")); err != nil {
		t.Fatal(err)
	}
	for _, country := range []string{"CN", "RU"} {
		in, err := adversary.Intrude(ctx, adversary.IntruderConfig{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, Name: "intruder-" + country, Country: country})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(in.Close)
		if want := strings.ToLower(country); !strings.HasPrefix(in.Join.Node.ID, want) {
			t.Fatalf("intruder from %s placed on %s: the rewrite did not take", country, in.Join.Node.ID)
		}
	}
	refusedBy := func(n *adversary.Node, peer, country string) func() bool {
		return func() bool {
			for _, e := range n.Log.Find(adversary.Match("", "code", "relay_not_allowed_by_host")) {
				if strings.Contains(e.Attrs["reason"], peer) && strings.Contains(e.Attrs["reason"], country) {
					return true
				}
			}
			return false
		}
	}
	connected := func() string {
		rv, err := c.API.Routing(ctx, m.ID)
		if err != nil {
			return ""
		}
		for _, r := range rv.Relays {
			if r.Connected {
				return fmt.Sprintf("%s <-> %s", r.From.ID, r.To.ID)
			}
		}
		return ""
	}
	// The control plane orders each link again every RelayResend: wait for
	// both refusals, and the ordered links' audit, checking all along that
	// no link connects.
	var link string
	testcluster.WaitFor(t, 20*time.Second, "de-fra refusing cn-pek and ru-mow, or a link connecting", func() bool {
		if link = connected(); link != "" {
			return true
		}
		return refusedBy(de, "cn-pek", "CN")() && refusedBy(de, "ru-mow", "RU")()
	})
	if link != "" {
		t.Fatalf("relay link %s connected", link)
	}
	a, err := c.API.Audit(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	ordered := 0
	for _, e := range a.Entries {
		if e.Kind == audit.KindRelay {
			ordered++
		}
	}
	if ordered == 0 {
		t.Errorf("the control plane never ordered a relay: the test tested nothing")
	}
	for _, n := range []*adversary.Node{cn, ru} {
		for _, e := range n.Log.Find(adversary.Match("relay link up")) {
			t.Errorf("node %s: %s", n.ID, e)
		}
	}
	if rep, err := honest.stop(); err != nil {
		t.Errorf("honest bot: %v", err)
	} else {
		checkRefusals(t, rep)
	}
	if l := connected(); l != "" {
		t.Errorf("relay link %s connected", l)
	}
}
