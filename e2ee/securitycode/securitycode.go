// Package securitycode computes the 40-digit code members of a meeting read
// to each other to detect a server in the middle. It depends only on the
// meeting id, the meeting's routing policy hash (as the host signed it), and
// on who is in the roster under which display name with which identity and
// HPKE keys, so everyone holding the same keys sees the same code, it
// changes when membership, a name or the policy changes, and it stays the
// same across periodic re-keys.
package securitycode

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// Groups is the number of five-digit groups in a code.
const Groups = 8

// label versions the computation; a different computation gets a new label.
const label = "oakmeet-e2ee-v2 security code"

// Code is a security code: eight groups of five decimal digits.
type Code [Groups]uint32

// Input is the byte string the code is the SHA-256 of:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(policyHash) ‖ u16(n) ‖ n ×
// (lp16(participant) ‖ lp16(name) ‖ identity(32) ‖ hpke(32)), entries
// sorted by participant id bytewise, lp16 being a 2-byte big-endian length
// and the bytes. policyHash is the text form of the meeting's effective
// policy hash as the host signed it, or "" if there is none.
func Input(meeting, policyHash string, roster []keymsg.Entry) []byte {
	sorted := slices.Clone(roster)
	slices.SortFunc(sorted, func(a, b keymsg.Entry) int { return strings.Compare(a.Participant, b.Participant) })
	b := append([]byte(label), 0)
	b = appendLP16(b, meeting)
	b = appendLP16(b, policyHash)
	b = binary.BigEndian.AppendUint16(b, uint16(len(sorted)))
	for _, e := range sorted {
		b = appendLP16(b, e.Participant)
		b = appendLP16(b, e.Name)
		b = append(b, e.Identity...)
		b = append(b, e.HPKE...)
	}
	return b
}

func appendLP16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// Compute returns the code of a roster: group i is the big-endian uint32 in
// bytes 4i..4i+3 of SHA-256(Input) modulo 100000.
func Compute(meeting, policyHash string, roster []keymsg.Entry) Code {
	h := sha256.Sum256(Input(meeting, policyHash, roster))
	var c Code
	for i := range c {
		c[i] = binary.BigEndian.Uint32(h[4*i:]) % 100000
	}
	return c
}

// String returns the groups zero-padded to five digits and separated by
// single spaces, e.g. "01234 56789 …".
func (c Code) String() string {
	parts := make([]string, Groups)
	for i, g := range c {
		parts[i] = fmt.Sprintf("%05d", g)
	}
	return strings.Join(parts, " ")
}
