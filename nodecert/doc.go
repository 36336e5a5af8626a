// Package nodecert is how a deployment's enrollment authority vouches for a
// media node: a node certificate binds a node id, the country and region the
// node runs in and the node's Ed25519 identity key to a validity window, signed
// with the deployment's enrollment key; a revocation list, signed with the same
// key, withdraws certificates before they expire. Everything here is pure:
// making, parsing and checking statements, no files and no network. The
// enrollment command mints them, the control plane and nodes check them, and
// clients (Go and browser) can check them too, so the format below is exact.
//
// # Envelope
//
// A certificate and a revocation list are both ASCII text of the form
//
//	TAG "." B64(payload) "." B64(signature)
//
// with no whitespace and no trailing newline, where B64 is unpadded base64url
// (RFC 4648 §5, no "=", trailing bits zero; exactly one encoding is accepted),
// payload is JSON (below), and signature is the 64-byte Ed25519 signature
// (RFC 8032, pure Ed25519, as WebCrypto's "Ed25519") over the bytes
//
//	TAG "\n" payload
//
// i.e. the ASCII tag, one line feed (0x0a), then the payload bytes exactly as
// decoded. The tag separates the two kinds of statement, and both from any
// other use of the key:
//
//	certificate:      TAG = "oakmeet-node-cert-v1"
//	revocation list:  TAG = "oakmeet-node-revocations-v1"
//
// # Payload
//
// The payload is canonical JSON: one object, keys in lexicographic order, no
// whitespace, integers as plain decimal, every string drawn from
// [A-Za-z0-9_-] so nothing is ever escaped. This is the RFC 8785 (JCS) form,
// so a browser can rebuild it with JSON.stringify on an object whose keys
// are inserted in the order shown, and compare. A payload that is not in this
// form, has unknown or missing keys, or fails any rule below is malformed
// even when its signature verifies.
//
// Certificate payload (times are Unix seconds, 1 ≤ t ≤ 253402300799, which is
// within JavaScript's safe integers):
//
//	{"country":"DE","enrollment_key":KID,"identity_key":KEY,"node":"de-fra-1",
//	 "not_after":1767225600,"not_before":1759449600,"region":"eu-central-1",
//	 "serial":SERIAL}
//
// with, key by key:
//
//   - country: an ISO 3166-1 alpha-2 code of the geo catalogue, upper-case.
//   - enrollment_key: KID, the enrollment key's id (see [KeyID]): 32
//     lower-case hex digits, the first 16 bytes of SHA-256 of the raw 32-byte
//     Ed25519 public key.
//   - identity_key: KEY, the node's raw 32-byte Ed25519 public key, B64.
//   - node: 1–64 characters of [A-Za-z0-9_-] (cluster.ValidNodeID).
//   - not_before ≤ not_after. The certificate is valid at t when
//     not_before − [MaxClockSkew] ≤ t ≤ not_after (both seconds inclusive).
//   - region: "" or a region id of the geo catalogue, spelled as there,
//     whose country is country.
//   - serial: SERIAL, 32 lower-case hex digits (128 random bits, [NewSerial]).
//
// Revocation list payload:
//
//	{"enrollment_key":KID,"entries":[{"at":1760000000,"node":"de-fra-1",
//	 "serial":SERIAL},...],"issued_at":1760000000,"seq":7}
//
// with:
//
//   - seq: 1 ≤ seq ≤ 2^53−1. A holder accepts a list only if its seq is
//     greater than that of the list it holds (the same list again is a
//     no-op), so an older list cannot be replayed over a newer one.
//   - entries: possibly empty, sorted by node then serial (bytewise), no two
//     with the same node and serial. An entry with a serial revokes that one
//     certificate of that node; an entry with serial "" revokes every
//     certificate of that node whose not_before is at or before at. A
//     revocation takes effect as soon as the list is held; at is also the
//     time recorded for it.
//
// # Checking a certificate in a browser
//
// Split the text at the two dots; check the tag; base64url-decode the parts;
// crypto.subtle.verify("Ed25519", enrollmentKey, signature, tag+"\n"+payload);
// JSON.parse the payload; compare enrollment_key with the expected key's id,
// the times with the clock, and node, country, region and identity_key with
// what the node presents ([Matches] is the rule).
package nodecert
