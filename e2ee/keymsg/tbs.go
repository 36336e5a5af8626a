package keymsg

import (
	"crypto/sha256"
	"encoding/binary"
)

// Domain-separation strings: each signed or derived byte string starts with
// its own label and a zero byte, so a signature or key made for one purpose
// is never valid for another.
const (
	announceLabel = "oakmeet-e2ee-v1 announce"
	epochLabel    = "oakmeet-e2ee-v1 epoch"
	sealInfoLabel = "oakmeet-e2ee-v1 epoch secret"
)

// appendLP16 appends a 2-byte big-endian length and s.
func appendLP16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// announceTBS is what an announcement's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ identity(32) ‖ hpke(32).
func announceTBS(meeting, participant string, identityKey, hpkeKey []byte) []byte {
	b := make([]byte, 0, len(announceLabel)+1+4+len(meeting)+len(participant)+64)
	b = append(b, announceLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = appendLP16(b, participant)
	b = append(b, identityKey...)
	return append(b, hpkeKey...)
}

// epochTBS is what an epoch message's signature covers:
// label ‖ 0x00 ‖ lp16(meeting) ‖ u64(epoch) ‖ u16(n) ‖ n × (lp16(participant)
// ‖ identity(32) ‖ hpke(32) ‖ SHA-256(sealed copy)).
func epochTBS(meeting string, epoch uint64, roster []Entry, sealed [][]byte) []byte {
	b := make([]byte, 0, len(epochLabel)+1+2+len(meeting)+8+2+len(roster)*(2+32+96))
	b = append(b, epochLabel...)
	b = append(b, 0)
	b = appendLP16(b, meeting)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = binary.BigEndian.AppendUint16(b, uint16(len(roster)))
	for i, e := range roster {
		b = appendLP16(b, e.Participant)
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
