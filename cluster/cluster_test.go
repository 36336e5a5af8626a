package cluster

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestValidNodeID(t *testing.T) {
	for _, ok := range []string{"de-fra-1", "N_1", "a"} {
		if err := ValidNodeID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a.b", "a b", "a*", "ä", string(make([]byte, 65))} {
		if err := ValidNodeID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDecode(t *testing.T) {
	hb, err := Decode[Heartbeat]("heartbeat", []byte(`{"node":{"id":"x","country":"DE"},"load":{"participants":3}}`))
	if err != nil || hb.Node.ID != "x" || hb.Load.Participants != 3 {
		t.Fatalf("got %+v, %v", hb, err)
	}
	if _, err := Decode[Heartbeat]("heartbeat", []byte(`{`)); err == nil {
		t.Fatal("malformed accepted")
	}
}

func TestAuditSubject(t *testing.T) {
	if AuditSubject("") == AuditSubject("_") {
		t.Fatal("deployment chain collides with a meeting chain")
	}
}

func TestTimingDefaultsAndScale(t *testing.T) {
	d := DefaultTiming()
	if got := (Timing{}).WithDefaults(); got != d {
		t.Fatalf("zero timing with defaults = %+v, want %+v", got, d)
	}
	custom := Timing{HeartbeatInterval: 7}
	if got := custom.WithDefaults(); got.HeartbeatInterval != 7 || got.HeartbeatTimeout != d.HeartbeatTimeout {
		t.Fatalf("WithDefaults replaced a set field or left a zero one: %+v", got)
	}
	f := d.Scaled(10)
	if f.HeartbeatInterval != d.HeartbeatInterval/10 || f.MoveDeadline != d.MoveDeadline/10 || f.TrafficEvery != d.TrafficEvery/10 {
		t.Fatalf("Scaled(10) = %+v", f)
	}
	if tiny := d.Scaled(1e12); tiny.HeartbeatInterval <= 0 {
		t.Fatalf("Scaled to nothing: %+v", tiny)
	}
}

func TestTimingForHeartbeat(t *testing.T) {
	d := DefaultTiming()
	if got, err := TimingForHeartbeat(d.HeartbeatInterval); err != nil || got != d {
		t.Fatalf("the default interval gives %+v, %v; want the defaults", got, err)
	}
	got, err := TimingForHeartbeat(100 * time.Millisecond)
	if err != nil || got.HeartbeatInterval != 100*time.Millisecond || got.HeartbeatTimeout != 300*time.Millisecond || got.MoveDeadline != 500*time.Millisecond {
		t.Fatalf("100ms gives %+v, %v", got, err)
	}
	for _, bad := range []time.Duration{0, -time.Second, time.Millisecond, 2 * time.Minute} {
		if _, err := TimingForHeartbeat(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

func TestDecodeEvent(t *testing.T) {
	ok := `{"kind":"disconnected","node":"de-1","meeting":"m1","participant":"p1","reason":%s}`
	for _, c := range []struct{ reason, want string }{
		{`"removed"`, "removed"},
		{`"join interrupted"`, "join interrupted"},
		{`"` + strings.Repeat("<", 200) + `"`, UnreadableReason},
		{`"` + strings.Repeat("a", MaxEventReason+1) + `"`, UnreadableReason},
		{`"` + strings.Repeat("a", MaxEventReason) + `"`, strings.Repeat("a", MaxEventReason)},
		{`"bye\n"`, UnreadableReason},
		{`"tschüss"`, UnreadableReason},
	} {
		ev, err := DecodeEvent([]byte(fmt.Sprintf(ok, c.reason)))
		if err != nil {
			t.Fatalf("%s: %v", c.reason, err)
		}
		if ev.Reason != c.want {
			t.Errorf("reason %s decoded as %q, want %q", c.reason, ev.Reason, c.want)
		}
	}
	for _, bad := range []string{
		`{"kind":"joined","node":"de-1","meeting":"m1","participant":"p1"}`,
		`{"kind":"connected","node":"de.1","meeting":"m1","participant":"p1"}`,
		`{"kind":"connected","node":"de-1","meeting":"m.1","participant":"p1"}`,
		`{"kind":"connected","node":"de-1","meeting":"m1","participant":""}`,
		`{"kind":"connected","node":"de-1","meeting":"m1","participant":"p1","reason":"` + strings.Repeat("a", MaxEventBytes) + `"}`,
		`not json`,
	} {
		if _, err := DecodeEvent([]byte(bad)); err == nil {
			t.Errorf("%.80s accepted", bad)
		}
	}
}
