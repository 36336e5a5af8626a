//go:build !linux

package udpbatch

import "net"

const segmentCmsgLen = 0

func putSegmentCmsg([]byte, int) {}

func gsoSupported(*net.UDPConn) bool { return false }
