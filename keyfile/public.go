package keyfile

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// A public key file holds one Ed25519 public key as unpadded base64url
// text and a line feed, so that it can be pasted and compared by eye.

// EncodePublic is the text of a public key file.
func EncodePublic(pub ed25519.PublicKey) []byte {
	return []byte(base64.RawURLEncoding.EncodeToString(pub) + "\n")
}

// ParsePublic reads the text of a public key file.
func ParsePublic(data []byte) (ed25519.PublicKey, error) {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(string(bytes.TrimSpace(data)))
	if err != nil || len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("not an Ed25519 public key (%d bytes as unpadded base64url)", ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(raw), nil
}

// ReadPublic reads the public key file at path.
func ReadPublic(path string) (ed25519.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pub, err := ParsePublic(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return pub, nil
}

// WritePublic writes pub to path (mode 0644: it is no secret), replacing
// the file atomically.
func WritePublic(path string, pub ed25519.PublicKey) error {
	return WriteAtomic(path, EncodePublic(pub), 0o644)
}

// WriteAtomic writes data beside path and renames it into place, so that a
// reader never sees a half-written file.
func WriteAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	err = errors.Join(werr, tmp.Chmod(mode), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}
