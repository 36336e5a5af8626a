package cluster

import (
	"errors"
	"strings"
)

// SubjectTokenKey is where a media node asks the control plane's leader for
// the token key (a core NATS request; the answer is a TokenKeyAnswer). Nodes
// may publish here and no one but the control plane may subscribe. Nodes
// have no JetStream rights at all: JetStream answers to whatever reply
// subject a request names, with the account's rights, so a node allowed
// even a read could have the answer written into the audit log or a
// bucket's key.
const SubjectTokenKey = "oakmeet.control.token_key"

// NodeInboxRoot is the branch of reply subjects media nodes receive on:
// node id's inbox is NodeInboxRoot + "." + id. The control plane answers a
// node's request only to a reply subject under it, so a request cannot turn
// the control plane's own wider rights against the store.
const NodeInboxRoot = "_INBOX.node"

// TokenKeyAnswer is the control plane's answer on SubjectTokenKey.
type TokenKeyAnswer struct {
	// Key is the control plane's Ed25519 token public key (32 bytes).
	Key []byte `json:"key"`
	// Rotation is the key's rotation statements, one a line, oldest
	// first (KeyTokenRotation); empty when the key was never rotated.
	Rotation string `json:"rotation,omitempty"`
}

// CheckNodeReply says whether reply is a subject in some node's inbox and
// nothing else: literal, its tokens non-empty, under NodeInboxRoot with a
// node id and at least one token after it.
func CheckNodeReply(reply string) error {
	rest, ok := strings.CutPrefix(reply, NodeInboxRoot+".")
	if !ok {
		return errors.New("reply subject is not a node inbox")
	}
	if len(reply) > 512 {
		return errors.New("reply subject too long")
	}
	tokens := strings.Split(rest, ".")
	if len(tokens) < 2 {
		return errors.New("reply subject names no inbox within a node's")
	}
	for _, t := range tokens {
		if t == "" || t == "*" || t == ">" || strings.ContainsAny(t, " \t\r\n") {
			return errors.New("reply subject is not a literal subject")
		}
	}
	return ValidNodeID(tokens[0])
}
