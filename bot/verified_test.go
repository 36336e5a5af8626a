package bot_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A bot placed by a misplacing control plane on a node the host's signed
// policy blocks refuses it, reports the refusal, and ends up on an allowed
// node whose certificate it reports; the refusal is audited.
func TestBotRefusesAMisplacedNode(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"DE"}})
	adversary.Misplace(t, c, m.ID, policy.Policy{})
	rep, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID),
		Country: "DE", Duration: 2 * time.Second, LoopbackOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Node.ID != "us-iad" || rep.NodeCert == nil || rep.NodeCert.Node != "us-iad" || rep.NodeCert.Country != "US" {
		t.Fatalf("ended on %+v, cert %+v", rep.Node, rep.NodeCert)
	}
	if len(rep.Refusals) != 1 || rep.Refusals[0].Node != "de-fra" || rep.Refusals[0].Code != api.CodeNodeNotAllowed || !strings.Contains(rep.Refusals[0].Message, "(DE)") {
		t.Fatalf("refusals %+v", rep.Refusals)
	}
	if len(rep.People) != 1 || rep.People[0].Node.Status != client.NodeVerified || rep.People[0].Node.ID != "us-iad" {
		t.Fatalf("people %+v", rep.People)
	}
	a, err := c.API.Audit(context.Background(), m.ID)
	if err != nil {
		t.Fatal(err)
	}
	var refused []audit.Entry
	for _, e := range a.Entries {
		if e.Kind == audit.KindNodeRefused {
			refused = append(refused, e)
		}
	}
	if len(refused) != 1 || refused[0].Node != "de-fra" || refused[0].NodeCountry != "DE" {
		t.Fatalf("audited %+v", refused)
	}

	// Where every node breaks the host's policy, the bot gives up with the
	// last refusal and a report of them all, having sent nothing.
	all := c.CreateMeeting(policy.Policy{AllowedCountries: []string{"FR"}})
	adversary.Misplace(t, c, all.ID, policy.Policy{})
	rep, err = bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: all.ID, Secret: all.JoinSecret, HostFingerprint: fingerprint(c, all.ID),
		Country: "DE", Duration: 2 * time.Second, LoopbackOnly: true})
	if r, ok := client.AsRefusal(err); !ok || r.Code != api.CodeNodeNotAllowed {
		t.Fatalf("bot in a meeting with no allowed node: %v", err)
	}
	if rep == nil || len(rep.Refusals) != client.MaxRefusals || rep.NodeCert != nil || rep.Sent.VideoFrames != 0 {
		t.Fatalf("report %+v", rep)
	}
}

// Without the host key's fingerprint there is nothing to check a node
// against: the bot refuses before joining.
func TestBotWithoutHostFingerprintRefuses(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	_, err := bot.Run(context.Background(), bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, Duration: time.Second, LoopbackOnly: true})
	if r, ok := client.AsRefusal(err); !ok || r.Code != api.CodeNoHostPolicy {
		t.Fatalf("got %v", err)
	}
}

// Two bots on two nodes, linked by a relay: each verified its own node
// and sees the other's, from the other's signed node message, verified
// against its own host-signed policy.
func TestBotsSeeEachOthersNodeVerified(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"CN", "RU"}})
	var mu sync.Mutex
	members := map[string]*group.Member{}
	reports := make([]*bot.Report, 2)
	errs := make([]error, 2)
	stops := make([]context.CancelFunc, 2)
	dones := make([]chan struct{}, 2)
	for i, country := range []string{"DE", "US"} {
		var ctx context.Context
		ctx, stops[i] = context.WithCancel(context.Background())
		dones[i] = make(chan struct{})
		go func() {
			defer close(dones[i])
			reports[i], errs[i] = bot.Run(ctx, bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: fingerprint(c, m.ID),
				Name: "bot-" + country, Country: country, LoopbackOnly: true, NoPublish: true,
				OnKeys: func(pid string, gm *group.Member) {
					mu.Lock()
					members[pid] = gm
					mu.Unlock()
				}})
		}()
	}
	defer func() {
		for i := range stops {
			stops[i]()
			<-dones[i]
		}
	}()
	testcluster.WaitFor(t, 30*time.Second, "each bot to hold the other's node message, both in the keys", func() bool {
		mu.Lock()
		defer mu.Unlock()
		if len(members) != 2 {
			return false
		}
		for _, gm := range members {
			n := 0
			for _, p := range gm.People() {
				if p.NodeCert != "" && p.InKeys && p.Heard {
					n++
				}
			}
			if n != 2 {
				return false
			}
		}
		return true
	})
	// One after the other: the first to leave reports the other still
	// there.
	for i := range stops {
		stops[i]()
		<-dones[i]
		if errs[i] != nil {
			t.Fatalf("bot %d: %v", i, errs[i])
		}
	}
	nodes := map[string]string{}
	for _, r := range reports {
		nodes[r.ParticipantID] = r.Node.ID
	}
	if nodes[reports[0].ParticipantID] != "de-fra" || nodes[reports[1].ParticipantID] != "us-iad" {
		t.Fatalf("placed on %v", nodes)
	}
	for i, r := range reports {
		if r.NodeCert == nil || r.NodeCert.Node != r.Node.ID {
			t.Errorf("bot %d: node cert %+v on %s", i, r.NodeCert, r.Node.ID)
		}
		if i == 1 {
			break // the other left before its report was made
		}
		if len(r.People) != 2 {
			t.Fatalf("bot %d: people %+v", i, r.People)
		}
		for _, p := range r.People {
			if p.Node.Status != client.NodeVerified || p.Node.ID != nodes[p.ParticipantID] || len(p.Flags) != 0 {
				t.Errorf("bot %d: %s on %+v (flags %q), want verified on %s", i, p.ParticipantID, p.Node, p.Flags, nodes[p.ParticipantID])
			}
		}
	}
}
