package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/nodecert"
)

// The deployment's enrollment key certifies media nodes. It is its own file,
// apart from the control plane's signing key, so that an operator can keep
// it offline: the control plane needs only its public half, which enroll
// writes under --data. Revocation lists go to a file under --data that the
// control plane reads every second; a file works alike whether NATS is
// embedded or external, and needs no NATS identity beyond the control
// plane's own.
const (
	enrollmentKeyFile = "enrollment.key"
	enrollmentPubFile = "enrollment.pub"
	revocationsFile   = "node-revocations"
)

// revocationsPoll is how often the control plane reads the revocation
// list file: a revocation takes effect well within 5 seconds.
const revocationsPoll = time.Second

func defaultEnrollmentKey(dataDir string) string { return filepath.Join(dataDir, enrollmentKeyFile) }

// loadEnrollmentKey opens (or on first use creates) the enrollment key at
// path and makes sure --data's public key file is its public half: a
// control plane that trusts another key would refuse every node enrolled
// with this one.
func loadEnrollmentKey(path, dataDir string) (ed25519.PrivateKey, error) {
	key, err := keyfile.LoadOrCreate(path)
	if err != nil {
		return nil, fmt.Errorf("enrollment key: %w", err)
	}
	pub := key.Public().(ed25519.PublicKey)
	pubPath := filepath.Join(dataDir, enrollmentPubFile)
	held, err := keyfile.ReadPublic(pubPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if err := os.MkdirAll(dataDir, 0o700); err != nil {
			return nil, err
		}
		if err := keyfile.WritePublic(pubPath, pub); err != nil {
			return nil, fmt.Errorf("write %s: %w", pubPath, err)
		}
	case err != nil:
		return nil, err
	case !held.Equal(pub):
		return nil, fmt.Errorf("enrollment key %s (id %s) is not the one %s trusts (id %s)", path, nodecert.KeyID(pub), pubPath, nodecert.KeyID(held))
	}
	return key, nil
}

// servePublicKey is the enrollment public key serve trusts: the file given,
// else --data's. Without either, serve makes the pair under --data (which
// is where enroll looks for it by default).
func servePublicKey(file, dataDir string) (ed25519.PublicKey, error) {
	if file != "" {
		pub, err := keyfile.ReadPublic(file)
		if err != nil {
			return nil, fmt.Errorf("--enrollment-public-key: %w", err)
		}
		return pub, nil
	}
	pub, err := keyfile.ReadPublic(filepath.Join(dataDir, enrollmentPubFile))
	if errors.Is(err, os.ErrNotExist) {
		key, err := loadEnrollmentKey(defaultEnrollmentKey(dataDir), dataDir)
		if err != nil {
			return nil, err
		}
		return key.Public().(ed25519.PublicKey), nil
	}
	return pub, err
}

// readRevocations is the revocation list file under --data, verified with
// pub; none yet is the zero list.
func readRevocations(dataDir string, pub ed25519.PublicKey) (nodecert.Revocations, []byte, error) {
	path := filepath.Join(dataDir, revocationsFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nodecert.Revocations{}, nil, nil
	}
	if err != nil {
		return nodecert.Revocations{}, nil, err
	}
	r, err := nodecert.VerifyRevocation(pub, data, nodecert.Revocations{})
	if err != nil {
		return nodecert.Revocations{}, nil, fmt.Errorf("%s: %w", path, err)
	}
	return r, data, nil
}

// revoke adds node id to the revocation list under --data: every
// certificate of it issued up to now is withdrawn (a later enrollment under
// the same id is not). It returns the new list's sequence number.
func revoke(dataDir string, key ed25519.PrivateKey, id string, now time.Time) (uint64, error) {
	held, _, err := readRevocations(dataDir, key.Public().(ed25519.PublicKey))
	if err != nil {
		return 0, err
	}
	next := nodecert.Revocations{Seq: held.Seq + 1, IssuedAt: now}
	for _, e := range held.Entries {
		if e.NodeID != id || e.Serial != "" {
			next.Entries = append(next.Entries, e)
		}
	}
	next.Entries = append(next.Entries, nodecert.Revocation{NodeID: id, At: now})
	list, err := nodecert.IssueRevocation(key, next)
	if err != nil {
		return 0, err
	}
	if err := keyfile.WriteAtomic(filepath.Join(dataDir, revocationsFile), list, 0o644); err != nil {
		return 0, fmt.Errorf("write revocation list: %w", err)
	}
	return next.Seq, nil
}

// watchRevocations hands the revocation list file to set whenever it
// changes, until ctx ends. A list set refuses (older, or not signed by the
// enrollment key) is logged, and the list held stays in force.
func watchRevocations(ctx context.Context, dataDir string, last []byte, set func(context.Context, []byte) error, log *slog.Logger) {
	path := filepath.Join(dataDir, revocationsFile)
	tick := time.NewTicker(revocationsPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		data, err := os.ReadFile(path)
		if err != nil || bytes.Equal(data, last) {
			continue
		}
		if err := set(ctx, data); err != nil {
			if ctx.Err() == nil {
				log.Warn("revocation list refused; keeping the one held", "file", path, "err", err)
			}
			last = data
			continue
		}
		last = data
		log.Info("revocation list taken", "file", path)
	}
}
