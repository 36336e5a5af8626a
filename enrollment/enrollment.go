// Package enrollment is the directory `oakmeet enroll` writes for one media
// node and `oakmeet node --enrollment` starts from: everything the node
// needs to join the deployment as itself. The file names are here alone.
package enrollment

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/nodecert"
)

// Files of an enrollment directory. All are the node's own and 0600.
const (
	// NATSCreds is the node's NATS credentials file: its user JWT (the
	// node's subjects and nothing else) and the user's seed.
	NATSCreds = "nats.creds"
	// NATSCA is the certificate authority the node verifies the NATS
	// server's TLS certificate with (PEM); absent, the system's.
	NATSCA = "nats-ca.pem"
	// NodeCert is the node's certificate (nodecert), signed by the
	// deployment's enrollment key: who and where the node is, and its
	// identity key. It is the only place the node's id, country and region
	// come from.
	NodeCert = "node.cert"
	// IdentityKey is the node's Ed25519 identity key: its 32-byte seed.
	IdentityKey = "identity.key"
	// TokenKey is the control plane's token public key (keyfile's public
	// key text), pinned: the only key the node accepts join tokens, relay
	// tokens and TURN credentials from.
	TokenKey = "token.pub"
)

// Node is who and where the enrolled node is, as its certificate says.
type Node struct {
	ID      string
	Country string
	Region  string
}

// Enrollment is an enrollment directory's contents.
type Enrollment struct {
	// Cert is the certificate's text; Node is what it says (Read fills it
	// in; Write takes it from Cert).
	Cert      []byte
	Node      Node
	Identity  ed25519.PrivateKey
	TokenKey  ed25519.PublicKey
	NATSCreds []byte
	NATSCA    []byte // optional
}

// check parses the certificate, fills in Node and checks that the identity
// key is the one the certificate names.
func (e *Enrollment) check() error {
	c, err := nodecert.Parse(e.Cert)
	if err != nil {
		return fmt.Errorf("enrollment %s: %w", NodeCert, err)
	}
	e.Node = Node{ID: c.NodeID, Country: c.Country, Region: c.Region}
	if len(e.Identity) != ed25519.PrivateKeySize {
		return errors.New("enrollment: no identity key")
	}
	if !c.IdentityKey.Equal(e.Identity.Public()) {
		return fmt.Errorf("enrollment: %s is not the key %s names", IdentityKey, NodeCert)
	}
	if len(e.TokenKey) != ed25519.PublicKeySize {
		return errors.New("enrollment: no token key")
	}
	if len(e.NATSCreds) == 0 {
		return errors.New("enrollment: no NATS credentials")
	}
	return nil
}

// Write creates dir (0700) and writes e into it.
func Write(dir string, e Enrollment) error {
	if err := e.check(); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("enrollment: %w", err)
	}
	files := map[string][]byte{
		NodeCert: e.Cert, IdentityKey: e.Identity.Seed(), TokenKey: keyfile.EncodePublic(e.TokenKey), NATSCreds: e.NATSCreds,
	}
	if len(e.NATSCA) > 0 {
		files[NATSCA] = e.NATSCA
	}
	for name, data := range files {
		if err := keyfile.WriteAtomic(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("enrollment: %w", err)
		}
	}
	return nil
}

// Read loads the enrollment in dir and checks that its parts belong
// together.
func Read(dir string) (Enrollment, error) {
	var e Enrollment
	read := func(name string) ([]byte, error) {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("enrollment: %w", err)
		}
		return data, nil
	}
	var err error
	if e.Cert, err = read(NodeCert); err != nil {
		return e, err
	}
	e.Cert = bytes.TrimSpace(e.Cert)
	seed, err := read(IdentityKey)
	if err != nil {
		return e, err
	}
	if len(seed) != ed25519.SeedSize {
		return e, fmt.Errorf("enrollment %s: want %d bytes, found %d", IdentityKey, ed25519.SeedSize, len(seed))
	}
	e.Identity = ed25519.NewKeyFromSeed(seed)
	tok, err := read(TokenKey)
	if err != nil {
		return e, err
	}
	if e.TokenKey, err = keyfile.ParsePublic(tok); err != nil {
		return e, fmt.Errorf("enrollment %s: %w", TokenKey, err)
	}
	if e.NATSCreds, err = read(NATSCreds); err != nil {
		return e, err
	}
	e.NATSCA, err = os.ReadFile(filepath.Join(dir, NATSCA))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return e, fmt.Errorf("enrollment: %w", err)
	}
	return e, e.check()
}
