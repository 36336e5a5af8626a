// Package system holds tests of the whole deployment: control plane, NATS
// and real media nodes with real WebRTC clients, exercising the promises
// across nodes, under policy change, overload and node loss.
//
// Most of these tests spend their time waiting on real time (media at its
// real pace, heartbeats, move deadlines), not on the processor. The two
// heaviest, the cross-node move and the separate processes, run alone; the
// others (one node each, or no media at all) run in parallel with one
// another once those are done. Every wait is on a condition with a deadline,
// and media is waited for as bytes forwarded, so a loaded machine makes a
// test slower, not wrong.
package system
