package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"time"

	"github.com/oakmeet/oakmeet/audit"
)

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "export" && args[0] != "verify") {
		fmt.Fprintln(stderr, "Usage:\n  oakmeet audit export --server URL [--meeting ID] [--out FILE]\n  oakmeet audit verify [--public-key KEY] FILE")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return nil
		}
		return errUsage
	}
	if args[0] == "export" {
		return auditExport(ctx, args[1:], stdout, stderr)
	}
	return auditVerify(args[1:], stdout, stderr)
}

func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "control plane URL")
	meeting := fs.String("meeting", "", "export only this meeting's chain")
	out := fs.String("out", "", "write to this file instead of standard output")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	path := "/api/audit/export"
	if *meeting != "" {
		path += "?meeting=" + url.QueryEscape(*meeting)
	}
	// The whole log, however long: a cut-off export would fail to verify.
	body, err := apiGet(ctx, *server, path, time.Minute, math.MaxInt64)
	if err != nil {
		return fmt.Errorf("fetch audit log: %w", err)
	}
	if *out == "" {
		_, err = stdout.Write(body)
		return err
	}
	if err := writeFileAtomic(*out, body); err != nil {
		return err
	}
	n := bytes.Count(body, []byte("\n")) - 2
	fmt.Fprintf(stderr, "wrote %d entries to %s\n", max(n, 0), *out)
	return nil
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	wantKey := fs.String("public-key", "", "require the log to be signed by this key (base64, as GET /api/config shows)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "Usage: oakmeet audit verify [--public-key KEY] FILE   (FILE - reads standard input)")
		return errUsage
	}
	var r io.Reader = os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		defer f.Close()
		r = f
	}
	sum, err := audit.VerifyExport(r)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return exitError(1)
	}
	key := b64(sum.PublicKey)
	if *wantKey != "" && *wantKey != key {
		fmt.Fprintf(stdout, "FAILED: signed by %s, not by the expected key %s\n", key, *wantKey)
		return exitError(1)
	}
	fmt.Fprintf(stdout, "ok: %d entries in %d chain(s) verify, signed by %s\n", sum.Entries, sum.Chains, key)
	return nil
}

func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return errors.Join(err, os.Remove(tmp))
	}
	return nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
