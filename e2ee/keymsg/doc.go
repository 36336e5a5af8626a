// Package keymsg defines the messages meeting members exchange to agree on
// media keys, their versioned JSON wire form, exactly which bytes are signed,
// and how an epoch secret is sealed to each member with HPKE.
//
// There are three messages. An announcement binds a participant id to an
// identity key and a per-meeting HPKE key, signed by that identity key. An
// epoch message, signed by the leader, carries a roster of announcements and
// one HPKE-sealed copy of the new epoch secret per roster entry. A sync
// message tells a leader which epoch a member already holds, so that a
// leader who knew less catches up.
//
// Signatures cover a canonical binary encoding rebuilt from the decoded
// fields, never the JSON text, so any JSON encoder interoperates. The formats
// are specified byte for byte in docs/E2EE.md.
package keymsg
