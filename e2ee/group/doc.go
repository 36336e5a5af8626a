// Package group is one member's side of a meeting's end-to-end encryption:
// the state machine that publishes the member's keys, follows (or, when it
// leads, makes) the epochs of the group's media key, and protects and
// unprotects media frames with the current keys.
//
// It knows no transport. The caller feeds it the roster in join order
// (OnRosterChange), every key message relayed to it (HandleMessage) and the
// passage of time (Tick), and sends the Outgoing payloads it returns, to one
// participant or to everyone. The leader is the first participant in roster
// order; it makes a fresh epoch secret when the roster changes and every
// RekeyInterval, seals it to every member with HPKE and signs the result.
// Each member derives one SFrame key per sender from the epoch secret.
//
// Everything here is specified byte for byte in docs/E2EE.md so that the
// browser can implement the same protocol.
package group
