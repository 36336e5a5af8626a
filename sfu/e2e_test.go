package sfu_test

import (
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

const (
	audio = webrtc.RTPCodecTypeAudio
	video = webrtc.RTPCodecTypeVideo
)

func TestThreeParticipantsReceiveEachOther(t *testing.T) {
	t.Parallel()
	srv := sfutest.Start(t, sfu.Config{})
	ids := []string{"alice", "bob", "carol"}
	ps := map[string]*participant{}
	for _, id := range ids {
		ps[id] = join(t, srv, "m1", id, client.Options{})
		ps[id].publish(mediaOpts{keyEvery: 30})
	}
	for _, rx := range ids {
		for _, tx := range ids {
			if rx == tx {
				continue
			}
			eventually(t, 15*time.Second, rx+" receives "+tx, func() bool {
				return ps[rx].recv.packets(tx, audio) >= 20 && ps[rx].recv.packets(tx, video) >= 20
			})
		}
		if n := ps[rx].recv.packets(rx, video) + ps[rx].recv.packets(rx, audio); n != 0 {
			t.Fatalf("%s received %d packets of its own tracks", rx, n)
		}
	}
	if got := srv.SFU.Participants("m1"); len(got) != 3 {
		t.Fatalf("Participants = %v, want 3", got)
	}
	l := srv.SFU.Load()
	if l.Participants != 3 || l.Meetings != 1 || l.TracksIn != 6 || l.TracksOut != 12 {
		t.Fatalf("Load = %+v, want 3 participants, 1 meeting, 6 tracks in, 12 out", l)
	}
	if srv.SFU.MeetingBytes()["m1"] == 0 {
		t.Fatal("no bytes counted for the meeting")
	}

	// Carol leaves: her tracks disappear everywhere.
	ps["carol"].close()
	for _, rx := range []string{"alice", "bob"} {
		eventually(t, 10*time.Second, rx+" sees carol's tracks removed", func() bool {
			a, _, _ := ps[rx].recv.stats("carol", audio)
			v, _, _ := ps[rx].recv.stats("carol", video)
			return a.removed && v.removed && a.ended && v.ended && ps[rx].recv.has(func(e client.Event) bool {
				return e.Type == client.EventParticipantLeft && e.Participant.ID == "carol"
			})
		})
	}
	eventually(t, 5*time.Second, "load without carol", func() bool {
		l := srv.SFU.Load()
		return l.Participants == 2 && l.TracksIn == 4 && l.TracksOut == 4
	})
	// Alice and Bob still hear each other.
	before := ps["alice"].recv.packets("bob", audio)
	eventually(t, 5*time.Second, "media keeps flowing", func() bool {
		return ps["alice"].recv.packets("bob", audio) > before+10
	})
	if err, ok := srv.Result("carol"); !ok || err != nil {
		t.Fatalf("Serve(carol) = %v, %v; want nil after a clean leave", err, ok)
	}
}
