package audit

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

func header(key ed25519.PrivateKey, meeting string) Header {
	return Header{
		Format:    Format,
		PublicKey: base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey)),
		Meeting:   meeting,
		Exported:  time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC),
	}
}

func export(t testing.TB, key ed25519.PrivateKey, h Header, es []Entry, tr Trailer) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteExport(&buf, h, es, tr); err != nil {
		t.Fatalf("WriteExport: %v", err)
	}
	return buf.Bytes()
}

// validExport is an export of interleaved chains, its lines with their
// newlines, and the key.
func validExport(t testing.TB) ([]byte, []string, ed25519.PrivateKey) {
	key := testKey(1)
	es := interleaved(key)
	b := export(t, key, header(key, ""), es, SignHeads(key, Heads(es)))
	return b, strings.SplitAfter(string(b), "\n"), key
}

// wantFailureAt asserts that err is an error naming file line `line`.
func wantFailureAt(t *testing.T, err error, line int) {
	t.Helper()
	var ve *VerifyError
	var le *LineError
	switch {
	case errors.As(err, &ve):
		if ve.Line != line {
			t.Fatalf("error names line %d, want %d: %v", ve.Line, line, err)
		}
	case errors.As(err, &le):
		if le.Line != line {
			t.Fatalf("error names line %d, want %d: %v", le.Line, line, err)
		}
	default:
		t.Fatalf("error = %v, want a *VerifyError or *LineError at line %d", err, line)
	}
}

func TestExportRoundTrip(t *testing.T) {
	b, _, key := validExport(t)
	h, es, tr, err := ReadExport(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("ReadExport: %v", err)
	}
	want := interleaved(key)
	if !reflect.DeepEqual(h, header(key, "")) {
		t.Errorf("header = %+v", h)
	}
	if !reflect.DeepEqual(es, want) {
		t.Errorf("entries differ after round trip")
	}
	if tr == nil || !reflect.DeepEqual(*tr, SignHeads(key, Heads(want))) {
		t.Errorf("trailer = %+v", tr)
	}
	sum, err := VerifyExport(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("VerifyExport: %v", err)
	}
	if sum.Entries != 9 || sum.Chains != 3 || !sum.PublicKey.Equal(key.Public()) {
		t.Errorf("summary = %+v, want 9 entries, 3 chains, the log key", sum)
	}
	// The same export written again is byte-identical.
	if again := export(t, key, h, es, *tr); !bytes.Equal(again, b) {
		t.Errorf("rewriting the export changed it")
	}
}

func TestExportOneMeeting(t *testing.T) {
	key := testKey(1)
	var m1 []Entry
	for _, e := range interleaved(key) {
		if e.Meeting == "m1" {
			m1 = append(m1, e)
		}
	}
	b := export(t, key, header(key, "m1"), m1, SignHeads(key, Heads(m1)))
	if sum, err := VerifyExport(bytes.NewReader(b)); err != nil || sum.Entries != 4 || sum.Chains != 1 {
		t.Fatalf("VerifyExport = %+v, %v", sum, err)
	}
	// An empty chain exports and verifies too.
	b = export(t, key, header(key, "m7"), nil, SignHeads(key, nil))
	if sum, err := VerifyExport(bytes.NewReader(b)); err != nil || sum.Entries != 0 {
		t.Fatalf("VerifyExport of empty export = %+v, %v", sum, err)
	}
	// A per-meeting export may not carry another meeting's chain.
	es := interleaved(key)[:2]
	b = export(t, key, header(key, "m1"), es, SignHeads(key, Heads(es)))
	_, err := VerifyExport(bytes.NewReader(b))
	wantFailureAt(t, err, 3)
}

// TestExportByteFlips flips every byte of one entry line (and its newline)
// in several ways, and a random sample of bytes of every other line.
func TestExportByteFlips(t *testing.T) {
	b, lines, _ := validExport(t)
	offset := func(line int) int { // 1-based line → byte offset
		return len(strings.Join(lines[:line-1], ""))
	}
	check := func(t *testing.T, pos, line int, mask byte) {
		mutated := bytes.Clone(b)
		mutated[pos] ^= mask
		_, err := VerifyExport(bytes.NewReader(mutated))
		if err == nil {
			t.Fatalf("flip 0x%02x at byte %d of line %d (%q→%q) verified", mask, pos-offset(line), line, b[pos], mutated[pos])
		}
		var ve *VerifyError
		var le *LineError
		if errors.As(err, &ve) && ve.Line != line || errors.As(err, &le) && le.Line != line {
			t.Fatalf("flip 0x%02x at byte %d of line %d: error names another line: %v", mask, pos-offset(line), line, err)
		}
	}
	const target = 4 // the third entry
	start, end := offset(target), offset(target+1)
	masks := []byte{0x01, 0x06, 0x20, 0x80, 0xff}
	for pos := start; pos < end; pos++ {
		for _, m := range masks {
			check(t, pos, target, m)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for line := 2; line <= len(lines)-2; line++ { // every entry line
		s, e := offset(line), offset(line+1)
		for range 40 {
			check(t, s+rng.IntN(e-s), line, byte(1+rng.IntN(255)))
		}
	}
}

func TestExportDetectsLineChanges(t *testing.T) {
	_, lines, key := validExport(t)
	other := testKey(2)
	join := func(ls ...string) string { return strings.Join(ls, "") }
	hdr, ents, trl := lines[0], lines[1:10], lines[10]
	otherHeader := string(export(t, other, header(other, ""), nil, Trailer{}))
	otherHeader = otherHeader[:strings.IndexByte(otherHeader, '\n')+1]
	var m2Only []string
	for _, l := range ents {
		if strings.Contains(l, `"meeting":"m2"`) {
			m2Only = append(m2Only, l)
		}
	}
	tests := []struct {
		name string
		file string
		line int
	}{
		{"chains interleaved differently", join(hdr, ents[0], ents[2], ents[1], join(ents[3:]...), trl), 0},
		{"remove entry", join(hdr, join(ents[:3]...), join(ents[4:]...), trl), 7},
		{"reorder within a chain", join(hdr, ents[2], ents[1], ents[0], join(ents[3:]...), trl), 2},
		{"duplicate entry", join(hdr, join(ents[:5]...), ents[4], join(ents[5:]...), trl), 7},
		{"remove last entry of a chain", join(hdr, join(ents[:8]...), trl), 10},
		{"remove a whole chain", join(hdr, ents[0], ents[2], ents[3], ents[5], ents[6], ents[8], trl), 8},
		{"keep only one chain", join(hdr, join(m2Only...), trl), 5},
		{"no trailer", join(hdr, join(ents...)), 11},
		{"trailer signed by another key", join(hdr, join(ents...), string(export(t, other, header(other, ""), nil, SignHeads(other, Heads(interleaved(key)))))[len(otherHeader):]), 11},
		{"header with another key", join(otherHeader, join(ents...), trl), 2},
		{"entry after trailer", join(hdr, join(ents[:8]...), trl, ents[8]), 11},
		{"blank line", join(hdr, ents[0], "\n", join(ents[1:]...), trl), 3},
		{"no header", join(join(ents...), trl), 1},
		{"empty", "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := VerifyExport(strings.NewReader(tt.file))
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("VerifyExport: %v", err)
				}
				return
			}
			wantFailureAt(t, err, tt.line)
		})
	}
}

func TestExportTrailerHeadsMismatch(t *testing.T) {
	key := testKey(1)
	es := interleaved(key)
	for name, head := range map[string]Head{
		"ends earlier":               es[5].Head(),                       // claims m1 ends earlier than it does
		"other hash at the same seq": {Seq: es[8].Seq, Hash: es[5].Hash}, // the head of another m1 chain
	} {
		heads := Heads(es)
		heads["m1"] = head
		b := export(t, key, header(key, ""), es, SignHeads(key, heads))
		_, err := VerifyExport(bytes.NewReader(b))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Meeting != "m1" || ve.Line != 11 {
			t.Fatalf("%s: VerifyExport = %v, want trailer error for m1 at line 11", name, err)
		}
	}
}

func TestReadExportErrors(t *testing.T) {
	_, lines, _ := validExport(t)
	hdr, ent := lines[0], lines[1]
	tests := []struct {
		name string
		file string
		line int
		want string
	}{
		{"truncated json", hdr + ent[:40] + "\n", 2, "malformed JSON"},
		{"not json", hdr + "hello\n", 2, "malformed JSON"},
		{"wrong format", strings.Replace(hdr, Format, "oakmeet-audit/2", 1), 1, "unsupported format"},
		{"key case", hdr + strings.Replace(ent, `"reason"`, `"Reason"`, 1), 2, "canonical"},
		{"unknown field", hdr + strings.Replace(ent, `{"seq":1,`, `{"seq":1,"x":1,`, 1), 2, "canonical"},
		{"space", hdr + strings.Replace(ent, `"seq":1`, `"seq": 1`, 1), 2, "canonical"},
		{"header not an object", "[]\n", 1, "header"},
		{"wrong type", hdr + `{"seq":"1"}` + "\n", 2, "malformed JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := ReadExport(strings.NewReader(tt.file))
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadExport = %v, want *LineError at line %d mentioning %q", err, tt.line, tt.want)
			}
		})
	}
	// A file without a trailer reads; only verification requires it.
	if _, es, tr, err := ReadExport(strings.NewReader(hdr + ent)); err != nil || len(es) != 1 || tr != nil {
		t.Fatalf("ReadExport without trailer = %d entries, trailer %v, %v", len(es), tr, err)
	}
}

func TestExportCRLF(t *testing.T) {
	b, _, _ := validExport(t)
	crlf := bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if _, err := VerifyExport(bytes.NewReader(crlf)); err != nil {
		t.Fatalf("VerifyExport with CRLF line ends: %v", err)
	}
}

func FuzzReadExport(f *testing.F) {
	b, lines, _ := validExport(f)
	f.Add(b)
	f.Add([]byte(lines[0] + lines[1]))
	f.Add([]byte(lines[0] + lines[10]))
	f.Add([]byte(lines[0]))
	f.Add([]byte("{}\n{}\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, es, tr, err := ReadExport(bytes.NewReader(data))
		sum, verr := VerifyExport(bytes.NewReader(data))
		if err != nil {
			if verr == nil {
				t.Fatalf("VerifyExport accepted a file ReadExport rejects: %v", err)
			}
			return
		}
		// What reads must write back byte for byte: there is one spelling.
		var buf bytes.Buffer
		if tr != nil {
			if werr := WriteExport(&buf, h, es, *tr); werr != nil {
				t.Fatalf("WriteExport of a file that read: %v", werr)
			}
			norm := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
			if !bytes.HasSuffix(norm, []byte("\n")) {
				norm = append(norm, '\n')
			}
			if !bytes.Equal(buf.Bytes(), norm) {
				t.Fatalf("rewrite differs:\n%q\n%q", buf.Bytes(), norm)
			}
		}
		if verr == nil && (sum.Entries != len(es) || tr == nil) {
			t.Fatalf("summary %+v for %d entries, trailer %v", sum, len(es), tr)
		}
	})
}
