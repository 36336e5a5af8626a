// Package keyfile keeps the control plane's Ed25519 signing key in a file:
// created on first start, read on every later one, so that join tokens and
// audit entries stay verifiable across restarts. The file holds the 32-byte
// seed and nothing else, readable by its owner only.
package keyfile

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// LoadOrCreate reads the key seed at path, or creates a new one there (mode
// 0600) when the file does not exist. A file of any other size is refused,
// not replaced: a new key would make every earlier signature unverifiable.
func LoadOrCreate(path string) (ed25519.PrivateKey, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return create(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read signing key: %w", err)
	}
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("signing key %s: want %d bytes, found %d", path, ed25519.SeedSize, len(seed))
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

// create writes a new seed beside path and renames it into place, so a
// crash never leaves a short key file behind.
func create(path string) (ed25519.PrivateKey, error) {
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return nil, err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	// CreateTemp makes the file 0600 already; Chmod says so where it matters.
	_, werr := tmp.Write(seed)
	err = errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
		return nil, fmt.Errorf("write signing key: %w", err)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}
