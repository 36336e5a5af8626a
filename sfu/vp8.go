package sfu

// vp8KeyFrameStart reports whether an RTP payload is the first packet of a
// VP8 key frame (RFC 7741): the payload descriptor marks the start of
// partition 0 and the inverse key frame bit of the VP8 payload header is 0.
//
// With end-to-end encryption the frame itself is ciphertext; senders leave
// the VP8 payload header in clear (see docs/PROTOCOL.md) so this still works.
func vp8KeyFrameStart(p []byte) bool {
	if len(p) < 1 {
		return false
	}
	start := p[0]&0x10 != 0
	pid := p[0] & 0x07
	if !start || pid != 0 {
		return false
	}
	i := 1
	if p[0]&0x80 != 0 { // X: extension byte follows
		if len(p) <= i {
			return false
		}
		x := p[i]
		i++
		if x&0x80 != 0 { // I: picture id, 7 or 15 bits
			if len(p) <= i {
				return false
			}
			if p[i]&0x80 != 0 {
				i += 2
			} else {
				i++
			}
		}
		if x&0x40 != 0 { // L: TL0PICIDX
			i++
		}
		if x&0x30 != 0 { // T or K: TID/KEYIDX byte
			i++
		}
	}
	if len(p) <= i {
		return false
	}
	return p[i]&0x01 == 0
}
