package audit

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// smallLog is a log of three meetings and the deployment chain.
func smallLog(t testing.TB) *testLog {
	l := newTestLog(t, 1)
	l.fill(30, []string{"m1", "m2", "m3"}, 1)
	return l
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
	l := smallLog(t)
	for name, x := range map[string]Export{
		"full":       l.full(l.size()),
		"pack":       l.pack("m2", l.size(), 3, 10, l.size()),
		"empty pack": l.pack("m9", l.size()),
	} {
		t.Run(name, func(t *testing.T) {
			b := encode(t, x)
			back, err := ReadExport(bytes.NewReader(b))
			if err != nil {
				t.Fatalf("ReadExport: %v", err)
			}
			x.Header.Format = Format
			if !reflect.DeepEqual(back.Header, x.Header) || !reflect.DeepEqual(back.Entries, x.Entries) ||
				!reflect.DeepEqual(back.Trailer, x.Trailer) || len(back.Proofs) != len(x.Proofs) || len(back.Consistency) != len(x.Consistency) {
				t.Fatalf("round trip changed the export:\n got %+v\nwant %+v", back, x)
			}
			for i := range x.Proofs {
				if !slices.Equal(back.Proofs[i], x.Proofs[i]) {
					t.Fatalf("proof %d changed", i)
				}
			}
			if again := encode(t, back); !bytes.Equal(again, b) {
				t.Fatal("rewriting the export changed it")
			}
			sum, err := l.verify(b)
			if err != nil {
				t.Fatalf("VerifyExport: %v", err)
			}
			if sum.Entries != len(x.Entries) || sum.Chains != len(Heads(x.Entries)) || sum.Meeting != x.Header.Meeting ||
				sum.Checkpoint.Size != l.size() || sum.VerifierKey != l.vkey {
				t.Fatalf("summary %+v", sum)
			}
		})
	}
}

// TestExportByteFlips flips every byte of one entry line (and its newline)
// in several ways, and a random sample of bytes of every other entry line:
// each fails, naming that line.
func TestExportByteFlips(t *testing.T) {
	l := newTestLog(t, 1)
	l.fill(8, []string{"m1", "m2"}, 1)
	for _, x := range []Export{l.full(l.size()), l.pack("m1", l.size())} {
		b := encode(t, x)
		lines := strings.SplitAfter(string(b), "\n")
		offset := func(line int) int { return len(strings.Join(lines[:line-1], "")) }
		check := func(pos, line int, mask byte) {
			mutated := bytes.Clone(b)
			mutated[pos] ^= mask
			_, err := l.verify(mutated)
			if err == nil {
				t.Fatalf("flip 0x%02x at byte %d of line %d (%q→%q) verified", mask, pos-offset(line), line, b[pos], mutated[pos])
			}
			var ve *VerifyError
			var le *LineError
			if errors.As(err, &ve) && ve.Line != line || errors.As(err, &le) && le.Line != line {
				t.Fatalf("flip 0x%02x at byte %d of line %d: error names another line: %v", mask, pos-offset(line), line, err)
			}
		}
		target := 4
		start, end := offset(target), offset(target+1)
		for pos := start; pos < end; pos++ {
			for _, m := range []byte{0x01, 0xff} {
				check(pos, target, m)
			}
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for line := 2; line <= len(lines)-2; line++ {
			if !strings.HasPrefix(lines[line-1], `{"seq":`) {
				continue
			}
			s, e := offset(line), offset(line+1)
			for range 10 {
				check(s+rng.IntN(e-s), line, byte(1+rng.IntN(255)))
			}
		}
	}
}

func TestExportDetectsLineChanges(t *testing.T) {
	l := smallLog(t)
	b := encode(t, l.full(l.size()))
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1] // the empty string after the last newline
	hdr, ents, trl := lines[0], lines[1:len(lines)-1], lines[len(lines)-1]
	join := func(ls ...string) string { return strings.Join(ls, "") }
	n := len(ents)
	tests := []struct {
		name string
		file string
		line int
		err  error
	}{
		{"untouched", string(b), 0, nil},
		{"remove entry", join(hdr, join(ents[:3]...), join(ents[4:]...), trl), 5, ErrOrder},
		{"swap two entries", join(hdr, ents[0], ents[2], ents[1], join(ents[3:]...), trl), 3, ErrOrder},
		{"duplicate entry", join(hdr, join(ents[:5]...), ents[4], join(ents[5:]...), trl), 7, ErrOrder},
		{"remove last entry", join(hdr, join(ents[:n-1]...), trl), n + 1, ErrNotIncluded},
		{"no trailer", join(hdr, join(ents...)), n + 2, nil},
		{"entry after trailer", join(hdr, join(ents[:n-1]...), trl, ents[n-1]), n + 2, nil},
		{"blank line", join(hdr, ents[0], "\n", join(ents[1:]...), trl), 3, nil},
		{"no header", join(join(ents...), trl), 1, nil},
		{"inclusion proof in a full export", join(hdr, ents[0], `{"inclusion":[]}`+"\n", join(ents[1:]...), trl), 3, nil},
		{"empty", "", 1, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := l.verify([]byte(tt.file))
			if tt.line == 0 {
				if err != nil {
					t.Fatalf("VerifyExport: %v", err)
				}
				return
			}
			wantFailureAt(t, err, tt.line)
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("error %v is not %v", err, tt.err)
			}
		})
	}
}

func TestExportTrailerHeadsMismatch(t *testing.T) {
	l := smallLog(t)
	x := l.full(l.size())
	last := len(x.Entries) + 2
	heads := Heads(x.Entries)
	var earlier Head
	for _, e := range x.Entries {
		if e.Meeting == "m1" && e.Seq == 2 {
			earlier = e.Head()
		}
	}
	for name, mutate := range map[string]func(map[string]Head){
		"ends earlier":        func(h map[string]Head) { h["m1"] = earlier },
		"other hash":          func(h map[string]Head) { h["m1"] = Head{Seq: h["m1"].Seq, Hash: earlier.Hash} },
		"chain missing":       func(h map[string]Head) { delete(h, "m1") },
		"chain with no entry": func(h map[string]Head) { h["m9"] = earlier },
	} {
		h := Heads(x.Entries)
		mutate(h)
		y := x
		y.Trailer = SignHeads(l.key, l.cp(l.size()), "", h)
		_, err := l.verify(encode(t, y))
		var ve *VerifyError
		if !errors.As(err, &ve) || ve.Line != last || !errors.Is(err, ErrTrailer) {
			t.Fatalf("%s: VerifyExport = %v, want a trailer error at line %d", name, err, last)
		}
	}
	y := x
	y.Trailer = SignHeads(testKey(9), l.cp(l.size()), "", heads)
	if _, err := l.verify(encode(t, y)); !errors.Is(err, ErrTrailer) {
		t.Fatalf("trailer signed by another key: %v", err)
	}
}

func TestReadExportErrors(t *testing.T) {
	l := smallLog(t)
	full := strings.SplitAfter(string(encode(t, l.full(l.size()))), "\n")
	pack := strings.SplitAfter(string(encode(t, l.pack("m1", l.size(), 5))), "\n")
	hdr, ent, trl := full[0], full[1], full[len(full)-2]
	phdr, pent, pincl := pack[0], pack[1], pack[2]
	pcons, ptrl := pack[len(pack)-3], pack[len(pack)-2]
	if !strings.HasPrefix(pcons, `{"consistency":`) || !strings.HasPrefix(pincl, `{"inclusion":`) {
		t.Fatalf("unexpected pack layout: %q %q", pcons, pincl)
	}
	tests := []struct {
		name string
		file string
		line int
		want string
	}{
		{"truncated json", hdr + ent[:40] + "\n" + trl, 2, "malformed JSON"},
		{"not json", hdr + "hello\n", 2, "not an entry"},
		{"wrong format", strings.Replace(hdr, Format, "oakmeet-audit/1", 1), 1, "unsupported format"},
		{"key case", hdr + strings.Replace(ent, `"reason"`, `"Reason"`, 1) + trl, 2, "canonical"},
		{"unknown field", hdr + strings.Replace(ent, `"index":`, `"x":1,"index":`, 1) + trl, 2, "canonical"},
		{"space", hdr + strings.Replace(ent, `"seq":1`, `"seq": 1`, 1) + trl, 2, "canonical"},
		{"header not an object", "[]\n", 1, "header"},
		{"wrong type", hdr + `{"seq":"1"}` + "\n", 2, "malformed JSON"},
		{"no trailer", hdr + ent, 3, "no trailer"},
		{"null heads", hdr + `{"heads":null,"sig":""}` + "\n", 2, "null"},
		{"pack entry without proof", phdr + pent + ptrl, 3, "inclusion proof"},
		{"pack ends after an entry", phdr + pent, 3, "no inclusion proof"},
		{"proof without entry", phdr + pincl + ptrl, 2, "belongs after an entry"},
		{"null proof", phdr + pent + `{"inclusion":null}` + "\n" + ptrl, 3, "null"},
		{"null consistency", phdr + `{"consistency":{"from":1,"to":2,"proof":null}}` + "\n" + ptrl, 2, "null"},
		{"entry after consistency", phdr + pcons + pent + pincl + ptrl, 3, "after the consistency"},
		{"hash not base64", phdr + pent + `{"inclusion":["x"]}` + "\n" + ptrl, 3, "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadExport(strings.NewReader(tt.file))
			var le *LineError
			if !errors.As(err, &le) || le.Line != tt.line || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ReadExport = %v, want *LineError at line %d mentioning %q", err, tt.line, tt.want)
			}
			if _, verr := l.verify([]byte(tt.file)); verr == nil {
				t.Fatal("VerifyExport accepted it")
			}
		})
	}
}

func TestWriteExportErrors(t *testing.T) {
	l := smallLog(t)
	x := l.pack("m1", l.size())
	x.Proofs = x.Proofs[1:]
	if err := WriteExport(&bytes.Buffer{}, x); err == nil {
		t.Fatal("a pack with a proof missing was written")
	}
	y := l.full(l.size())
	y.Proofs = x.Proofs
	if err := WriteExport(&bytes.Buffer{}, y); err == nil {
		t.Fatal("a full export with proofs was written")
	}
	y = l.full(l.size())
	y.Header.Format = "oakmeet-audit/1"
	if err := WriteExport(&bytes.Buffer{}, y); err == nil {
		t.Fatal("format 1 was written")
	}
}

func TestExportCRLF(t *testing.T) {
	l := smallLog(t)
	b := encode(t, l.pack("m3", l.size()))
	crlf := bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
	if _, err := l.verify(crlf); err != nil {
		t.Fatalf("VerifyExport with CRLF line ends: %v", err)
	}
}
