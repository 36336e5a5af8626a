package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
)

// A meeting's record stays bounded however many joins come and go, and
// its report still counts every one of them: the attack was a holder of
// the link joining and leaving until the record passed the store's
// message limit, after which every update of the meeting failed.
func TestDepartedParticipantsAreFoldedAndStillReported(t *testing.T) {
	start := time.Unix(1700000000, 0).UTC()
	m := &meeting{ID: "m1"}
	live := participant{ID: "live", Node: api.PlacedNode{ID: "jp-tyo", Country: "JP"}}
	at := start
	live.Connected = &at
	m.Participants = append(m.Participants, live)
	const churn = 5000
	for i := range churn {
		joined, left := start.Add(time.Duration(i)*time.Second), start.Add(time.Duration(i)*time.Second+time.Minute)
		p := participant{ID: fmt.Sprintf("p%d", i), Name: "Mallory", Node: api.PlacedNode{ID: "de-fra", Country: "DE"}, Joined: joined, Left: &left, LeftReason: "left"}
		if i%2 == 0 {
			p.Connected = &joined // half never connected
		}
		m.Participants = append(m.Participants, p)
		m.foldDeparted(maxDeparted)
	}
	if got := len(m.Participants); got != maxDeparted+1 {
		t.Fatalf("record keeps %d participants, want %d (the live one and the last %d departed)", got, maxDeparted+1, maxDeparted)
	}
	if m.participant("live") == nil || m.participant(fmt.Sprintf("p%d", churn-1)) == nil {
		t.Fatal("folding dropped the live participant or the latest departure")
	}
	if data, _ := json.Marshal(m); len(data) > 256<<10 {
		t.Fatalf("record is %d bytes after %d joins", len(data), churn)
	}
	if got := len(m.Participants) + m.FoldedCount; got != churn+1 {
		t.Fatalf("participants counted %d, want %d", got, churn+1)
	}
	usage := nodeUsage(m, start.Add(2*time.Hour))
	var de *api.NodeUsage
	for i := range usage {
		if usage[i].Node == "de-fra" {
			de = &usage[i]
		}
	}
	if de == nil || de.Participants != churn/2 {
		t.Fatalf("de-fra usage %+v, want %d connected participants", de, churn/2)
	}
	if want := float64(churn / 2); de.ParticipantMinutes < want-0.001 || de.ParticipantMinutes > want+0.001 {
		t.Fatalf("de-fra participant minutes %v, want %v", de.ParticipantMinutes, want)
	}
	if de.From == nil || !de.From.Equal(start) || de.Until == nil || !de.Until.Equal(start.Add(time.Duration(churn-2)*time.Second+time.Minute)) {
		t.Fatalf("de-fra from %v until %v", de.From, de.Until)
	}
}

// A removed participant stays in the record however many others leave:
// its record is what turns its token away.
func TestRemovedParticipantsAreNotFolded(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	m := &meeting{ID: "m1", Participants: []participant{{ID: "gone", Left: &now, Removed: true}}}
	for i := range 2 * maxDeparted {
		m.Participants = append(m.Participants, participant{ID: fmt.Sprint(i), Left: &now})
		m.foldDeparted(maxDeparted)
	}
	if p := m.participant("gone"); p == nil || !p.Removed {
		t.Fatal("the removed participant was folded")
	}
}

// Joins held in the lobby are tickets in the meeting's one record: a few
// addresses holding the link could grow it past the store's limit. The
// lobby holds maxLobbyTickets; the next is told lobby_full, the record
// stays bounded, and a ticket's expiry makes room again.
func TestLobbyIsBoundedAndSaysSo(t *testing.T) {
	now := time.Unix(1700000000, 0).UTC()
	m := &meeting{ID: "m1", Lobby: true}
	for i := range maxLobbyTickets {
		m.pruneTickets(now)
		if a, err := admit(m, api.JoinRequest{}, fmt.Sprintf("guest %d", i), api.JoinLocation{}, now, false); err != nil || a.lobby == nil {
			t.Fatalf("join %d: %v, lobby %v", i, err, a.lobby)
		}
	}
	m.pruneTickets(now)
	_, err := admit(m, api.JoinRequest{}, "one more", api.JoinLocation{}, now, false)
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusServiceUnavailable || ae.Code != api.CodeLobbyFull {
		t.Fatalf("a join past the lobby's bound: %v", err)
	}
	if data, _ := json.Marshal(m); len(data) > 256<<10 {
		t.Fatalf("record is %d bytes with a full lobby", len(data))
	}
	// The host still comes in, and once tickets expire there is room.
	if a, err := admit(m, api.JoinRequest{}, "Host", api.JoinLocation{}, now, true); err != nil || a.lobby != nil {
		t.Fatalf("the host's join with a full lobby: %v, lobby %v", err, a.lobby)
	}
	later := now.Add(lobbyTicketTTL + time.Second)
	m.pruneTickets(later)
	if a, err := admit(m, api.JoinRequest{}, "later", api.JoinLocation{}, later, false); err != nil || a.lobby == nil {
		t.Fatalf("a join once the tickets expired: %v", err)
	}
}
