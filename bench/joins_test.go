package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bench"
	"github.com/oakmeet/oakmeet/placement"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A join load against a node with room for fewer than the joins offered:
// every join is answered, the placed ones count as joined, the rest as
// refusals by their code, and each of them is in an audit log that still
// verifies.
func TestJoinLoadCountsPlacementsAndRefusals(t *testing.T) {
	const seats, offered, meetings = 40, 160, 4
	c := testcluster.Start(t, policy.Policy{}, []testcluster.NodeSpec{{ID: "de-fra", Country: "DE", Max: seats}})
	res, err := bench.RunJoins(context.Background(), bench.JoinConfig{
		Server: c.URL, JoinsPerSecond: 800, Duration: offered * time.Second / 800, Meetings: meetings, Country: "DE",
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Offered != offered || res.Succeeded != seats || res.Errors != 0 {
		t.Fatalf("offered %d, joined %d, errors %d %v; want %d, %d, 0", res.Offered, res.Succeeded, res.Errors, res.ErrorSamples, offered, seats)
	}
	if len(res.Refusals) != 1 || res.Refusals[placement.CodeNoCapacity] != offered-seats {
		t.Fatalf("refusals %v, want %d %s", res.Refusals, offered-seats, placement.CodeNoCapacity)
	}
	l := res.JoinLatencyMs
	if l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max {
		t.Errorf("latency %+v", l)
	}
	if res.Meetings != meetings || res.TargetJoinsPerSecond != 800 || res.JoinsPerSecond <= 0 || res.DurationS <= 0 {
		t.Errorf("result %+v", res)
	}
	if res.Late > res.Offered || (res.Late > 0) != !res.ScheduleKept() {
		t.Errorf("late %d of %d, schedule kept %v", res.Late, res.Offered, res.ScheduleKept())
	}
	// The JSON names are the command's interface.
	data, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"joins_per_second", "join_latency_ms", "refusals", "errors", "offered", "duration_s"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, data)
		}
	}
	for _, k := range []string{"p50", "p95", "p99", "max"} {
		if _, ok := m["join_latency_ms"].(map[string]any)[k]; !ok {
			t.Errorf("join_latency_ms lacks %q: %s", k, data)
		}
	}

	// Every placement and refusal is in the log, which verifies whole.
	var export bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.API.WithBearer(c.OperatorToken()).AuditExport(ctx, "", &export); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(bytes.NewReader(export.Bytes()), audit.VerifyOptions{TrustFileKey: true}); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	x, err := audit.ReadExport(bytes.NewReader(export.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range x.Entries {
		kinds[e.Kind]++
	}
	if kinds[audit.KindPlacement] != seats || kinds[audit.KindRefusal] != offered-seats {
		t.Errorf("log holds %v, want %d placements and %d refusals", kinds, seats, offered-seats)
	}
}

func TestJoinLoadRejectsBadConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  bench.JoinConfig
		want string
	}{
		{bench.JoinConfig{Duration: time.Second}, "joins per second"},
		{bench.JoinConfig{JoinsPerSecond: -1, Duration: time.Second}, "joins per second"},
		{bench.JoinConfig{JoinsPerSecond: 10}, "duration"},
		{bench.JoinConfig{JoinsPerSecond: 10, Duration: time.Second, Meetings: -1}, "meetings"},
		{bench.JoinConfig{JoinsPerSecond: 10, Duration: time.Second, Concurrency: -2}, "concurrency"},
		{bench.JoinConfig{JoinsPerSecond: 1, Duration: time.Millisecond}, "not one join"},
	} {
		tc.cfg.Server = "http://127.0.0.1:1"
		if _, err := bench.RunJoins(context.Background(), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one about %q", tc.cfg, err, tc.want)
		}
	}
	if _, err := bench.RunJoins(context.Background(), bench.JoinConfig{Server: "http://127.0.0.1:1", JoinsPerSecond: 10, Duration: time.Second}); err == nil {
		t.Fatal("unreachable server accepted")
	}
}
