// Package enrollment is the directory `oakmeet enroll` writes for one media
// node and `oakmeet node --enrollment` starts from: everything the node
// needs to join the deployment as itself. The file names are here alone.
package enrollment

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/oakmeet/oakmeet/cluster"
)

// Files of an enrollment directory. All are the node's own and 0600.
const (
	// NATSCreds is the node's NATS credentials file: its user JWT (the
	// node's subjects and nothing else) and the user's seed.
	NATSCreds = "nats.creds"
	// NATSCA is the certificate authority the node verifies the NATS
	// server's TLS certificate with (PEM); absent, the system's.
	NATSCA = "nats-ca.pem"
	// NodeFile says which node this is: id, country and region.
	NodeFile = "node.json"
)

// Node is who and where the enrolled node is.
type Node struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
}

// Enrollment is an enrollment directory's contents.
type Enrollment struct {
	Node      Node
	NATSCreds []byte
	NATSCA    []byte // optional
}

// Write creates dir (0700) and writes e into it.
func Write(dir string, e Enrollment) error {
	if err := cluster.ValidNodeID(e.Node.ID); err != nil {
		return err
	}
	if len(e.NATSCreds) == 0 {
		return errors.New("enrollment: no NATS credentials")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("enrollment: %w", err)
	}
	node, err := json.MarshalIndent(e.Node, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{NodeFile: append(node, '\n'), NATSCreds: e.NATSCreds}
	if len(e.NATSCA) > 0 {
		files[NATSCA] = e.NATSCA
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return fmt.Errorf("enrollment: %w", err)
		}
		// WriteFile keeps the mode of a file that was there already.
		if err := os.Chmod(filepath.Join(dir, name), 0o600); err != nil {
			return fmt.Errorf("enrollment: %w", err)
		}
	}
	return nil
}

// Read loads the enrollment in dir.
func Read(dir string) (Enrollment, error) {
	var e Enrollment
	node, err := os.ReadFile(filepath.Join(dir, NodeFile))
	if err != nil {
		return e, fmt.Errorf("enrollment: %w", err)
	}
	if err := json.Unmarshal(node, &e.Node); err != nil {
		return e, fmt.Errorf("enrollment %s: %w", NodeFile, err)
	}
	if err := cluster.ValidNodeID(e.Node.ID); err != nil {
		return e, fmt.Errorf("enrollment: %w", err)
	}
	if e.NATSCreds, err = os.ReadFile(filepath.Join(dir, NATSCreds)); err != nil {
		return e, fmt.Errorf("enrollment: %w", err)
	}
	e.NATSCA, err = os.ReadFile(filepath.Join(dir, NATSCA))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return e, fmt.Errorf("enrollment: %w", err)
	}
	return e, nil
}
