package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/control"
)

func TestLimitFlags(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "oakmeet.conf")
	if err := os.WriteFile(conf, []byte("limit-preview = 2/h,burst=7\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d := control.DefaultLimits()
	for _, tc := range []struct {
		args []string
		want func(*control.Limits)
	}{
		{nil, func(*control.Limits) {}},
		{[]string{"--limit-join", "5/s"}, func(l *control.Limits) { l.Join = control.Rate{PerMinute: 300, Burst: 5} }},
		{[]string{"--limit-create", "3/m,burst=1"}, func(l *control.Limits) { l.Create = control.Rate{PerMinute: 3, Burst: 1} }},
		{[]string{"--limit-audit", "off"}, func(l *control.Limits) { l.Audit = control.Rate{PerMinute: -1} }},
		{[]string{"--config", conf}, func(l *control.Limits) { l.Preview = control.Rate{PerMinute: 2.0 / 60, Burst: 7} }},
		{[]string{"--limit-pending-seats-per-meeting", "8", "--limit-pending-seats-per-address", "off", "--limit-pending-hold", "3s"}, func(l *control.Limits) {
			l.PendingSeatsPerMeeting, l.PendingSeatsPerAddress, l.PendingHold = 8, -1, 3*time.Second
		}},
		{[]string{"--limit-pending-seats-per-meeting-address", "2"}, func(l *control.Limits) { l.PendingSeatsPerMeetingAddress = 2 }},
	} {
		st, _, _, err := parseServe(append([]string{"--data", dir}, tc.args...), io.Discard)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		// What the flags do not set keeps the default: the control
		// plane fills zero fields from DefaultLimits.
		got, want := st.limits.get(), control.Limits{}
		tc.want(&want)
		if got != want {
			t.Errorf("%v: limits %+v; want %+v (on top of %+v)", tc.args, got, want, d)
		}
	}
	st, _, _, err := parseServe([]string{"--data", dir, "--limit-join", "5/s", "--limits", "off"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.limits.get(); got != control.NoLimits() {
		t.Fatalf("--limits off: %+v; want NoLimits", got)
	}
}

func TestLimitFlagErrorsAreClear(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		flag, value, why string
	}{
		{"--limit-join", "5", "want N/s, N/m or N/h"},
		{"--limit-join", "5/d", "the unit must be s, m or h"},
		{"--limit-create", "0/m", "the count must be a number above 0"},
		{"--limit-create", "-3/m", "the count must be a number above 0"},
		{"--limit-create", "NaN/m", "the count must be a number above 0"},
		{"--limit-preview", "3/m,burst=0", "burst=B with B a whole number above 0"},
		{"--limit-preview", "3/m,bust=4", "burst=B"},
		{"--limit-audit", "3/m,burst=x", "burst=B"},
		{"--limit-pending-seats-per-meeting", "0", "a whole number above 0, or off"},
		{"--limit-pending-seats-per-address", "many", "a whole number above 0, or off"},
		{"--limit-pending-hold", "-1s", "a positive duration"},
		{"--limits", "maybe", "want on or off"},
	} {
		var errOut strings.Builder
		_, _, _, err := parseServe([]string{"--data", dir, tc.flag, tc.value}, &errOut)
		if err == nil || !strings.Contains(errOut.String(), tc.why) || !strings.Contains(errOut.String(), tc.flag[2:]) {
			t.Errorf("%s %s: %v, %q; want an error naming the flag and saying %q", tc.flag, tc.value, err, firstLine(errOut.String()), tc.why)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
