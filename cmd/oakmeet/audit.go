package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
)

const auditUsage = `Usage:
  oakmeet audit export --server URL [--meeting ID] [--checkpoint FILE]... [--token T | --operator-token-file F] [--out FILE]
  oakmeet audit verify FILE --public-key KEY [--checkpoint FILE]... [--witness-key KEY]... [--trust-file-key]
  oakmeet audit witness --server URL --state DIR [--log-key KEY] [--every D] [--once] [--resume-after-conflict]

KEY is a note verifier key (name+hash+key), as GET /api/config names
audit_verifier_key. verify exits 0 when everything holds, 1 when something
contradicts, 2 for bad usage. See docs/AUDIT.md.`

func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, auditUsage)
		return errUsage
	}
	switch args[0] {
	case "export":
		return auditExport(ctx, args[1:], stdout, stderr)
	case "verify":
		return auditVerify(args[1:], stdout, stderr)
	case "witness":
		return auditWitness(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprintln(stdout, auditUsage)
		return nil
	}
	fmt.Fprintf(stderr, "oakmeet audit: unknown subcommand %q\n\n%s\n", args[0], auditUsage)
	return errUsage
}

// listFlag is a flag that may be given several times.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// flagsFirst moves the positional arguments after the flags, so that
// `verify FILE --public-key KEY` parses as the usage spells it; the flag
// package stops at the first argument that is not a flag.
func flagsFirst(fs *flag.FlagSet, args []string) []string {
	var flags, rest []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			rest = append(rest, args[i+1:]...)
			return append(append(flags, "--"), rest...)
		case len(a) > 1 && a[0] == '-':
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if strings.Contains(name, "=") {
				continue
			}
			f := fs.Lookup(name)
			if f == nil || i+1 == len(args) {
				continue // the flag package will say what is wrong
			}
			if b, ok := f.Value.(interface{ IsBoolFlag() bool }); !ok || !b.IsBoolFlag() {
				i++
				flags = append(flags, args[i])
			}
		default:
			rest = append(rest, a)
		}
	}
	return append(append(flags, "--"), rest...)
}

// checkpointFiles reads every signed checkpoint in files, each named by
// its file and place in it.
func checkpointFiles(files []string) (notes [][]byte, names []string, err error) {
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			return nil, nil, err
		}
		split, err := audit.SplitCheckpoints(data)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", name, err)
		}
		if len(split) == 0 {
			return nil, nil, fmt.Errorf("%s: no checkpoint in the file", name)
		}
		for i, n := range split {
			notes = append(notes, n)
			if len(split) == 1 {
				names = append(names, name)
			} else {
				names = append(names, fmt.Sprintf("%s#%d", name, i+1))
			}
		}
	}
	return notes, names, nil
}

func auditVerify(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	pubKey := fs.String("public-key", "", "the log's verifier key (name+hash+key, GET /api/config audit_verifier_key); required")
	trustFile := fs.Bool("trust-file-key", false, "take the key from the file: shows only that the file is whole, not who wrote it")
	var checkpoints, witnessKeys listFlag
	fs.Var(&checkpoints, "checkpoint", "a file of signed checkpoints held (bot --checkpoints, a witness's checkpoints or latest); repeatable")
	fs.Var(&witnessKeys, "witness-key", "a witness's verifier key: it must have cosigned the export's checkpoint or a held one; repeatable")
	bad := func(format string, a ...any) error {
		fmt.Fprintf(stderr, "oakmeet audit verify: "+format+"\n", a...)
		return exitError(2)
	}
	if err := parseFlags(fs, flagsFirst(fs, args), stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		if !errors.Is(err, errUsage) {
			return bad("%v", err)
		}
		return exitError(2)
	}
	if fs.NArg() != 1 {
		return bad("want one export file (- reads standard input)\n\n%s", auditUsage)
	}
	var opts audit.VerifyOptions
	switch {
	case *pubKey != "":
		v, err := audit.NewVerifier(*pubKey)
		if err != nil {
			return bad("--public-key: %v", err)
		}
		opts.Log = v
	case *trustFile:
		opts.TrustFileKey = true
	default:
		return bad("a key is required: --public-key KEY (GET /api/config audit_verifier_key), or --trust-file-key to take the file's own")
	}
	for _, k := range witnessKeys {
		v, err := audit.NewVerifier(k)
		if err != nil {
			return bad("--witness-key: %v", err)
		}
		opts.Witnesses = append(opts.Witnesses, v)
	}
	var err error
	if opts.Checkpoints, opts.CheckpointNames, err = checkpointFiles(checkpoints); err != nil {
		return bad("--checkpoint: %v", err)
	}
	var r io.Reader = os.Stdin
	if name := fs.Arg(0); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return bad("%v", err)
		}
		defer f.Close()
		r = f
	}
	sum, err := audit.VerifyExport(r, opts)
	if err != nil {
		fmt.Fprintf(stdout, "FAILED: %v\n", err)
		return exitError(1)
	}
	what := fmt.Sprintf("%d entries in %d chain(s)", sum.Entries, sum.Chains)
	if sum.Meeting != "" {
		what = fmt.Sprintf("meeting %q: %d entries, each proved included,", sum.Meeting, sum.Entries)
	}
	fmt.Fprintf(stdout, "ok: %s verify against the checkpoint of %d entries of %s", what, sum.Checkpoint.Size, sum.Checkpoint.Origin)
	if sum.Checkpoints > 0 {
		fmt.Fprintf(stdout, "; consistent with %d held checkpoint(s)", sum.Checkpoints)
	}
	if len(sum.Witnesses) > 0 {
		fmt.Fprintf(stdout, "; cosigned by %s", strings.Join(sum.Witnesses, ", "))
	}
	fmt.Fprintln(stdout)
	if opts.TrustFileKey {
		fmt.Fprintf(stdout, "note: the key was taken from the file (%s); compare it with the deployment's\n", sum.VerifierKey)
	}
	return nil
}

func auditExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit export", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "control plane URL")
	meeting := fs.String("meeting", "", "export this meeting's evidence pack: its entries with inclusion proofs")
	out := fs.String("out", "", "write to this file instead of standard output")
	var checkpoints listFlag
	fs.Var(&checkpoints, "checkpoint", "with --meeting: add consistency proofs to the checkpoints in this file; repeatable")
	auth := readerFlags(fs)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	held, _, err := checkpointFiles(checkpoints)
	if err != nil {
		return fmt.Errorf("--checkpoint: %w", err)
	}
	// The whole log, however long: a cut-off export would fail to verify.
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cl, err := auth.client(*server)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	if err := cl.AuditExport(ctx, *meeting, &buf); err != nil {
		return fmt.Errorf("fetch audit log: %w", apiFailure(err))
	}
	x, err := audit.ReadExport(&buf)
	if err != nil {
		return fmt.Errorf("the server's export: %w", err)
	}
	if len(held) > 0 && *meeting == "" {
		fmt.Fprintln(stderr, "a full export needs no consistency proofs: verify recomputes the tree; --checkpoint ignored")
	}
	if *meeting != "" {
		if x.Consistency, err = consistencySteps(ctx, cl, x.Header.Checkpoint, held); err != nil {
			return err
		}
	}
	var data bytes.Buffer
	if err := audit.WriteExport(&data, x); err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(data.Bytes())
		return err
	}
	if err := writeFileAtomic(*out, data.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote %d entries to %s\n", len(x.Entries), *out)
	return nil
}

// consistencySteps fetches a proof between the size of the pack's
// checkpoint and that of each held one, so that the pack can be checked
// against them offline.
func consistencySteps(ctx context.Context, cl *apiclient.Client, packCheckpoint string, held [][]byte) ([]audit.ConsistencyStep, error) {
	pack, err := audit.PeekCheckpoint([]byte(packCheckpoint))
	if err != nil {
		return nil, fmt.Errorf("the server's export: %w", err)
	}
	var steps []audit.ConsistencyStep
	seen := map[[2]int64]bool{}
	for _, h := range held {
		c, err := audit.PeekCheckpoint(h)
		if err != nil {
			return nil, fmt.Errorf("--checkpoint: %w", err)
		}
		from, to := min(c.Size, pack.Size), max(c.Size, pack.Size)
		if from == to || from == 0 || seen[[2]int64{from, to}] {
			continue
		}
		seen[[2]int64{from, to}] = true
		p, err := cl.ConsistencyProof(ctx, from, to)
		if err != nil {
			return nil, fmt.Errorf("consistency proof from %d to %d: %w", from, to, apiFailure(err))
		}
		if p.From != from || p.To != to {
			return nil, fmt.Errorf("asked for a consistency proof from %d to %d, got one from %d to %d", from, to, p.From, p.To)
		}
		steps = append(steps, audit.ConsistencyStep{From: from, To: to, Proof: p.Proof})
	}
	return steps, nil
}

// writeFileAtomic writes data to a temporary file beside path and renames
// it into place once whole, so path never holds part of a file.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	err = errors.Join(err, f.Chmod(mode), f.Sync(), f.Close())
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return errors.Join(err, os.Remove(f.Name()))
	}
	return nil
}

// readerAuth is the token audit and report send: --token (a meeting's
// host token or join secret), else the operator token from its file.
type readerAuth struct {
	token, operatorFile *string
}

func readerFlags(fs *flag.FlagSet) readerAuth {
	return readerAuth{
		token:        fs.String("token", "", "one meeting's host token or join secret (default: the operator token)"),
		operatorFile: fs.String("operator-token-file", filepath.Join(defaultDataDir(), operatorTokenName), "the operator token, which every meeting's log and report need (serve writes it under --data)"),
	}
}

// client is a client of server that sends the token.
func (a readerAuth) client(server string) (*apiclient.Client, error) {
	tok := *a.token
	if tok == "" {
		var err error
		if tok, err = readOperatorToken(*a.operatorFile); err != nil {
			return nil, err
		}
	}
	return apiclient.New(server, nil).WithBearer(tok), nil
}
