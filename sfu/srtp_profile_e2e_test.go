package sfu_test

import (
	"encoding/binary"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// SRTP protection profile ids on the wire (RFC 5764 section 4.1.2, RFC 7714
// section 14.2).
const (
	srtpAES128CMSHA1_80 = 0x0001
	srtpAEADAES128GCM   = 0x0007
	srtpAEADAES256GCM   = 0x0008
)

// helloTap stands in front of a node's ICE UDP socket and records the
// SRTP profile chosen by every DTLS ServerHello crossing it: the ones the
// node sends (it is the DTLS server where it offered) and the ones it
// receives (the client is the DTLS server where the node answered).
type helloTap struct {
	mu   sync.Mutex
	sent []uint16
	recv []uint16
}

func (h *helloTap) wrap(pc net.PacketConn) net.PacketConn {
	return &helloTapConn{PacketConn: pc, h: h}
}

func (h *helloTap) profiles() (sent, recv []uint16) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]uint16(nil), h.sent...), append([]uint16(nil), h.recv...)
}

type helloTapConn struct {
	net.PacketConn
	h *helloTap
}

func (c *helloTapConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, addr, err := c.PacketConn.ReadFrom(p)
	if err == nil {
		if prof, ok := serverHelloSRTPProfile(p[:n]); ok {
			c.h.mu.Lock()
			c.h.recv = append(c.h.recv, prof)
			c.h.mu.Unlock()
		}
	}
	return n, addr, err
}

func (c *helloTapConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	if prof, ok := serverHelloSRTPProfile(p); ok {
		c.h.mu.Lock()
		c.h.sent = append(c.h.sent, prof)
		c.h.mu.Unlock()
	}
	return c.PacketConn.WriteTo(p, addr)
}

// serverHelloSRTPProfile finds a DTLS ServerHello among the records of
// datagram d and returns the profile its use_srtp extension chose. A
// ServerHello is small and comes first in its flight, so it is never
// fragmented in practice; a fragment is not parsed.
func serverHelloSRTPProfile(d []byte) (uint16, bool) {
	const (
		recordHeader     = 13 // type, version, epoch, sequence number, length
		handshakeHeader  = 12 // type, length, message_seq, fragment offset and length
		contentHandshake = 22
		serverHello      = 2
		useSRTP          = 14
	)
	// Not DTLS (STUN, SRTP, SRTCP) by RFC 7983's first-byte ranges.
	if len(d) == 0 || d[0] < 20 || d[0] > 63 {
		return 0, false
	}
	for len(d) >= recordHeader {
		typ := d[0]
		epoch := binary.BigEndian.Uint16(d[3:5])
		n := int(binary.BigEndian.Uint16(d[11:13]))
		if len(d) < recordHeader+n {
			return 0, false
		}
		body := d[recordHeader : recordHeader+n]
		d = d[recordHeader+n:]
		if typ != contentHandshake || epoch != 0 || len(body) < handshakeHeader || body[0] != serverHello {
			continue
		}
		msgLen := int(body[1])<<16 | int(body[2])<<8 | int(body[3])
		fragOff := int(body[6])<<16 | int(body[7])<<8 | int(body[8])
		fragLen := int(body[9])<<16 | int(body[10])<<8 | int(body[11])
		if fragOff != 0 || fragLen != msgLen || len(body) < handshakeHeader+msgLen {
			continue
		}
		h := body[handshakeHeader : handshakeHeader+msgLen]
		// version, random, session id, cipher suite, compression method
		if len(h) < 2+32+1 {
			continue
		}
		off := 2 + 32
		off += 1 + int(h[off])
		off += 2 + 1
		if len(h) < off+2 {
			continue
		}
		ext := h[off+2:]
		if extLen := int(binary.BigEndian.Uint16(h[off:])); extLen < len(ext) {
			ext = ext[:extLen]
		}
		for len(ext) >= 4 {
			et := binary.BigEndian.Uint16(ext[0:2])
			el := int(binary.BigEndian.Uint16(ext[2:4]))
			if len(ext) < 4+el {
				break
			}
			v := ext[4 : 4+el]
			ext = ext[4+el:]
			// profiles length (2), one profile (2), MKI length (1)
			if et == useSRTP && len(v) >= 4 && binary.BigEndian.Uint16(v[0:2]) >= 2 {
				return binary.BigEndian.Uint16(v[2:4]), true
			}
		}
	}
	return 0, false
}

// TestSRTPProfileGCM: between the Go client and the node, every DTLS
// handshake chooses AEAD_AES_128_GCM, as seen in the ServerHellos on the
// node's socket: the node's, on the connections it offers (subscribe),
// and the client's, on the ones the client offers (publish). Without the
// node's or the client's profile order pion's default, AES-256-GCM, is
// chosen and this fails.
func TestSRTPProfileGCM(t *testing.T) {
	t.Parallel()
	tap := &helloTap{}
	srv := sfutest.Start(t, sfu.Config{WrapUDP: tap.wrap})
	a := join(t, srv, "m-srtp", "a", client.Options{})
	b := join(t, srv, "m-srtp", "b", client.Options{})
	a.publish(mediaOpts{noAudio: true})
	// Media reaching b has crossed both of the node's handshakes for it:
	// a's publish connection and b's subscribe connection.
	eventually(t, 10*time.Second, "b receives a's video", func() bool {
		return b.recv.packets("a", webrtc.RTPCodecTypeVideo) > 0
	})
	sent, recv := tap.profiles()
	if len(sent) == 0 || len(recv) == 0 {
		t.Fatalf("ServerHellos seen: %d sent by the node, %d received; want both", len(sent), len(recv))
	}
	t.Logf("ServerHellos: %d from the node, %d from clients", len(sent), len(recv))
	name := map[uint16]string{srtpAES128CMSHA1_80: "AES128_CM_HMAC_SHA1_80", srtpAEADAES128GCM: "AEAD_AES_128_GCM", srtpAEADAES256GCM: "AEAD_AES_256_GCM"}
	for _, l := range []struct {
		who   string
		profs []uint16
	}{{"node", sent}, {"client", recv}} {
		for _, p := range l.profs {
			if p != srtpAEADAES128GCM {
				t.Errorf("a ServerHello from the %s chose SRTP profile %#04x (%s), want AEAD_AES_128_GCM", l.who, p, name[p])
			}
		}
	}
}
