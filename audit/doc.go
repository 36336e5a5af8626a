// Package audit is oakmeet's evidence of where meeting traffic went: an
// append-only log of routing decisions (placements, refusals, migrations,
// policy changes) in which every entry is hash-chained to the one before it
// and signed with the deployment's Ed25519 log key. Editing, removing,
// reordering or inserting an entry breaks the chain, and a signed trailer of
// chain heads in every export makes cutting entries off the end detectable.
//
// The package knows entries, hashes and signatures, not who writes or stores
// them: the control plane seals entries with a [Chain] and stores them where it
// likes; `oakmeet audit export` and `oakmeet audit verify` are thin wrappers
// around [WriteExport] and [VerifyExport].
//
// # Chains
//
// Each meeting has its own chain, identified by the meeting id, so the export
// of one meeting verifies on its own. Deployment-level entries (node_down,
// policy_change of the deployment floor, ...) use the chain "". Within a chain
// sequence numbers start at 1 and increase by one; the first entry's
// prev_hash is 64 zeros ([GenesisHash]). Only the order within a chain is
// evidence: entries of different chains may be interleaved in any order.
//
// # Canonical encoding (version 1)
//
// An entry's hash is the lowercase hex SHA-256 of the following bytes, and its
// signature is the Ed25519 signature over the 32 raw hash bytes (not the hex
// text), encoded as standard padded base64. Integers are unsigned big-endian;
// a "field" is an 8-byte length followed by that many bytes.
//
//  1. field "oakmeet-audit-entry/1" (domain separation)
//  2. seq as 8 bytes
//  3. field time: [time.RFC3339Nano] of the time in UTC
//     (e.g. "2026-03-01T12:00:00.5Z"; trailing zeros of the fraction dropped)
//  4. field kind
//  5. field meeting
//  6. field participant
//  7. field node
//  8. field node_country
//  9. field policy_hash
//  10. field reason
//  11. field prev_hash (the 64-character lowercase hex text)
//
// Strings are hashed as their UTF-8 bytes; [Chain.Seal] replaces invalid UTF-8
// with U+FFFD first so that an entry survives a JSON round trip unchanged.
//
// The export trailer signs the chain heads: the Ed25519 signature over
//
//  1. field "oakmeet-audit-heads/1"
//  2. the number of chains as 8 bytes
//  3. for each chain in ascending byte order of its id: field id, seq as 8
//     bytes, field hash
//
// # Export format
//
// An export is JSON lines: one [Header] line, one line per [Entry] in log
// order (chains may interleave), and one [Trailer] line. Every line must be
// exactly as [WriteExport] writes it; a reader accepts no other spelling of
// the same values (different key case, extra spaces, duplicate keys), so that
// two different files can never be presented as the same evidence.
package audit
