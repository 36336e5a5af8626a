// Package audit is oakmeet's evidence of where meeting traffic went: a
// transparency log of routing decisions (placements, refusals, migrations,
// policy changes). Every entry is signed with the deployment's Ed25519 log
// key and hash-chained to the previous entry of its meeting; every entry of
// every meeting is also a leaf of one Merkle tree per deployment (RFC 6962
// hashing, golang.org/x/mod/sumdb/tlog), whose signed tree heads
// ([Checkpoint], C2SP tlog-checkpoint notes) participants and witnesses
// keep. A log that was truncated, forked or rebuilt contradicts a
// checkpoint someone kept; an entry is proved in the log by an inclusion
// proof against a checkpoint.
//
// The package knows entries, trees, checkpoints and exports, not who writes
// or stores them: the control plane seals entries with a [Chain], appends
// them to a [Tree] and signs checkpoints; `oakmeet audit export`, `verify`
// and `witness` are thin wrappers around [WriteExport], [VerifyExport],
// [CheckConsistency] and [Cosign]. docs/AUDIT.md describes the log, the
// export format and the checks in full.
//
// # Chains
//
// Each meeting has its own chain, identified by the meeting id, so the export
// of one meeting verifies on its own. Deployment-level entries (node_down,
// policy_change of the deployment floor, ...) use the chain "". Within a chain
// sequence numbers start at 1 and increase by one; the first entry's
// prev_hash is 64 zeros ([GenesisHash]). Entries of all chains also share
// one order, their signed Index: their place in the deployment's log.
//
// # Canonical encoding (version 2)
//
// An entry's hash is the lowercase hex SHA-256 of the following bytes, and its
// signature is the Ed25519 signature over the 32 raw hash bytes (not the hex
// text), encoded as standard padded base64. Integers are unsigned big-endian;
// a "field" is an 8-byte length followed by that many bytes.
//
//  1. field "oakmeet-audit-entry/2" (domain separation)
//  2. seq as 8 bytes
//  3. index as 8 bytes
//  4. field time: [time.RFC3339Nano] of the time in UTC
//     (e.g. "2026-03-01T12:00:00.5Z"; trailing zeros of the fraction dropped)
//  5. field kind
//  6. field meeting
//  7. field participant
//  8. field node
//  9. field node_country
//  10. field policy_hash
//  11. field reason
//  12. field prev_hash (the 64-character lowercase hex text)
//
// Strings are hashed as their UTF-8 bytes; [Chain.Seal] replaces invalid UTF-8
// with U+FFFD first so that an entry survives a JSON round trip unchanged.
//
// The export trailer signs the chain heads, bound to the export's checkpoint
// and meeting so that a trailer cannot be moved to another export: the
// Ed25519 signature over
//
//  1. field "oakmeet-audit-heads/2"
//  2. field origin (of the header's checkpoint)
//  3. the checkpoint's size as 8 bytes
//  4. the checkpoint's root (32 bytes)
//  5. field meeting (the header's; empty in a full export)
//  6. the number of chains as 8 bytes
//  7. for each chain in ascending byte order of its id: field id, seq as 8
//     bytes, field hash
//
// # Export format (version 2)
//
// An export is JSON lines: a [Header] naming the log's verifier key and
// the signed checkpoint the export is proved against; the entries in log
// order (a full export: exactly the entries 0..Size-1; a meeting's pack:
// that meeting's entries, each followed by an {"inclusion":[...]} line
// with its proof); {"consistency":{...}} lines ([ConsistencyStep]) in a
// pack; and the [Trailer]. Every line must be exactly as [WriteExport]
// writes it; a reader accepts no other spelling of the same values
// (different key case, extra spaces, duplicate keys), so that two different
// files can never be presented as the same evidence, and an entry's line is
// its leaf ([LeafData]).
package audit
