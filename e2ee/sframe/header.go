package sframe

import "math/bits"

// MaxHeaderSize is the longest SFrame header: the config byte plus an 8-byte
// KID and an 8-byte CTR.
const MaxHeaderSize = 17

// Header is the SFrame header (RFC 9605 Section 4.3): which key a frame was
// made with and the counter that makes its nonce unique.
type Header struct {
	KID uint64
	CTR uint64
}

// Len is the encoded size of h in bytes.
func (h Header) Len() int { return 1 + fieldLen(h.KID) + fieldLen(h.CTR) }

// fieldLen is the bytes a KID or CTR value occupies after the config byte:
// none for 0..7, which fit in the config byte, else the minimal big-endian
// length.
func fieldLen(v uint64) int {
	if v < 8 {
		return 0
	}
	return (bits.Len64(v) + 7) / 8
}

// Append appends the minimal encoding of h to dst.
//
// Config byte: X(1) K(3) Y(1) C(3). X=0 puts the KID in K; X=1 says a KID of
// K+1 bytes follows. Y and C do the same for the CTR, which follows the KID.
func (h Header) Append(dst []byte) []byte {
	kl, cl := fieldLen(h.KID), fieldLen(h.CTR)
	var config byte
	if kl == 0 {
		config = byte(h.KID) << 4
	} else {
		config = 0x80 | byte(kl-1)<<4
	}
	if cl == 0 {
		config |= byte(h.CTR)
	} else {
		config |= 0x08 | byte(cl-1)
	}
	dst = append(dst, config)
	dst = appendBE(dst, h.KID, kl)
	return appendBE(dst, h.CTR, cl)
}

func appendBE(dst []byte, v uint64, n int) []byte {
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(v>>(8*i)))
	}
	return dst
}

// ParseHeader decodes the header at the start of b and returns it with its
// length. Encodings that are not minimal (a value below 8 carried in extra
// bytes, or a leading zero byte) are rejected with ErrMalformedHeader so that
// every header has exactly one encoding.
func ParseHeader(b []byte) (Header, int, error) {
	if len(b) == 0 {
		return Header{}, 0, ErrTruncated
	}
	config := b[0]
	n := 1
	var h Header
	var err error
	if config&0x80 == 0 {
		h.KID = uint64(config>>4) & 0x07
	} else {
		h.KID, n, err = readField(b, n, int(config>>4&0x07)+1)
		if err != nil {
			return Header{}, 0, err
		}
	}
	if config&0x08 == 0 {
		h.CTR = uint64(config & 0x07)
	} else {
		h.CTR, n, err = readField(b, n, int(config&0x07)+1)
		if err != nil {
			return Header{}, 0, err
		}
	}
	return h, n, nil
}

// readField reads an l-byte big-endian value at b[off:] and checks that l is
// the minimal length for it.
func readField(b []byte, off, l int) (uint64, int, error) {
	if len(b)-off < l {
		return 0, 0, ErrTruncated
	}
	var v uint64
	for _, c := range b[off : off+l] {
		v = v<<8 | uint64(c)
	}
	if fieldLen(v) != l {
		return 0, 0, ErrMalformedHeader
	}
	return v, off + l, nil
}
