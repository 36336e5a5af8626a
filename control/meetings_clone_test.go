package control

import (
	"context"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

// fullMeeting has every field of meeting set, so that a field added
// later without its place in clone fails TestMeetingCloneSharesNothing.
func fullMeeting() *meeting {
	now := time.Unix(1700000000, 0).UTC()
	p := policy.Policy{BlockedCountries: []string{"RU"}, BlockedRegions: []string{"asia"}, AllowedCountries: []string{"DE"}}
	return &meeting{
		ID: "m1", Title: "t", Policy: p, HostTokenHash: "h", Created: now,
		Participants:   []participant{{ID: "p1", Name: "Ann", Connected: &now, Identity: []byte{1}}},
		PolicyHistory:  []api.PolicyChange{{At: now, Policy: p, Effective: p, Hash: "x"}},
		Traffic:        map[string]*traffic{"de-fra": {Bytes: 1, Country: "DE"}},
		JoinSecretHash: "s", HostKey: []byte{2}, Locked: true, Lobby: true,
		Host: hostRecord{Policy: &hoststmt.Statement{Kind: hoststmt.KindPolicy}, Settings: &hoststmt.Statement{Kind: hoststmt.KindSettings},
			Removals: []hoststmt.Statement{{Kind: hoststmt.KindRemove}}, Seq: map[string]uint64{hoststmt.KindPolicy: 1}},
		Tickets: []lobbyTicket{{Ticket: "t1", Name: "Bob"}},
		Removed: []removal{{Participant: "p0", Identities: [][]byte{{3}}, At: now}},
		Folded:  map[string]*api.NodeUsage{"de-fra": {Node: "de-fra", Participants: 1}}, FoldedCount: 1,
	}
}

func TestMeetingCloneSharesNothing(t *testing.T) {
	m := fullMeeting()
	v := reflect.ValueOf(*m)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Fatalf("fullMeeting leaves %s unset: set it, and copy it in clone if an update can change it in place", v.Type().Field(i).Name)
		}
	}
	before, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	c := m.clone()
	if after, _ := json.Marshal(c); string(after) != string(before) {
		t.Fatalf("clone differs:\n%s\n%s", after, before)
	}
	// What updates do to a meeting, done to the copy.
	c.Policy.BlockedCountries[0] = "CN"
	c.Participants[0].Name = "Eve"
	c.Participants = append(c.Participants[:1], participant{ID: "p2"})
	c.PolicyHistory[0].Policy.AllowedCountries[0] = "FR"
	c.PolicyHistory[0].Effective.BlockedRegions[0] = "europe"
	c.Traffic["de-fra"].Bytes = 99
	c.Traffic["us-iad"] = &traffic{}
	c.HostKey[0] = 9
	c.Host.Removals[0].Participant = "x"
	c.Host.Seq[hoststmt.KindPolicy] = 7
	c.Tickets[0].Decision = hoststmt.KindAdmit
	c.Removed[0].Identities[0] = []byte{4}
	c.Folded["de-fra"].Participants = 5
	if after, _ := json.Marshal(m); string(after) != string(before) {
		t.Fatalf("changing the clone changed the original:\n%s\n%s", after, before)
	}
}

// An update that starts from the previous update's write, while another
// writer has stored the meeting since, conflicts and applies its change
// to what the other writer stored.
func TestMeetingUpdateAfterAnotherWriter(t *testing.T) {
	env := newLogEnv(t)
	ctx := context.Background()
	ms := newMeetings(env.st)
	if err := ms.create(ctx, &meeting{ID: "m1", Title: "t"}); err != nil {
		t.Fatal(err)
	}
	names := func(m *meeting) (out []string) {
		for _, p := range m.Participants {
			out = append(out, p.ID)
		}
		return out
	}
	var firstSeen []string
	calls := 0
	done := make(chan error, 1)
	_, _, err := ms.update(ctx, "m1", func(m *meeting) error {
		// A second update waits for the lock meanwhile, so it starts
		// from this one's write.
		go func() {
			_, _, err := ms.update(ctx, "m1", func(m *meeting) error {
				calls++
				if calls == 1 {
					firstSeen = names(m)
					// Another writer stores the meeting first.
					rec, err := env.st.Meeting(ctx, "m1")
					if err != nil {
						return err
					}
					var other meeting
					if err := json.Unmarshal(rec.Value, &other); err != nil {
						return err
					}
					other.Participants = append(other.Participants, participant{ID: "x"})
					data, _ := json.Marshal(&other)
					if _, err := env.st.UpdateMeeting(ctx, "m1", data, rec.Revision); err != nil {
						return err
					}
				}
				m.Participants = append(m.Participants, participant{ID: "b"})
				return nil
			})
			done <- err
		}()
		deadline := time.Now().Add(5 * time.Second)
		for {
			ms.mu.Lock()
			waiting := ms.locks["m1"].refs == 2
			ms.mu.Unlock()
			if waiting {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("second update never waited for the lock")
			}
			time.Sleep(time.Millisecond) // polling a condition, not timing
		}
		m.Participants = append(m.Participants, participant{ID: "a"})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	m, _, err := ms.get(ctx, "m1")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(m); !reflect.DeepEqual(got, []string{"a", "x", "b"}) || calls != 2 || !reflect.DeepEqual(firstSeen, []string{"a"}) {
		t.Fatalf("stored %v after %d calls (first saw %v), want [a x b] after 2", got, calls, firstSeen)
	}
	// A read sees another writer's value, not the one held decoded.
	m.Participants = append(m.Participants, participant{ID: "y"})
	data, _ := json.Marshal(m)
	_, rev, _ := ms.get(ctx, "m1")
	if _, err := env.st.UpdateMeeting(ctx, "m1", data, rev); err != nil {
		t.Fatal(err)
	}
	if m, _, err := ms.get(ctx, "m1"); err != nil || !reflect.DeepEqual(names(m), []string{"a", "x", "b", "y"}) {
		t.Fatalf("read after another writer: %v, %v", names(m), err)
	}
	// A value read is the caller's: changing it changes nothing held.
	m, _, _ = ms.get(ctx, "m1")
	m.Participants[0].ID = "changed"
	if m, _, _ := ms.get(ctx, "m1"); m.Participants[0].ID != "a" {
		t.Fatalf("a read's change reached the next read: %v", names(m))
	}
}
