package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
)

func runBot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The log, the join and lobby lines and the checkpoint file's errors
	// come from the bot's goroutines: one line at a time.
	stderr = &lineWriter{w: stderr}
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	var (
		server      = fs.String("server", "http://127.0.0.1:8080", "control plane URL (taken from --link when given)")
		link        = fs.String("link", "", "the meeting's join link, fragment included: https://HOST/m/ID#s=SECRET&h=FINGERPRINT")
		meeting     = fs.String("meeting", "", "meeting id (or --link)")
		secret      = fs.String("secret", "", "the meeting's join secret (with --meeting)")
		fingerprint = fs.String("host-fingerprint", "", "the host key's fingerprint (with --meeting; the link's #h=…)")
		name        = fs.String("name", "bot", "display name")
		country     = fs.String("country", "", "join from this country (where the deployment trusts client hints)")
		duration    = fs.Duration("duration", 0, "how long to stay (default: until interrupted)")
		screen      = fs.Bool("screen", false, "also publish a shared screen: a second video track declared as source \"screen\"")
		asJSON      = fs.Bool("json", false, "print one JSON object with the results on the last line")
		loopback    = fs.Bool("loopback", true, "media over 127.0.0.1 only (local deployments)")
		logLevel    = fs.String("log-level", "warn", "debug, info, warn or error")
		cpFile      = fs.String("checkpoints", "", "append each audit log checkpoint held to FILE; the checkpoints FILE already holds are held first, and the log must extend them")
		auditKey    = fs.String("audit-key", "", "the audit log's verifier key to insist on (name+hash+key, GET /api/config audit_verifier_key); default: the control plane's at the first join")
		caFile      = fs.String("ca", "", "CA certificates (PEM) the control plane's https:// and the nodes' wss:// are verified with (default: the system's)")
		_           = fs.String("config", "", "config file of 'flag = value' lines")
	)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: oakmeet bot --link LINK [flags]")
		fmt.Fprintln(fs.Output(), "\nExit status: 0 the bot stayed and left; 1 an error (join refused, no node it could accept, removed by the host);")
		fmt.Fprintf(fs.Output(), "%d the control plane's audit log is inconsistent (truncated, forked, rebuilt or re-signed): an ALARM line on standard error says how.\n\n", exitAuditAlarm)
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *link != "" {
		l, err := api.ParseLink(*link)
		if err != nil {
			return err
		}
		if *meeting != "" || *secret != "" || *fingerprint != "" {
			return errors.New("--link names the meeting, its secret and host fingerprint: give it alone")
		}
		*server, *meeting, *secret, *fingerprint = l.Server, l.Meeting, l.Secret, l.HostFingerprint
	}
	if *meeting == "" {
		return errors.New("--link or --meeting is required")
	}
	if *duration < 0 {
		return fmt.Errorf("--duration %s: must not be negative (0 stays until interrupted)", *duration)
	}
	if *secret == "" {
		return errors.New("--secret is required with --meeting (the join link's #s=…), or give --link")
	}
	if *fingerprint == "" {
		// Nothing could vouch for the routing policy: the bot would have
		// to take the control plane's word for where its media goes.
		return fmt.Errorf("%s: the link names no host key (no #h= fingerprint), so there is no host-signed policy to check the media node against; "+
			"use the meeting's full link, or give --host-fingerprint with --meeting", api.CodeNoHostPolicy)
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	hc, err := caFileClient("--ca", *caFile)
	if err != nil {
		return err
	}
	held, appendCheckpoint, closeFile, err := checkpointFile(*cpFile, stderr)
	if err != nil {
		return err
	}
	defer closeFile()
	rep, err := bot.Run(ctx, bot.Config{
		Server: *server, Meeting: *meeting, Secret: *secret, HostFingerprint: *fingerprint,
		Name: *name, Country: *country, Duration: *duration, LoopbackOnly: *loopback, Logger: log, Screen: *screen,
		AuditKey: *auditKey, Checkpoints: held, OnCheckpoint: appendCheckpoint, HTTPClient: hc,
		Ready: func(pid string) {
			fmt.Fprintf(stderr, "joined meeting %s as %s; publishing the test clips\n", *meeting, pid)
		},
		OnAuditState: func(s client.AuditStatus) {
			if s.State == client.AuditStale {
				fmt.Fprintf(stderr, "WARNING: the audit log could not be checked for a while (stale, not an alarm): %s\n", s.Reason)
			}
		},
		OnLobby: func(w api.LobbyWait) {
			fmt.Fprintf(stderr, "waiting in the lobby for the host to let you in (ticket %s)\n", w.Ticket)
		},
	})
	var ae *client.APIError
	if errors.As(err, &ae) {
		return fmt.Errorf("join refused: %s (%s)", ae.Message, ae.Code)
	}
	if r, ok := client.AsRefusal(err); ok {
		err = fmt.Errorf("no media sent: %s (%s)", r.Message, r.Code)
	}
	if rep == nil {
		return err
	}
	if *asJSON {
		if jerr := printJSON(stdout, rep); jerr != nil {
			return jerr
		}
	} else {
		printBotReport(stdout, rep)
	}
	if errors.Is(err, bot.ErrAuditAlarm) {
		fmt.Fprintf(stderr, "ALARM: %s: %s\n", bot.ErrAuditAlarm, rep.Audit.Reason)
		return exitError(exitAuditAlarm)
	}
	return err
}

// lineWriter serialises writes from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// exitAuditAlarm is the bot's exit status when the audit log contradicts
// itself or a checkpoint the bot held.
const exitAuditAlarm = 3

// checkpointFile reads the checkpoints a --checkpoints file holds and
// returns them with a function that appends each new one to the file. No
// file name: nothing held, nothing written.
func checkpointFile(path string, stderr io.Writer) ([][]byte, func([]byte), func(), error) {
	if path == "" {
		return nil, nil, func() {}, nil
	}
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil, fmt.Errorf("--checkpoints: %w", err)
	}
	held, err := audit.SplitCheckpoints(data)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--checkpoints %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("--checkpoints: %w", err)
	}
	write := func(signed []byte) {
		// A blank line between notes keeps the file readable; reading
		// it back skips it.
		if _, err := f.Write(append(append([]byte(nil), signed...), '\n')); err != nil {
			fmt.Fprintf(stderr, "oakmeet bot: --checkpoints %s: %v\n", path, err)
		}
	}
	return held, write, func() { _ = f.Close() }, nil
}

func printBotReport(w io.Writer, rep *bot.Report) {
	if rep.ParticipantID == "" { // it refused every node it was placed on
		for _, r := range rep.Refusals {
			fmt.Fprintf(w, "refused node %s: %s (%s)\n", r.Node, r.Message, r.Code)
		}
		return
	}
	fmt.Fprintf(w, "participant %s on node %s (%s %s); sent %d video and %d audio frames\n",
		rep.ParticipantID, rep.Node.ID, rep.Node.Country, rep.Node.Region, rep.Sent.VideoFrames, rep.Sent.AudioFrames)
	if rep.Sent.ScreenFrames > 0 {
		fmt.Fprintf(w, "sent %d frames of a shared screen\n", rep.Sent.ScreenFrames)
	}
	for _, r := range rep.Refusals {
		fmt.Fprintf(w, "refused node %s: %s (%s)\n", r.Node, r.Message, r.Code)
	}
	if c := rep.NodeCert; c != nil {
		fmt.Fprintf(w, "node %s verified by this bot: certified in %s %s (serial %s, valid until %s)\n",
			c.Node, c.Country, c.Region, c.Serial, c.NotAfter.Format(time.RFC3339))
	}
	fmt.Fprintf(w, "security code %s (epoch %d): compare it with everyone in the meeting\n", rep.SecurityCode, rep.Epoch)
	fmt.Fprintf(w, "audit log %s: %d checkpoints held, newest of %d entries; %d of this meeting's entries proved included\n",
		rep.Audit.State, len(rep.Checkpoints), rep.Audit.Size, rep.Audit.EntriesProved)
	if rep.Audit.Reason != "" {
		fmt.Fprintf(w, "  %s\n", rep.Audit.Reason)
	}
	if rep.Host.KeyError != "" {
		fmt.Fprintf(w, "WARNING: %s\n", rep.Host.KeyError)
	}
	if rep.Host.PolicyWarning != "" {
		fmt.Fprintf(w, "WARNING: %s\n", rep.Host.PolicyWarning)
	}
	fmt.Fprintln(w, "people (the signed roster this bot holds):")
	for _, p := range rep.People {
		line := fmt.Sprintf("  %-24s %q", p.ParticipantID, p.Name)
		if p.Self {
			line += " (you)"
		}
		line += "  node " + p.Node.Status
		if p.Node.ID != "" {
			line += fmt.Sprintf(" %s (%s)", p.Node.ID, p.Node.Country)
		}
		for _, f := range p.Flags {
			line += "  [" + f + "]"
		}
		fmt.Fprintln(w, line)
	}
	for _, t := range rep.Tracks {
		fmt.Fprintf(w, "  from %s %-5s %-12s %6d frames %7d packets %4d lost %4d undecryptable  latency p50 %.1f ms p95 %.1f ms\n",
			t.ParticipantID, t.Kind, t.Source, t.Frames, t.Packets, t.Lost, t.DecryptFailures, t.LatencyMs.P50, t.LatencyMs.P95)
	}
	if rep.Ended == client.ReasonRemoved {
		fmt.Fprintln(w, "the host removed this bot from the meeting")
	}
}

// printJSON writes v as one line of JSON.
func printJSON(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(data))
	return err
}
