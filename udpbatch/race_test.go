//go:build race

package udpbatch

// The race detector makes sync.Pool drop what it holds now and then, so
// the pools under sendmmsg allocate.
const raceEnabled = true
