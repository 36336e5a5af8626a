package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

func TestBotNeedsTheMeetingsSecret(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"bot", "--link", "http://127.0.0.1:1/m/abc"}, "no join secret"},
		{[]string{"bot", "--link", "http://127.0.0.1:1/x/abc#s=1"}, "is not /m/ID"},
		{[]string{"bot", "--meeting", "abc"}, "--secret is required"},
		{[]string{"bot", "--link", "http://127.0.0.1:1/m/abc#s=1", "--meeting", "abc"}, "give it alone"},
		{[]string{"bot"}, "--link or --meeting is required"},
		{[]string{"bot", "--link", "http://127.0.0.1:1/m/abc#s=1"}, "no_host_policy: the link names no host key"},
		{[]string{"bot", "--meeting", "abc", "--secret", "1"}, "no_host_policy"},
	} {
		if code, _, errOut := runCmd(tc.args...); code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// A bot joins by its link, holds the signed roster, and ends when the
// host removes it: its JSON report says "ended":"removed" and the command
// exits non-zero.
func TestBotRemovedByTheHostExitsNonZero(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	join, host, keyFile := createWithCLI(t, c)
	type result struct {
		code     int
		out, err string
	}
	done := make(chan result, 1)
	go func() {
		var out, errOut bytes.Buffer
		code := run(context.Background(), []string{"bot", "--link", join.String(), "--name", "Robo", "--duration", "60s", "--json"}, &out, &errOut)
		done <- result{code, out.String(), errOut.String()}
	}()
	routing := c.API.WithBearer(host.HostToken)
	var pid string
	testcluster.WaitFor(t, 20*time.Second, "the bot in the meeting", func() bool {
		rv, err := routing.Routing(context.Background(), join.Meeting)
		if err != nil || len(rv.Participants) != 1 {
			return false
		}
		pid = rv.Participants[0].ID
		return true
	})
	// A listener in the meeting, so the node forwards the bot's media
	// (the report counts what nodes forward).
	lctx, stopListener := context.WithCancel(context.Background())
	listened := make(chan *bot.Report, 1)
	go func() {
		rep, _ := bot.Run(lctx, bot.Config{Server: join.Server, Meeting: join.Meeting, Secret: join.Secret, HostFingerprint: join.HostFingerprint,
			Name: "Ear", NoPublish: true, LoopbackOnly: true})
		listened <- rep
	}()
	defer func() { stopListener(); <-listened }()
	// Removed while in the meeting, not on its way in: its media reaches
	// the node first.
	testcluster.WaitFor(t, 20*time.Second, "the bot's media on its node", func() bool {
		rep, err := routing.MeetingReport(context.Background(), join.Meeting)
		return err == nil && len(rep.Nodes) > 0 && rep.Nodes[0].Bytes > 0
	})
	if code, out, errOut := runCmd("host", "--link", host.String(), "--host-key", keyFile, "remove", pid); code != 0 {
		t.Fatalf("remove: %d %q %q", code, out, errOut)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the removed bot did not end")
	}
	var rep bot.Report
	if r.code == 0 || json.Unmarshal([]byte(strings.TrimSpace(r.out)), &rep) != nil {
		t.Fatalf("removed bot: %d %q %q", r.code, r.out, r.err)
	}
	if rep.Ended != "removed" || rep.ParticipantID != pid || !rep.Host.KeyChecked || !strings.Contains(r.err, "removed") {
		t.Fatalf("report %+v, stderr %q", rep, r.err)
	}
	// Itself and the listener, each on a node it checked.
	if len(rep.People) != 2 {
		t.Errorf("people %+v", rep.People)
	}
	for _, p := range rep.People {
		if p.Self != (p.Name == "Robo") || p.Node.Status != "verified" || p.Node.ID != "de-fra" || p.Node.Country != "DE" {
			t.Errorf("person %+v", p)
		}
	}
	if rep.NodeCert == nil || rep.NodeCert.Node != "de-fra" || rep.NodeCert.Country != "DE" || rep.Refusals == nil || len(rep.Refusals) != 0 {
		t.Errorf("node cert %+v, refusals %+v", rep.NodeCert, rep.Refusals)
	}
	if !strings.Contains(r.out, `"node_cert":{"node":"de-fra","country":"DE","region":"eu-central-1","serial":"`) || !strings.Contains(r.out, `"refusals":[]`) {
		t.Errorf("JSON report %s", r.out)
	}
}

// A bot the host turns away in the lobby exits non-zero with the reason.
func TestBotDeniedInTheLobbyExitsWithTheReason(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithLobbyWait(200*time.Millisecond))
	join, host, keyFile := createWithCLI(t, c, "--lobby")
	done := make(chan [2]string, 1)
	codes := make(chan int, 1)
	go func() {
		var out, errOut bytes.Buffer
		codes <- run(context.Background(), []string{"bot", "--link", join.String(), "--name", "Mallory", "--duration", "30s"}, &out, &errOut)
		done <- [2]string{out.String(), errOut.String()}
	}()
	var ticket string
	testcluster.WaitFor(t, 15*time.Second, "the bot in the lobby", func() bool {
		code, out, _ := runCmd("host", "--link", host.String(), "--host-key", keyFile, "--json", "lobby", "list")
		var l struct {
			Waiting []struct{ Ticket, Name string }
		}
		if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Waiting) != 1 || l.Waiting[0].Name != "Mallory" {
			return false
		}
		ticket = l.Waiting[0].Ticket
		return true
	})
	if code, out, errOut := runCmd("host", "--link", host.String(), "--host-key", keyFile, "deny", ticket); code != 0 {
		t.Fatalf("deny: %d %q %q", code, out, errOut)
	}
	select {
	case code := <-codes:
		outs := <-done
		if code != 1 || !strings.Contains(outs[1], "waiting in the lobby") || !strings.Contains(outs[1], "lobby_denied") {
			t.Fatalf("denied bot: %d %q", code, outs[1])
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the denied bot did not end")
	}
}
