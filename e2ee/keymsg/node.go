package keymsg

import (
	"crypto/ed25519"
	"fmt"
	"unicode/utf8"

	"github.com/oakmeet/oakmeet/e2ee/identity"
)

// MaxCertLen bounds the node certificate text a node message carries
// (nodecert's own limit is smaller; this one only keeps messages small).
const MaxCertLen = 4096

// Node tells the other members which node the sender is on: the node's
// enrollment certificate as the sender's join answer carried it (and the
// sender checked it), signed by the sender's identity key, so the server
// cannot say another member is on another node than that member says. It
// is not part of any roster entry: epochs do not grow with it. Each
// receiver checks the certificate against its own host-signed policy; this
// package does not read it.
type Node struct {
	Meeting     string
	Participant string
	Cert        string
	Signature   []byte
}

// Type implements Message.
func (*Node) Type() string { return "node" }

// NewNode signs a node message for participant in meeting, naming cert.
func NewNode(meeting, participant, cert string, id *identity.Identity) (*Node, error) {
	n := &Node{Meeting: meeting, Participant: participant, Cert: cert, Signature: make([]byte, SignatureSize)}
	if err := n.check(); err != nil {
		return nil, err
	}
	n.Signature = id.Sign(nodeTBS(meeting, participant, cert))
	return n, nil
}

func (n *Node) check() error {
	if err := checkID("meeting", n.Meeting); err != nil {
		return err
	}
	if err := checkID("participant", n.Participant); err != nil {
		return err
	}
	if n.Cert == "" || len(n.Cert) > MaxCertLen || !utf8.ValidString(n.Cert) {
		return fmt.Errorf("%w: cert must be 1 to %d bytes of UTF-8", ErrMalformed, MaxCertLen)
	}
	return checkLen("sig", n.Signature, SignatureSize)
}

// Verify checks the structure and that the signature is by identityKey,
// the key of the participant's verified announcement or roster entry.
func (n *Node) Verify(identityKey ed25519.PublicKey) error {
	if err := n.check(); err != nil {
		return err
	}
	if len(identityKey) != IdentityKeySize || !ed25519.Verify(identityKey, nodeTBS(n.Meeting, n.Participant, n.Cert), n.Signature) {
		return fmt.Errorf("%w: node message of %q", ErrBadSignature, n.Participant)
	}
	return nil
}
