package main

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

const hostUsage = "Usage: oakmeet host --link HOST_URL --host-key FILE [--block CC,…] [--block-region R,…] [--allow CC,…] lock|unlock|lobby on|off|list|admit TICKET|deny TICKET|remove PID|policy"

func runHost(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("host", flag.ContinueOnError)
	var (
		link     = fs.String("link", "", "the host link (with &host=…) that `meeting create` printed")
		keyFile  = fs.String("host-key", "", "the meeting's host key file")
		identity = fs.String("identity", "", "with remove: the participant's identity key (base64), when known")
		asJSON   = fs.Bool("json", false, "print answers as JSON")
		block    = fs.String("block", "", "with policy: countries the meeting's traffic must never pass through (comma-separated)")
		regions  = fs.String("block-region", "", "with policy: regions the meeting's traffic must never pass through (comma-separated)")
		allow    = fs.String("allow", "", "with policy: the only countries the meeting's traffic may pass through (comma-separated)")
		_        = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	action := fs.Args()
	if len(action) == 0 {
		fmt.Fprintln(stderr, hostUsage)
		return errUsage
	}
	h, err := loadHost(*link, *keyFile)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	arg := func() (string, error) {
		if len(action) != 2 || action[1] == "" {
			return "", fmt.Errorf("%s needs one argument\n%s", action[0], hostUsage)
		}
		return action[1], nil
	}
	switch action[0] {
	case "lock", "unlock":
		return settings(ctx, stdout, h, func(m *api.Meeting) { m.Locked = action[0] == "lock" })
	case "lobby":
		v, err := arg()
		if err != nil {
			return err
		}
		if v == "list" {
			return lobbyList(ctx, stdout, h, *asJSON)
		}
		if v != "on" && v != "off" {
			return fmt.Errorf("lobby %q: want on, off or list", v)
		}
		return settings(ctx, stdout, h, func(m *api.Meeting) { m.Lobby = v == "on" })
	case "list":
		return lobbyList(ctx, stdout, h, *asJSON)
	case "admit", "deny":
		t, err := arg()
		if err != nil {
			return err
		}
		return decide(ctx, stdout, h, t, action[0] == "admit")
	case "policy":
		// The host signs the new policy under the meeting's enrollment
		// key only: this process takes it from the meeting's current
		// policy statement, verified with the host key, and refuses a
		// preview naming another.
		p := policy.Policy{BlockedCountries: csv(*block), BlockedRegions: csv(*regions), AllowedCountries: csv(*allow)}
		var m api.Meeting
		if err := again(func() (err error) { m, err = h.SetPolicy(ctx, p); return err }); err != nil {
			if ae := (*api.Error)(nil); errors.As(err, &ae) {
				return apiFailure(err)
			}
			return fmt.Errorf("policy: %w", err)
		}
		if *asJSON {
			return printIndented(stdout, m)
		}
		fmt.Fprintf(stdout, "meeting %s: policy %s in force\n", m.ID, m.PolicyHash)
		return nil
	case "remove":
		pid, err := arg()
		if err != nil {
			return err
		}
		var id []byte
		if *identity != "" {
			if id, err = base64.StdEncoding.DecodeString(*identity); err != nil || len(id) != ed25519.PublicKeySize {
				return fmt.Errorf("--identity: want a 32-byte key in base64")
			}
		}
		if err := again(func() error { return h.Remove(ctx, pid, id) }); err != nil {
			return apiFailure(err)
		}
		fmt.Fprintf(stdout, "removed %s: it is disconnected and every member that holds the removal leaves it out of the next keys\n", pid)
		if id == nil {
			fmt.Fprintln(stdout, "without --identity the members cut this participant id only: the same client joining again under a new id is held back by the control plane's lobby alone (the bot's --json report lists identities under people)")
		}
		return nil
	}
	return fmt.Errorf("unknown host action %q\n%s", action[0], hostUsage)
}

// loadHost reads the host link and key, and checks that the key is the
// one the link's fingerprint names: a host key of another meeting would
// sign statements no member accepts.
func loadHost(link, keyFile string) (*apiclient.Host, error) {
	if link == "" || keyFile == "" {
		return nil, errors.New("--link HOST_URL and --host-key FILE are required")
	}
	l, err := api.ParseLink(link)
	if err != nil {
		return nil, err
	}
	if l.HostToken == "" {
		return nil, errors.New("--link: this is a join link; host actions need the host link (…&host=…)")
	}
	text, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, err
	}
	key, err := hoststmt.ParseKey(text)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	if err := hoststmt.CheckKey(key.Public().(ed25519.PublicKey), l.HostFingerprint); err != nil {
		return nil, fmt.Errorf("%s is not this meeting's host key: %w", keyFile, err)
	}
	return apiclient.NewHost(apiclient.New(l.Server, nil), l.Meeting, l.HostToken, key), nil
}

// settings changes one setting and keeps the other as the meeting has it.
func settings(ctx context.Context, stdout io.Writer, h *apiclient.Host, change func(*api.Meeting)) error {
	m, err := h.Client.Meeting(ctx, h.Meeting)
	if err != nil {
		return apiFailure(err)
	}
	change(&m)
	// The wanted values are kept apart from the answer: a first try that
	// fails answers a zero meeting, and the retry must not sign that.
	locked, lobby := m.Locked, m.Lobby
	if err = again(func() (err error) { m, err = h.SetSettings(ctx, locked, lobby); return err }); err != nil {
		return apiFailure(err)
	}
	fmt.Fprintf(stdout, "meeting %s: locked %v, lobby %v\n", m.ID, m.Locked, m.Lobby)
	return nil
}

func lobbyList(ctx context.Context, stdout io.Writer, h *apiclient.Host, asJSON bool) error {
	l, err := h.Lobby(ctx)
	if err != nil {
		return apiFailure(err)
	}
	if asJSON {
		return printIndented(stdout, l)
	}
	if len(l.Waiting) == 0 {
		fmt.Fprintln(stdout, "nobody is waiting in the lobby")
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TICKET\tNAME\tFROM\tWAITING SINCE\tNOTE")
	for _, e := range l.Waiting {
		note := ""
		if e.Removed {
			note = "removed from this meeting before"
		}
		fmt.Fprintf(tw, "%s\t%q\t%s\t%s\t%s\n", e.Ticket, e.Name, e.Location.Country, e.Since.Format(time.TimeOnly), note)
	}
	return tw.Flush()
}

// decide admits or denies a lobby entry, signing the name the lobby shows
// for it.
func decide(ctx context.Context, stdout io.Writer, h *apiclient.Host, ticket string, admit bool) error {
	l, err := h.Lobby(ctx)
	if err != nil {
		return apiFailure(err)
	}
	for _, e := range l.Waiting {
		if e.Ticket != ticket {
			continue
		}
		verb, act := "admitted", h.Admit
		if !admit {
			verb, act = "denied", h.Deny
		}
		if err := again(func() error { return act(ctx, ticket, e.Name) }); err != nil {
			return apiFailure(err)
		}
		fmt.Fprintf(stdout, "%s %q (%s)\n", verb, e.Name, ticket)
		return nil
	}
	return fmt.Errorf("nobody waits in the lobby with ticket %s ('oakmeet host … lobby list' shows who does)", ticket)
}

// again runs a host action and, if the control plane finds its seq not
// after the last statement of its kind, once more: a statement's seq is
// the clock in milliseconds, and one command run just after another may
// sign in the same millisecond. The Host signs the second try with a
// greater seq.
func again(act func() error) error {
	err := act()
	var ae *api.Error
	if errors.As(err, &ae) && ae.Code == api.CodeBadStatement {
		err = act()
	}
	return err
}
