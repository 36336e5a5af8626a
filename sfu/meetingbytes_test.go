package sfu

import (
	"fmt"
	"maps"
	"sync"
	"testing"
)

func newTestSFU(t *testing.T, endedReports int) *SFU {
	t.Helper()
	s, err := New(Config{LoopbackOnly: true, EndedMeetingReports: endedReports, Key: testKey()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestMeetingBytesListsLiveMeetingsThenEndedOnesAFewTimes(t *testing.T) {
	s := newTestSFU(t, 3)
	r := s.attach("m1")
	r.bytes.Add(100)
	if got := s.attach("m1"); got != r {
		t.Fatal("a second attach started another room")
	}
	// A live meeting is listed in every report, however many there are.
	for i := range 5 {
		if got := s.MeetingBytes(); !maps.Equal(got, map[string]uint64{"m1": 100}) {
			t.Fatalf("report %d while live: %v", i, got)
		}
	}
	s.detach(r)
	if got := s.MeetingBytes()["m1"]; got != 100 {
		t.Fatalf("with one of two attached gone: %d, want 100", got)
	}

	s.detach(r)
	// A packet already on its way when the room closed still counts.
	r.bytes.Add(5)
	for i := range 3 {
		if got := s.MeetingBytes(); !maps.Equal(got, map[string]uint64{"m1": 105}) {
			t.Fatalf("report %d after the room closed: %v, want the final count 105", i, got)
		}
	}
	for i := range 3 {
		if got := s.MeetingBytes(); len(got) != 0 {
			t.Fatalf("report %d after the final count was reported 3 times: %v", i, got)
		}
	}

	// Once forgotten, a meeting that comes back counts from zero.
	r2 := s.attach("m1")
	if r2 == r || r2.bytes == r.bytes {
		t.Fatal("a forgotten meeting came back with its old room or counter")
	}
	r2.bytes.Add(7)
	if got := s.MeetingBytes()["m1"]; got != 7 {
		t.Fatalf("meeting back after it was forgotten: %d, want 7", got)
	}
	s.detach(r2)
}

func TestMeetingBackBeforeItsFinalCountIsForgottenKeepsCounting(t *testing.T) {
	s := newTestSFU(t, 3)
	r := s.attach("m1")
	r.bytes.Add(100)
	s.detach(r)
	if got := s.MeetingBytes()["m1"]; got != 100 {
		t.Fatalf("final count %d, want 100", got)
	}
	r2 := s.attach("m1")
	r2.bytes.Add(10)
	// Live again: listed in every report, the count carried on rather than
	// gone down, which would read as a node restart.
	for i := range 5 {
		if got := s.MeetingBytes()["m1"]; got != 110 {
			t.Fatalf("report %d after the meeting came back: %d, want 110", i, got)
		}
	}
	s.detach(r2)
	for range 3 {
		if got := s.MeetingBytes()["m1"]; got != 110 {
			t.Fatalf("final count %d, want 110", got)
		}
	}
	if got := s.MeetingBytes(); len(got) != 0 {
		t.Fatalf("after the final reports: %v", got)
	}
}

func TestMeetingBytesStayBoundedOverManyMeetings(t *testing.T) {
	const reports, perReport = 3, 10
	s := newTestSFU(t, reports)
	for i := range 1000 {
		r := s.attach(fmt.Sprintf("m%d", i))
		r.bytes.Add(uint64(i + 1))
		s.detach(r)
		if i%perReport == perReport-1 {
			got := s.MeetingBytes()
			// Only the meetings that ended within the last few reports.
			if len(got) > reports*perReport {
				t.Fatalf("after %d meetings a report lists %d", i+1, len(got))
			}
			if got[fmt.Sprintf("m%d", i)] != uint64(i+1) {
				t.Fatalf("the meeting that just ended is missing: %v", got)
			}
		}
	}
	for range reports {
		s.MeetingBytes()
	}
	s.mu.Lock()
	rooms, ended := len(s.rooms), len(s.ended)
	s.mu.Unlock()
	if rooms != 0 || ended != 0 {
		t.Fatalf("after every meeting ended and was reported: %d rooms, %d counters kept", rooms, ended)
	}
	if got := s.MeetingBytes(); len(got) != 0 {
		t.Fatalf("report after everything was forgotten: %v", got)
	}
}

func TestMeetingBytesWhileRoomsComeAndGo(t *testing.T) {
	s := newTestSFU(t, 3)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				r := s.attach(fmt.Sprintf("m%d", (w*200+i)%7))
				r.bytes.Add(1)
				s.detach(r)
			}
		})
	}
	wg.Go(func() {
		for range 200 {
			s.MeetingBytes()
		}
	})
	wg.Wait()
	for range 3 {
		s.MeetingBytes()
	}
	if got := s.MeetingBytes(); len(got) != 0 {
		t.Fatalf("after every room closed and was reported: %v", got)
	}
}
