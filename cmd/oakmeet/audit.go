package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/oakmeet/oakmeet/apiclient"
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
	// The whole log, however long: a cut-off export would fail to verify.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl := apiclient.New(*server, nil)
	if *out == "" {
		if err := cl.AuditExport(ctx, *meeting, stdout); err != nil {
			return fmt.Errorf("fetch audit log: %w", apiFailure(err))
		}
		return nil
	}
	lines, err := exportToFile(ctx, cl, *meeting, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %d entries to %s\n", max(lines-2, 0), *out) // less header and trailer
	return nil
}

// exportToFile streams the export into a temporary file beside path and
// renames it into place once whole, so path never holds part of a log. It
// returns the number of lines written.
func exportToFile(ctx context.Context, cl *apiclient.Client, meeting, path string) (int, error) {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return 0, err
	}
	lc := &lineCounter{w: f}
	err = cl.AuditExport(ctx, meeting, lc)
	if err != nil {
		err = fmt.Errorf("fetch audit log: %w", apiFailure(err))
	}
	err = errors.Join(err, f.Chmod(0o644), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return 0, errors.Join(err, os.Remove(f.Name()))
	}
	return lc.lines, nil
}

// lineCounter counts the lines written through it.
type lineCounter struct {
	w     io.Writer
	lines int
}

func (c *lineCounter) Write(p []byte) (int, error) {
	c.lines += bytes.Count(p, []byte("\n"))
	return c.w.Write(p)
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

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
