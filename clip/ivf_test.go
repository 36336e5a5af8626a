package clip

import (
	"encoding/binary"
	"runtime"
	"testing"
)

// hugeFrameIVF is an IVF file whose one frame claims nearly 4 GiB: the
// input the fuzzer found (FuzzParse, testdata/fuzz/FuzzParse/ivf-huge-frame).
func hugeFrameIVF() []byte {
	b := make([]byte, ivfFileHeader, ivfFileHeader+ivfFrameHeader+4)
	copy(b, "DKIF")
	binary.LittleEndian.PutUint16(b[6:], ivfFileHeader)
	copy(b[8:], "VP80")
	binary.LittleEndian.PutUint32(b[16:], 30)
	binary.LittleEndian.PutUint32(b[20:], 1)
	frame := make([]byte, ivfFrameHeader)
	binary.LittleEndian.PutUint32(frame, 0xfffffff0)
	return append(append(b, frame...), 0x10, 0x02, 0x00, 0x9d)
}

// A frame longer than the file is refused before anything is allocated
// for it.
func TestIVFFrameLongerThanFile(t *testing.T) {
	data := hugeFrameIVF()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := parseIVF(data)
	runtime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a frame of 4 GiB in a 48-byte file was accepted")
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 1<<20 {
		t.Fatalf("parsing a 48-byte file allocated %d bytes", grew)
	}
	if _, err := Video(); err != nil {
		t.Fatalf("the committed clip no longer parses: %v", err)
	}
}
