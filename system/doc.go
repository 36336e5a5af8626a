// Package system holds tests of the whole deployment: control plane, NATS
// and real media nodes with real WebRTC clients, exercising the promises
// across nodes, under policy change, overload and node loss, and against a
// lying node: a real node whose signaling reaches participants through a
// front that shows, hides or forges what each one is told. The tests in
// verified_test.go set package adversary's misbehaving parts (a store
// rewritten with the control plane's credentials, a front that edits join
// answers, participants that check nothing) against what each client and
// node verifies by itself of where the meeting's media goes.
//
// Most of these tests spend their time waiting on real time (media at its
// real pace, heartbeats, move deadlines), not on the processor. The two
// heaviest, the cross-node move and the separate processes, run alone; the
// others (one node each, or no media at all) run in parallel with one
// another once those are done. Every wait is on a condition with a deadline,
// and media is waited for as bytes forwarded, so a loaded machine makes a
// test slower, not wrong.
package system
