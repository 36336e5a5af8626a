// Package group is one member's side of a meeting's end-to-end encryption:
// the state machine that publishes the member's keys, follows (or, when it
// leads, makes) the epochs of the group's media key, decides who is in the
// meeting, and protects and unprotects media frames with the current keys.
//
// It knows no transport. The caller feeds it the server's roster in join
// order (OnRosterChange), every key message relayed to it (HandleMessage),
// the host's verified removals (Remove) and policy (SetPolicyHash), and the
// passage of time (Tick, at NextTick), and sends the Outgoing payloads it
// returns, to one participant or to everyone. The leader is the first
// participant in roster order; it makes a fresh epoch secret when the
// roster changes (gathering joins that come together) and every
// RekeyInterval, seals it to every member with HPKE and signs the result.
// Members install it, ack it once every other member of its roster has
// announced itself to them directly, and send under it once the leader
// commits it, so that a participant the server shows to some members only
// never holds a key anyone uses. Each member derives one SFrame key per
// sender from the epoch secret. People tells a user interface who holds
// the keys, who the server lists, and where the two differ.
//
// Everything here is specified byte for byte in docs/E2EE.md so that the
// browser can implement the same protocol.
package group
