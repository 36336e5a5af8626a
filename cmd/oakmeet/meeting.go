package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

func runMeeting(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		fmt.Fprintln(stderr, "Usage: oakmeet meeting create --host-key FILE [--title T] [--lobby] [--block CC,…] [--block-region R,…] [--allow CC,…]")
		return errUsage
	}
	fs := flag.NewFlagSet("meeting create", flag.ContinueOnError)
	var (
		server  = fs.String("server", "http://127.0.0.1:8080", "control plane URL")
		title   = fs.String("title", "", "the meeting's title")
		lobby   = fs.Bool("lobby", false, "start with the lobby on: every join waits for the host")
		block   = fs.String("block", "", "countries the meeting's traffic must never pass through (comma-separated ISO codes or groups)")
		regions = fs.String("block-region", "", "regions the meeting's traffic must never pass through (comma-separated)")
		allow   = fs.String("allow", "", "the only countries the meeting's traffic may pass through (comma-separated)")
		keyFile = fs.String("host-key", "", "file to write the new host key to (required; keep it secret: it is the host's authority)")
		asJSON  = fs.Bool("json", false, "print the answer as JSON")
		_       = fs.String("config", "", "config file of 'flag = value' lines")
	)
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if *keyFile == "" {
		return errors.New("--host-key FILE is required: the host key is made here and saved there")
	}
	if _, err := os.Stat(*keyFile); err == nil {
		return fmt.Errorf("--host-key %s exists: the key of another meeting? Name a new file", *keyFile)
	}
	p := policy.Policy{BlockedCountries: csv(*block), BlockedRegions: csv(*regions), AllowedCountries: csv(*allow)}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	created, host, err := apiclient.New(*server, nil).CreateHosted(ctx, api.CreateRequest{Title: *title, Policy: p, Lobby: *lobby})
	if err != nil {
		return apiFailure(err)
	}
	// Written only once the meeting exists, and never over another file:
	// a host key overwritten is a meeting lost.
	if err := writeNew(*keyFile, hoststmt.MarshalKey(host.Key)); err != nil {
		return fmt.Errorf("meeting %s created, but its host key could not be saved: %w", created.ID, err)
	}
	if *asJSON {
		return printIndented(stdout, created)
	}
	fmt.Fprintf(stdout, "meeting %s created; host key saved in %s\n", created.ID, *keyFile)
	fmt.Fprintf(stdout, "join_url %s\n", created.JoinURL)
	fmt.Fprintf(stdout, "host_url %s\n", created.HostURL)
	fmt.Fprintln(stdout, "Share the join link; keep the host link and the host key to yourself.")
	return nil
}

func csv(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// writeNew writes a secret to a file that must not exist yet.
func writeNew(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
