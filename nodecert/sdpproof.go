package nodecert

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
)

// sdpLabel separates a node's SDP signatures from every other use of its
// identity key (relay link proofs have their own label).
const sdpLabel = "oakmeet-node-sdp-v1"

// ErrSDPProof is an SDP signature that is missing or does not verify.
var ErrSDPProof = errors.New("nodecert: the node's SDP signature does not verify with its certified identity key")

// SDPTBS is what a node signs over each offer and answer it sends a
// participant:
//
//	"oakmeet-node-sdp-v1" ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖
//	lp16(nonce) ‖ lp16(kind) ‖ u32(len(sdp)) ‖ sdp
//
// lp16 is a 2-byte big-endian length and the bytes, u32 a 4-byte big-endian
// integer; participant is the receiving participant's id, nonce the raw
// bytes of its join message's nonce, kind "offer" or "answer". The SDP
// carries the node's DTLS fingerprint, so a valid signature binds the media
// connection to the holder of the certified identity key: a machine that
// relays the signaling but terminates DTLS itself fails the fingerprint
// check, and one that rewrites the fingerprint fails this signature.
func SDPTBS(meeting, participant string, nonce []byte, kind, sdp string) []byte {
	b := make([]byte, 0, len(sdpLabel)+1+8+len(meeting)+len(participant)+len(nonce)+len(kind)+4+len(sdp))
	b = append(b, sdpLabel...)
	b = append(b, 0)
	for _, f := range []string{meeting, participant, string(nonce), kind} {
		b = binary.BigEndian.AppendUint16(b, uint16(len(f)))
		b = append(b, f...)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(sdp)))
	return append(b, sdp...)
}

// SignSDP signs an SDP the node sends to participant (see SDPTBS).
func SignSDP(identity ed25519.PrivateKey, meeting, participant string, nonce []byte, kind, sdp string) []byte {
	return ed25519.Sign(identity, SDPTBS(meeting, participant, nonce, kind, sdp))
}

// VerifySDP checks a node's SDP signature with the identity key its
// certificate names.
func VerifySDP(identityKey ed25519.PublicKey, sig []byte, meeting, participant string, nonce []byte, kind, sdp string) error {
	if len(identityKey) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize ||
		!ed25519.Verify(identityKey, SDPTBS(meeting, participant, nonce, kind, sdp), sig) {
		return ErrSDPProof
	}
	return nil
}
