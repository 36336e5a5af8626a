package udpbatch

import (
	"encoding/binary"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// segmentCmsgLen is the size of a UDP_SEGMENT control message.
var segmentCmsgLen = unix.CmsgSpace(2)

// putSegmentCmsg writes a UDP_SEGMENT control message for segments of
// size bytes into oob, which is segmentCmsgLen long.
func putSegmentCmsg(oob []byte, size int) {
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], uint16(size))
}

// gsoSupported asks the kernel whether the socket can take UDP_SEGMENT
// (Linux 4.18 and later).
func gsoSupported(c *net.UDPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	_ = rc.Control(func(fd uintptr) {
		_, err := unix.GetsockoptInt(int(fd), unix.IPPROTO_UDP, unix.UDP_SEGMENT)
		ok = err == nil
	})
	return ok
}
