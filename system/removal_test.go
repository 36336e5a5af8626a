package system

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pion/interceptor"
	"github.com/pion/rtp"

	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
	"github.com/oakmeet/oakmeet/stamp"
	"github.com/oakmeet/oakmeet/testcluster"
)

// tap keeps a copy of every audio frame (one Opus packet, one SFrame
// ciphertext) a node receives, with when it arrived: what a node that
// keeps forwarding to a removed participant could hand it.
type tap struct {
	mu     sync.Mutex
	frames []tapped
}

type tapped struct {
	at      time.Time
	payload []byte
}

func (tp *tap) NewInterceptor(string) (interceptor.Interceptor, error) {
	return &tapInterceptor{tp: tp}, nil
}

type tapInterceptor struct {
	interceptor.NoOp
	tp *tap
}

func (i *tapInterceptor) BindRemoteStream(info *interceptor.StreamInfo, r interceptor.RTPReader) interceptor.RTPReader {
	if !strings.EqualFold(info.MimeType, "audio/opus") {
		return r
	}
	return interceptor.RTPReaderFunc(func(b []byte, a interceptor.Attributes) (int, interceptor.Attributes, error) {
		n, a, err := r.Read(b, a)
		var p rtp.Packet
		if err == nil && p.Unmarshal(b[:n]) == nil && len(p.Payload) > 0 {
			i.tp.mu.Lock()
			i.tp.frames = append(i.tp.frames, tapped{at: time.Now(), payload: append([]byte(nil), p.Payload...)})
			i.tp.mu.Unlock()
		}
		return n, a, err
	})
}

// since is every frame that arrived after t.
func (tp *tap) since(t time.Time) (before, after [][]byte) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, f := range tp.frames {
		if f.at.After(t) {
			after = append(after, f.payload)
		} else {
			before = append(before, f.payload)
		}
	}
	return before, after
}

// The host removes a participant: every member leaves it out of the next
// epoch at once, so a node that goes on listing it to everyone and handing
// it every frame gives it nothing it can decrypt. A removal the node forges (signed by another
// key than the host's) is ignored by every member.
func TestRemovedParticipantDecryptsNothingNewAndForgedRemovalIsIgnored(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	tp := &tap{}
	lie := startLiar(t, c, testcluster.NodeSpec{ID: "de-liar", Country: "DE", Region: "eu-central-1", Interceptors: []interceptor.Factory{tp}})
	c.WaitHealthy(1)
	m := hostedMeeting(t, c)
	keys := newKeyHolder()
	cfg := func(name string, publish bool) bot.Config {
		return keys.watch(bot.Config{Server: c.URL, Meeting: m.ID, Secret: m.JoinSecret, HostFingerprint: m.fingerprint,
			Name: name, Country: "DE", LoopbackOnly: true, NoPublish: !publish, Linger: 200 * time.Millisecond})
	}
	// When each honest bot has taken the removal into its keys.
	var removedMu sync.Mutex
	applied := map[string]time.Time{}
	honest := func(c bot.Config) bot.Config {
		name := c.Name
		c.OnHost = func(r client.HostReport) {
			removedMu.Lock()
			defer removedMu.Unlock()
			if _, ok := applied[name]; !ok && len(r.Removed) > 0 {
				applied[name] = time.Now()
			}
		}
		return c
	}
	stopA := startBots(t, honest(cfg("a", true)))
	testcluster.WaitFor(t, 15*time.Second, "a in", func() bool { _, id := keys.member("a"); return id != "" })
	stopB := startBots(t, honest(cfg("b", true)))
	type result struct {
		rep *bot.Report
		err error
	}
	xDone := make(chan result, 1)
	xCtx, stopX := context.WithCancel(context.Background())
	defer stopX()
	go func() {
		rep, err := bot.Run(xCtx, cfg("x", false))
		xDone <- result{rep, err}
	}()
	testcluster.WaitFor(t, 20*time.Second, "a, b and x keyed together", func() bool { return keys.sendsWith("a", "b", "x") })
	xm, xid := keys.member("x")
	_, bid := keys.member("b")
	xp, _ := keys.person("a", xid)
	// x takes in a while of media under the keys it holds: the tap then
	// has frames of those keys for the check below, however fast the
	// senders take the removal.
	_, recv := xm.MediaStats()
	testcluster.WaitFor(t, 10*time.Second, "x receives media under the shared keys", func() bool {
		_, now := xm.MediaStats()
		return now.Passed >= recv.Passed+40
	})

	// The node forges a removal of b with a key of its own making.
	forger, _ := hoststmt.GenerateKey()
	forged := hoststmt.Statement{Kind: hoststmt.KindRemove, Seq: uint64(time.Now().UnixMilli()), Participant: bid}
	if err := forged.Sign(forger); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(forged)
	lie.inject(signal.Message{Type: signal.TypeHost, Payload: raw})

	// The node keeps x listed: nobody is told it left. Only the host's
	// signed removal can cut it from the keys.
	lie.setCensor(func(to string, msg signal.Message) (signal.Message, bool) {
		return msg, msg.Type != signal.TypeParticipantLeft || msg.Participant.ID != xid
	})
	// The host removes x, naming its identity key as the host's client
	// sees it in the signed roster.
	if err := m.host.Remove(context.Background(), xid, xp.Identity); err != nil {
		t.Fatalf("remove x: %v", err)
	}
	var xr result
	select {
	case xr = <-xDone:
	case <-time.After(20 * time.Second):
		t.Fatal("x was not disconnected")
	}
	removedAt := time.Now()
	if !errors.Is(xr.err, bot.ErrRemoved) || xr.rep == nil || xr.rep.Ended != "removed" {
		t.Fatalf("x ended with %v, report %+v", xr.err, xr.rep)
	}
	testcluster.WaitFor(t, 10*time.Second, "a and b keyed without x", func() bool { return keys.sendsWith("a", "b") })
	for _, n := range []string{"a", "b"} {
		// Still listed by the lying node, but removed and out of the keys.
		if p, _ := keys.person(n, xid); !p.Removed || !p.Listed || p.InKeys || p.Pending {
			t.Errorf("%s's view of x: %+v", n, p)
		}
	}
	// The forged removal of b changed nothing: b was never cut.
	if p, _ := keys.person("a", bid); p.Removed || !p.InKeys {
		t.Errorf("a's view of b after the forged removal: %+v", p)
	}
	mark := nodeBytes(c.API, m.ID)["de-liar"]
	waitTraffic(t, c.API, m.ID, map[string]uint64{"de-liar": mark}, 2*mediaWhile, 20*time.Second)
	repB := stopB()[0]
	repA := stopA()[0]

	// x's keys open the frames sent before its removal that it had not
	// received when it was cut off (the tap works; those it received live
	// are refused as replays), and none sent after both senders had taken
	// the removal into their keys: the send time is stamped inside each
	// frame, so what x opens says when it was sent.
	removedMu.Lock()
	cut := applied["a"]
	if applied["b"].After(cut) {
		cut = applied["b"]
	}
	removedMu.Unlock()
	if applied["a"].IsZero() || applied["b"].IsZero() {
		t.Fatalf("the senders did not take the removal: %v", applied)
	}
	_, after := tp.since(cut)
	all, _ := tp.since(time.Now())
	opened, late, replays := 0, 0, 0
	for _, f := range all {
		plain, err := xm.Unprotect(nil, mediaframe.Opus, f)
		if errors.Is(err, sframe.ErrReplay) {
			replays++ // under a key x holds, received live
		}
		if err != nil {
			continue
		}
		opened++
		if sent, ok := stamp.ReadOpus(plain); !ok || !sent.Before(cut) {
			late++
		}
	}
	// The tap must hold frames under x's keys, or the check shows nothing:
	// frames in flight when x was cut off open, and those x received live
	// are refused as replays of a key it holds. (When both senders took
	// the removal before x's connection closed, nothing was in flight, so
	// only the replays are there.)
	if opened == 0 && replays == 0 {
		t.Errorf("x's keys know none of %d frames, not even those sent before its removal: the check shows nothing", len(all))
	}
	if len(after) < 50 {
		t.Fatalf("only %d frames arrived after the removal", len(after))
	}
	if late != 0 {
		t.Errorf("x's keys opened %d frames sent after the removal was in both senders' keys (%d arrived after it)", late, len(after))
	}
	t.Logf("x opened %d frames, all sent before the removal (and knew the key of %d more it had received); %d arrived after it, %s after x was disconnected",
		opened, replays, len(after), cut.Sub(removedAt).Round(time.Millisecond))
	for _, rep := range []*bot.Report{repA, repB} {
		if rep == nil {
			t.Fatal("a bot did not report")
		}
		if rep.Host.Refused == 0 || !rep.Host.KeyChecked || len(rep.Host.Removed) != 1 || rep.Host.Removed[0] != xid {
			t.Errorf("%s's host view: %+v", rep.ParticipantID, rep.Host)
		}
	}
	if v, a := framesFrom(repA, bid); v == 0 || a == 0 {
		t.Errorf("a got %d video and %d audio frames from b after the forged removal", v, a)
	}
}
