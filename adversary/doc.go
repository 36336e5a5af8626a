// Package adversary holds misbehaving parts of an oakmeet deployment, for
// tests that check what participants' clients and nodes verify by
// themselves: real components made to lie, never mocks.
//
//   - Store rewrites a meeting's stored record with the control plane's
//     own NATS credentials, as a compromised or buggy control plane (or
//     whoever holds its data) can: the control plane then enforces and
//     places by what it reads back.
//   - Front is a lying control plane's HTTP API: a reverse proxy before the
//     real one that edits join answers (the node's certificate, its address,
//     the host's statements) before they reach a client.
//   - Node is a real media node started outside testcluster, so a test can
//     read its log (what it refused, whom it saw connect) and give it a
//     certificate of its own choosing.
//   - Intruder is a participant that checks nothing: it joins through the
//     control plane and connects to whatever node it is given, as a
//     control plane's own participant would.
//
// Certificates for the lies (self-signed, expired, another node's) are made
// by the functions in certs.go.
package adversary
