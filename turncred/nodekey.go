package turncred

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
)

// NodeKey is a node's TURN key, derived from its identity key so that a
// node restarted with the same (enrolled) identity keeps accepting the
// credentials issued for it before.
func NodeKey(identity ed25519.PrivateKey) (*ecdh.PrivateKey, error) {
	if len(identity) != ed25519.PrivateKeySize {
		return nil, errors.New("turncred: identity key has the wrong size")
	}
	h := sha256.New()
	h.Write([]byte(nodeKeyTag))
	h.Write(identity.Seed())
	return ecdh.X25519().NewPrivateKey(h.Sum(nil))
}

// SignNodeKey is the node's statement, under its identity key, that key is
// its TURN key; it travels with the key in the node's registration.
func SignNodeKey(identity ed25519.PrivateKey, key *ecdh.PublicKey) []byte {
	return ed25519.Sign(identity, nodeKeyStatement(key.Bytes()))
}

// VerifyNodeKey returns the TURN key a node's registration names if the
// node's identity key signed it. The control plane derives passwords only
// for such a key, so a registration rewritten on the bus yields credentials
// that no node accepts rather than ones a third party can read.
func VerifyNodeKey(identity ed25519.PublicKey, key, sig []byte) (*ecdh.PublicKey, error) {
	if len(identity) != ed25519.PublicKeySize {
		return nil, errors.New("turncred: no identity key")
	}
	if !ed25519.Verify(identity, nodeKeyStatement(key), sig) {
		return nil, errors.New("turncred: the TURN key is not signed by the node's identity key")
	}
	return ecdh.X25519().NewPublicKey(key)
}

func nodeKeyStatement(key []byte) []byte {
	return append([]byte(nodeKeyTag), key...)
}
