package keymsg

import (
	"crypto/sha256"
	"encoding/binary"
)

// Domain-separation strings: each signed or derived byte string starts with
// its own label and a zero byte, so a signature or key made for one purpose
// is never valid for another.
const (
	announceLabel = "oakmeet-e2ee-v2 announce"
	epochLabel    = "oakmeet-e2ee-v2 epoch"
	ackLabel      = "oakmeet-e2ee-v2 ack"
	commitLabel   = "oakmeet-e2ee-v2 commit"
	nodeLabel     = "oakmeet-e2ee-v2 node"
	// The sealing of the secret did not change in version 2, so its label
	// did not either.
	sealInfoLabel = "oakmeet-e2ee-v1 epoch secret"
)

// appendLP16 appends a 2-byte big-endian length and s.
func appendLP16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// announceTBS is what an announcement's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ lp16(name) ‖
// identity(32) ‖ hpke(32).
func announceTBS(meeting string, e *Entry) []byte {
	b := make([]byte, 0, len(announceLabel)+1+6+len(meeting)+len(e.Participant)+len(e.Name)+64)
	b = append(b, announceLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = appendLP16(b, e.Participant)
	b = appendLP16(b, e.Name)
	b = append(b, e.Identity...)
	return append(b, e.HPKE...)
}

// epochTBS is what an epoch message's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ u64(epoch) ‖ u16(n) ‖ n × (lp16(participant)
// ‖ lp16(name) ‖ identity(32) ‖ hpke(32) ‖ SHA-256(sealed copy)).
func epochTBS(meeting string, epoch uint64, roster []Entry, sealed [][]byte) []byte {
	size := len(epochLabel) + 1 + 2 + len(meeting) + 8 + 2
	for _, e := range roster {
		size += 4 + len(e.Participant) + len(e.Name) + 96
	}
	b := make([]byte, 0, size)
	b = append(b, epochLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(roster)))
	for i, e := range roster {
		b = appendLP16(b, e.Participant)
		b = appendLP16(b, e.Name)
		b = append(b, e.Identity...)
		b = append(b, e.HPKE...)
		h := sha256.Sum256(sealed[i])
		b = append(b, h[:]...)
	}
	return b
}

// sealInfo is the HPKE info of every copy of one epoch's secret:
// label ‖ 0x00 ‖ lp16(meeting) ‖ u64(epoch).
func sealInfo(meeting string, epoch uint64) []byte {
	b := make([]byte, 0, len(sealInfoLabel)+1+2+len(meeting)+8)
	b = append(b, sealInfoLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	return binary.BigEndian.AppendUint64(b, epoch)
}

// ackTBS is what an ack's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ u64(epoch) ‖ lp16(participant) ‖ digest(32).
func ackTBS(meeting string, epoch uint64, participant string, digest []byte) []byte {
	b := make([]byte, 0, len(ackLabel)+1+2+len(meeting)+8+2+len(participant)+DigestSize)
	b = append(b, ackLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = appendLP16(b, participant)
	return append(b, digest...)
}

// commitTBS is what a commit's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ u64(epoch) ‖ digest(32).
func commitTBS(meeting string, epoch uint64, digest []byte) []byte {
	b := make([]byte, 0, len(commitLabel)+1+2+len(meeting)+8+DigestSize)
	b = append(b, commitLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = binary.BigEndian.AppendUint64(b, epoch)
	return append(b, digest...)
}

// nodeTBS is what a node message's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ lp16(cert).
func nodeTBS(meeting, participant, cert string) []byte {
	b := make([]byte, 0, len(nodeLabel)+1+6+len(meeting)+len(participant)+len(cert))
	b = append(b, nodeLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = appendLP16(b, participant)
	return appendLP16(b, cert)
}
