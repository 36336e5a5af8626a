package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Files in a witness's state directory (docs/SECURITY.md).
const (
	witnessKeyFile  = "witness.key"  // the witness's note signer key, 0600
	witnessVKeyFile = "witness.vkey" // its verifier key, for verifiers
	witnessLogKey   = "log.vkey"     // the log's verifier key, pinned
	witnessHistory  = "checkpoints"  // every checkpoint cosigned, appended
	witnessLatest   = "latest"       // the newest one cosigned
	// conflict-<unixtime>.txt: the evidence of an alarm; while one is
	// there, the witness does not start without --resume-after-conflict.
	witnessConflictPrefix = "conflict-"
	witnessConflictSuffix = ".txt"
)

// witness is a witness's state and its connection to the log.
type witness struct {
	dir    string
	cl     *apiclient.Client
	log    note.Verifier
	signer note.Signer
	stderr io.Writer
	now    func() time.Time
}

// errAlarm marks a round that found the log inconsistent; the alarm has
// been printed and its evidence stored.
var errAlarm = errors.New("alarm")

// retryError is a round that could not check the log — no answer, or an
// answer that is no evidence (not signed by the pinned key, a proof of
// other sizes) — and is tried again. A man in the middle or a broken
// proxy can cause one, so it is a warning and never an alarm.
type retryError struct{ err error }

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

func retry(format string, args ...any) error {
	return &retryError{err: fmt.Errorf(format, args...)}
}

func auditWitness(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit witness", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "control plane URL")
	state := fs.String("state", "", "directory of the witness's key and the checkpoints it cosigned (required)")
	logKey := fs.String("log-key", "", "the log's verifier key; without it the first run trusts GET /api/config")
	name := fs.String("name", "", "the witness's name in its cosignatures (default: oakmeet.witness/ and a hash of its key, chosen on the first run)")
	every := fs.Duration("every", 10*time.Second, "how often to fetch the newest checkpoint")
	once := fs.Bool("once", false, "one round, then exit")
	resume := fs.Bool("resume-after-conflict", false, "run although the state directory holds the conflict file of an earlier alarm")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *state == "" {
		return errors.New("--state DIR is required")
	}
	if *every <= 0 {
		return fmt.Errorf("--every %v: want a positive duration", *every)
	}
	if err := os.MkdirAll(*state, 0o700); err != nil {
		return err
	}
	conflicts, err := conflictFiles(*state)
	if err != nil {
		return err
	}
	if len(conflicts) > 0 {
		if !*resume {
			fmt.Fprintf(stderr, "witness: not running: an earlier alarm left its evidence in %s. Keep it and find out why; pass --resume-after-conflict to run on this state anyway\n", strings.Join(conflicts, ", "))
			return exitError(1)
		}
		fmt.Fprintf(stderr, "witness: resuming despite the earlier alarm in %s\n", strings.Join(conflicts, ", "))
	}
	w := &witness{dir: *state, cl: apiclient.New(*server, nil), stderr: stderr, now: time.Now}
	if w.signer, err = w.loadSigner(*name, stdout); err != nil {
		return err
	}
	if w.log, err = w.loadLogKey(ctx, *logKey); err != nil {
		return err
	}
	for {
		err := w.round(ctx)
		switch {
		case errors.Is(err, errAlarm):
			return exitError(1)
		case err != nil && *once:
			fmt.Fprintf(stderr, "witness: WARNING: %v (not an alarm; nothing cosigned this round)\n", err)
			return exitError(1)
		case err != nil:
			fmt.Fprintf(stderr, "witness: WARNING: %v (not an alarm; trying again in %v)\n", err, *every)
		}
		if *once {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*every):
		}
	}
}

// loadSigner reads the witness's key, generating it on the first run.
func (w *witness) loadSigner(name string, stdout io.Writer) (note.Signer, error) {
	path := filepath.Join(w.dir, witnessKeyFile)
	skey, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if name == "" {
			sum := sha256.Sum256(pub)
			name = "oakmeet.witness/" + hex.EncodeToString(sum[:8])
		}
		skey, err := audit.SignerKey(name, priv)
		if err != nil {
			return nil, fmt.Errorf("--name %q: %w", name, err)
		}
		s, err := note.NewSigner(skey)
		if err != nil {
			return nil, fmt.Errorf("--name %q: %w", name, err)
		}
		vkey, _ := audit.VerifierKey(name, pub)
		if err := writeFileAtomic(path, []byte(skey+"\n"), 0o600); err != nil {
			return nil, err
		}
		if err := writeFileAtomic(filepath.Join(w.dir, witnessVKeyFile), []byte(vkey+"\n"), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "witness key: %s\n", vkey)
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	s, err := note.NewSigner(strings.TrimSpace(string(skey)))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if name != "" && name != s.Name() {
		return nil, fmt.Errorf("--name %q: the witness in %s is %q", name, w.dir, s.Name())
	}
	return s, nil
}

// loadLogKey pins the log's key: the one stored, else --log-key, else
// the server's own on first use.
func (w *witness) loadLogKey(ctx context.Context, flagKey string) (note.Verifier, error) {
	path := filepath.Join(w.dir, witnessLogKey)
	stored, err := os.ReadFile(path)
	switch {
	case err == nil:
		key := strings.TrimSpace(string(stored))
		if flagKey != "" && strings.TrimSpace(flagKey) != key {
			return nil, fmt.Errorf("--log-key differs from the key pinned in %s (%s): a witness follows one log; use a new --state for another", path, key)
		}
		return audit.NewVerifier(key)
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	key := strings.TrimSpace(flagKey)
	if key == "" {
		cfg, err := w.cl.Config(ctx)
		if err != nil {
			return nil, fmt.Errorf("GET /api/config for the log's key: %w", apiFailure(err))
		}
		key = cfg.AuditVerifierKey
		fmt.Fprintf(w.stderr, "witness: trusting the server's log key %s on first use (pass --log-key to pin one yourself)\n", key)
	}
	v, err := audit.NewVerifier(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(path, []byte(key+"\n"), 0o644); err != nil {
		return nil, err
	}
	return v, nil
}

// round fetches the newest checkpoint, checks that it extends the newest
// one cosigned, cosigns and stores it.
func (w *witness) round(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	signed, err := w.cl.Checkpoint(ctx)
	if err != nil {
		return retry("GET checkpoint: %w", apiFailure(err))
	}
	held, heldSigned, err := w.latest()
	if err != nil {
		return err
	}
	next, err := audit.OpenCheckpoint(signed, w.log)
	if err != nil {
		// Only what the log key signed can contradict what the witness
		// holds; anyone between the witness and the log can send this.
		return retry("the server's answer is not a checkpoint signed by the pinned log key: %v", err)
	}
	if heldSigned != nil {
		var proof *api.ConsistencyProof
		if next.Size > held.Size && held.Size > 0 {
			p, err := w.cl.ConsistencyProof(ctx, held.Size, next.Size)
			if err != nil {
				return retry("consistency proof from %d to %d: %w", held.Size, next.Size, apiFailure(err))
			}
			if p.From != held.Size || p.To != next.Size {
				return retry("asked for a consistency proof from %d to %d, got one from %d to %d", held.Size, next.Size, p.From, p.To)
			}
			proof = &p
		}
		var hashes tlog.TreeProof
		if proof != nil {
			hashes = proof.Proof
		}
		if err := audit.CheckConsistency(held, next, hashes); err != nil {
			return w.alarm(heldSigned, signed, proof, err.Error())
		}
		if next.Size == held.Size {
			fmt.Fprintf(w.stderr, "witness: checkpoint of %d entries unchanged\n", next.Size)
			return nil
		}
	}
	cosigned, err := audit.Cosign(signed, w.log, w.signer)
	if err != nil {
		return err
	}
	if err := w.store(cosigned); err != nil {
		return err
	}
	if heldSigned == nil {
		fmt.Fprintf(w.stderr, "witness: first checkpoint, %d entries, cosigned as %s\n", next.Size, w.signer.Name())
	} else {
		fmt.Fprintf(w.stderr, "witness: checkpoint of %d entries extends the one of %d; cosigned\n", next.Size, held.Size)
	}
	return nil
}

// conflictFiles lists the conflict files in dir, oldest first.
func conflictFiles(dir string) ([]string, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var files []string
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, witnessConflictPrefix) && strings.HasSuffix(n, witnessConflictSuffix) {
			files = append(files, filepath.Join(dir, n))
		}
	}
	return files, nil
}

// latest is the newest checkpoint cosigned, or nil before the first.
func (w *witness) latest() (audit.Checkpoint, []byte, error) {
	path := filepath.Join(w.dir, witnessLatest)
	signed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return audit.Checkpoint{}, nil, nil
	}
	if err != nil {
		return audit.Checkpoint{}, nil, err
	}
	c, err := audit.OpenCheckpoint(signed, w.log)
	if err != nil {
		return audit.Checkpoint{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, signed, nil
}

// store appends a cosigned checkpoint to the history, then makes it the
// latest: a crash between the two leaves the history ahead, never behind.
func (w *witness) store(cosigned []byte) error {
	f, err := os.OpenFile(filepath.Join(w.dir, witnessHistory), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(cosigned)
	if err = errors.Join(err, f.Sync(), f.Close()); err != nil {
		return err
	}
	return writeFileAtomic(filepath.Join(w.dir, witnessLatest), cosigned, 0o644)
}

// alarm stores the evidence of an inconsistency and says so.
func (w *witness) alarm(held, received []byte, proof *api.ConsistencyProof, reason string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "oakmeet audit witness: the log is inconsistent\n%s\n\n", reason)
	if held == nil {
		held = []byte("(none: the first round)\n")
	}
	fmt.Fprintf(&b, "Newest checkpoint cosigned before (%s):\n%s\n", filepath.Join(w.dir, witnessLatest), held)
	fmt.Fprintf(&b, "Checkpoint received from the server:\n%s\n", received)
	if proof != nil {
		fmt.Fprintf(&b, "Consistency proof received (%d → %d):\n", proof.From, proof.To)
		for _, h := range proof.Proof {
			fmt.Fprintf(&b, "%s\n", h)
		}
	}
	path, err := w.writeConflict([]byte(b.String()))
	if err != nil {
		fmt.Fprintf(w.stderr, "witness: cannot store the evidence: %v\n", err)
	}
	fmt.Fprintf(w.stderr, "ALARM: %s (evidence in %s)\n", reason, path)
	return errAlarm
}

// writeConflict stores the evidence of an alarm under a name no earlier
// alarm has, so that one never replaces another.
func (w *witness) writeConflict(data []byte) (string, error) {
	stem := filepath.Join(w.dir, fmt.Sprintf("%s%d", witnessConflictPrefix, w.now().Unix()))
	for i := 1; ; i++ {
		path := stem + witnessConflictSuffix
		if i > 1 {
			path = fmt.Sprintf("%s-%d%s", stem, i, witnessConflictSuffix)
		}
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return path, err
		}
		_, err = f.Write(data)
		return path, errors.Join(err, f.Sync(), f.Close())
	}
}
