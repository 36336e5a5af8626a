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

// vp8Desc locates the fields of a VP8 payload descriptor (RFC 7741 4.2)
// that a forwarder rewrites; an offset of 0 means the field is absent
// (byte 0 is always the first descriptor byte).
type vp8Desc struct {
	picAt int  // offset of the PictureID
	pic15 bool // the PictureID has 15 bits, else 7
	tl0At int  // offset of TL0PICIDX
}

// parseVP8Desc finds the PictureID and TL0PICIDX of payload p.
func parseVP8Desc(p []byte) (d vp8Desc, ok bool) {
	if len(p) < 1 {
		return d, false
	}
	if p[0]&0x80 == 0 {
		return d, true
	}
	if len(p) < 2 {
		return d, false
	}
	x := p[1]
	i := 2
	if x&0x80 != 0 {
		if len(p) <= i {
			return d, false
		}
		d.picAt = i
		if p[i]&0x80 != 0 {
			d.pic15 = true
			i += 2
		} else {
			i++
		}
	}
	if x&0x40 != 0 {
		d.tl0At = i
		i++
	}
	if len(p) < i {
		return vp8Desc{}, false
	}
	return d, true
}

// picture is the descriptor's PictureID, 0 if absent.
func (d vp8Desc) picture(p []byte) uint16 {
	switch {
	case d.picAt == 0:
		return 0
	case d.pic15:
		return uint16(p[d.picAt]&0x7f)<<8 | uint16(p[d.picAt+1])
	default:
		return uint16(p[d.picAt] & 0x7f)
	}
}

// tl0 is the descriptor's TL0PICIDX, 0 if absent.
func (d vp8Desc) tl0(p []byte) uint8 {
	if d.tl0At == 0 {
		return 0
	}
	return p[d.tl0At]
}

// setPicture writes pic into p's PictureID, in the width p carries.
func (d vp8Desc) setPicture(p []byte, pic uint16) {
	switch {
	case d.picAt == 0:
	case d.pic15:
		p[d.picAt] = 0x80 | byte(pic>>8)&0x7f
		p[d.picAt+1] = byte(pic)
	default:
		p[d.picAt] = byte(pic) & 0x7f
	}
}

// setTL0 writes tl0 into p's TL0PICIDX.
func (d vp8Desc) setTL0(p []byte, tl0 uint8) {
	if d.tl0At != 0 {
		p[d.tl0At] = tl0
	}
}
