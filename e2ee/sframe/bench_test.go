package sframe

import (
	"fmt"
	"testing"
)

const benchFrameSize = 1200

func BenchmarkEncrypt(b *testing.B) {
	for _, suite := range []Suite{AES128GCM, AES256GCM, AES128CTRHMAC80} {
		b.Run(fmt.Sprintf("%v/%d", suite, benchFrameSize), func(b *testing.B) {
			s, _ := newPair(b, suite, 1<<16|3)
			pt := make([]byte, benchFrameSize)
			md := []byte{0x90, 0x01, 0x02}
			dst := make([]byte, 0, benchFrameSize+suite.Overhead())
			b.SetBytes(benchFrameSize)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.Encrypt(dst[:0], md, pt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkDecrypt(b *testing.B) {
	for _, suite := range []Suite{AES128GCM, AES256GCM, AES128CTRHMAC80} {
		b.Run(fmt.Sprintf("%v/%d", suite, benchFrameSize), func(b *testing.B) {
			s, r := newPair(b, suite, 1<<16|3)
			md := []byte{0x90, 0x01, 0x02}
			frames := make([][]byte, ReplayWindow)
			for i := range frames {
				frames[i], _ = s.Encrypt(nil, md, make([]byte, benchFrameSize))
			}
			rk := (*r.keys.Load())[1<<16|3]
			dst := make([]byte, 0, benchFrameSize)
			b.SetBytes(benchFrameSize)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i == len(frames) {
					// The same frames again would be replays; forget them.
					rk.win = replayWindow{}
					i = 0
				}
				if _, err := r.Decrypt(dst[:0], md, frames[i]); err != nil {
					b.Fatal(err)
				}
				i++
			}
		})
	}
}
