package main

import (
	"errors"
	"flag"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/control"
)

// limitSettings are serve's --limit* flags as parsed; get gives the
// control plane's limits. A flag not given keeps control.DefaultLimits'.
type limitSettings struct {
	off bool
	l   control.Limits
}

// limitFlags registers the --limit* flags on fs (so also their config-file
// lines, "limit-join = 30/m,burst=10").
func limitFlags(fs *flag.FlagSet) *limitSettings {
	ls := &limitSettings{}
	d := control.DefaultLimits()
	rates := []struct {
		name, what string
		r          *control.Rate
		def        control.Rate
	}{
		{"limit-create", "meeting creations", &ls.l.Create, d.Create},
		{"limit-join", "joins", &ls.l.Join, d.Join},
		{"limit-preview", "policy previews", &ls.l.Preview, d.Preview},
		{"limit-audit", "audit reads (every /api/audit route)", &ls.l.Audit, d.Audit},
	}
	for _, r := range rates {
		fs.Func(r.name, fmt.Sprintf("%s per client address: N/s, N/m or N/h, optionally ,burst=B (default %s), or off", r.what, r.def),
			func(v string) (err error) {
				*r.r, err = parseRate(v)
				return err
			})
	}
	fs.Func("limit-pending-seats-per-meeting", fmt.Sprintf("seats of one meeting held by joins not yet connected, or off (default %d)", d.PendingSeatsPerMeeting),
		func(v string) (err error) {
			ls.l.PendingSeatsPerMeeting, err = parseCap(v)
			return err
		})
	fs.Func("limit-pending-seats-per-address", fmt.Sprintf("seats held by one client address's joins not yet connected, or off (default %d)", d.PendingSeatsPerAddress),
		func(v string) (err error) {
			ls.l.PendingSeatsPerAddress, err = parseCap(v)
			return err
		})
	fs.Func("limit-pending-seats-per-meeting-address", fmt.Sprintf("seats of one meeting held by one client address's joins not yet connected, or off (default %d)", d.PendingSeatsPerMeetingAddress),
		func(v string) (err error) {
			ls.l.PendingSeatsPerMeetingAddress, err = parseCap(v)
			return err
		})
	fs.Func("limit-pending-hold", fmt.Sprintf("how long a placed participant that has not connected keeps its seat, or off (the token's lifetime; default %s)", d.PendingHold),
		func(v string) error {
			if v == "off" {
				ls.l.PendingHold = -1
				return nil
			}
			h, err := time.ParseDuration(v)
			if err != nil || h <= 0 {
				return errors.New("want a positive duration such as 10s, or off")
			}
			ls.l.PendingHold = h
			return nil
		})
	fs.Func("limits", "off: no rate limits, seat caps or pending hold at all (load tests on a trusted network); on (default): the --limit-* flags",
		func(v string) error {
			switch v {
			case "on":
				ls.off = false
			case "off":
				ls.off = true
			default:
				return errors.New("want on or off")
			}
			return nil
		})
	return ls
}

// get is the control plane's limits.
func (ls *limitSettings) get() control.Limits {
	if ls == nil {
		return control.Limits{}
	}
	if ls.off {
		return control.NoLimits()
	}
	return ls.l
}

// parseRate reads "N/s", "N/m" or "N/h", optionally followed by
// ",burst=B", or "off". Without a burst, one unit's worth may come at once.
func parseRate(v string) (control.Rate, error) {
	v = strings.TrimSpace(v)
	if v == "off" {
		return control.Rate{PerMinute: -1}, nil
	}
	spec, burstText, hasBurst := strings.Cut(v, ",")
	num, unit, ok := strings.Cut(spec, "/")
	if !ok {
		return control.Rate{}, fmt.Errorf("%q: want N/s, N/m or N/h, optionally ,burst=B, or off", v)
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
	if err != nil || !(n > 0) || n > 1e9 {
		return control.Rate{}, fmt.Errorf("%q: the count must be a number above 0", v)
	}
	var perMinute float64
	switch strings.TrimSpace(unit) {
	case "s":
		perMinute = n * 60
	case "m":
		perMinute = n
	case "h":
		perMinute = n / 60
	default:
		return control.Rate{}, fmt.Errorf("%q: the unit must be s, m or h", v)
	}
	burst := max(1, int(n))
	if hasBurst {
		key, val, ok := strings.Cut(strings.TrimSpace(burstText), "=")
		b, err := strconv.Atoi(strings.TrimSpace(val))
		if !ok || strings.TrimSpace(key) != "burst" || err != nil || b < 1 || b > 1e9 {
			return control.Rate{}, fmt.Errorf("%q: after the comma want burst=B with B a whole number above 0", v)
		}
		burst = b
	}
	return control.Rate{PerMinute: perMinute, Burst: burst}, nil
}

// parseCap reads a positive whole number or "off".
func parseCap(v string) (int, error) {
	if v = strings.TrimSpace(v); v == "off" {
		return -1, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("want a whole number above 0, or off")
	}
	return n, nil
}
