package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
)

// Without --server the join load runs against a deployment of its own,
// with room for every join and without limits: every join is placed.
func TestBenchJoinsInProcess(t *testing.T) {
	var out, errOut strings.Builder
	code := run(context.Background(), []string{"bench", "--joins-per-second", "100", "--duration", "1s", "--meetings", "3", "--json"}, &out, &errOut)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var res struct {
		Offered        int            `json:"offered"`
		Succeeded      int            `json:"succeeded"`
		JoinsPerSecond float64        `json:"joins_per_second"`
		Refusals       map[string]int `json:"refusals"`
		Errors         int            `json:"errors"`
		Latency        struct {
			P50, P99 float64
		} `json:"join_latency_ms"`
	}
	if err := json.Unmarshal([]byte(out.String()), &res); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if res.Offered != 100 || res.Succeeded != 100 || res.Errors != 0 || len(res.Refusals) != 0 || res.JoinsPerSecond <= 0 || res.Latency.P99 < res.Latency.P50 {
		t.Fatalf("result %s", out.String())
	}
}

func TestBenchJoinsRejectsProfileWithServer(t *testing.T) {
	var out, errOut strings.Builder
	code := run(context.Background(), []string{"bench", "--joins-per-second", "10", "--server", "http://127.0.0.1:1", "--profile", t.TempDir()}, &out, &errOut)
	if code == 0 || !strings.Contains(errOut.String(), "--profile") {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
}

func TestBenchRefusesFlagsThatWouldBeIgnored(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fps", "15"}, "--fps sets the rate of --video-frame-bytes"},
		{[]string{"--ramp", "5,10", "--subscribers", "3"}, "not with --subscribers"},
		{[]string{"--ramp", "5,x"}, `"x" is not a subscriber count`},
		{[]string{"--video-frame-bytes", "10"}, "video frame bytes 10"},
		{[]string{"--audio=false", "--video=false"}, "send nothing"},
	} {
		var out, errOut strings.Builder
		// An unreachable server: each is refused before anything is asked.
		code := run(context.Background(), append([]string{"bench", "--server", "http://127.0.0.1:1"}, tc.args...), &out, &errOut)
		if code == 0 || !strings.Contains(errOut.String(), tc.want) {
			t.Errorf("%v: exit %d: %s", tc.args, code, errOut.String())
		}
	}
}
