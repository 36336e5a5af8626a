package group

import (
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// KIDIndexBits is how many low bits of a KID hold the sender index; the
// epoch number takes the 48 above them.
const KIDIndexBits = 16

// senderLabel starts the HKDF info of every per-sender base key.
const senderLabel = "oakmeet-e2ee-v1 sender"

// BaseKeySize is the size of a per-sender SFrame base key.
const BaseKeySize = 32

// KID is the SFrame key id of roster index in epoch: epoch<<16 | index.
// Epochs stay below 2^48 (keymsg.MaxEpoch), so KIDs never wrap and a KID is
// never reused for another key.
func KID(epoch uint64, index int) uint64 {
	return epoch<<KIDIndexBits | uint64(index)
}

// SplitKID returns the epoch and roster index a KID names.
func SplitKID(kid uint64) (epoch uint64, index int) {
	return kid >> KIDIndexBits, int(kid & (1<<KIDIndexBits - 1))
}

// SenderBaseKey derives the SFrame base key of roster index in an epoch:
// HKDF-SHA256 with an empty salt, the epoch secret as input keying material,
// info "oakmeet-e2ee-v1 sender" ‖ u16(index), 32 bytes.
func SenderBaseKey(epochSecret []byte, index int) ([]byte, error) {
	if index < 0 || index >= keymsg.MaxRoster {
		return nil, fmt.Errorf("group: sender index %d out of range", index)
	}
	info := binary.BigEndian.AppendUint16([]byte(senderLabel), uint16(index))
	return hkdf.Key(sha256.New, epochSecret, nil, string(info), BaseKeySize)
}
