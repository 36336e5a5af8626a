// Package system holds tests of the whole deployment: control plane, NATS
// and real media nodes with real WebRTC clients, exercising the promises
// across nodes, under policy change, overload and node loss.
package system
