// Package sframe implements SFrame (RFC 9605): the per-frame end-to-end
// encryption that media travels in, so that the servers forwarding it only
// ever hold ciphertext.
//
// It is pure cryptography with no transport: a [Sender] turns a frame into
// header ‖ ciphertext ‖ tag under one key (KID) with a counter that never
// repeats, and a [Receiver] holds the keys of every KID it accepts and
// reverses that. Which keys exist and when they change is decided elsewhere
// (the key schedule in e2ee/group); this package only derives the SFrame key
// and salt from a base key exactly as RFC 9605 Section 4.4.2 says.
//
// Hot paths do not allocate once dst has capacity, so a media pipeline can
// reuse one buffer per track.
package sframe
