package audit

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func FuzzParseCheckpoint(f *testing.F) {
	l := smallLog(f)
	root, _ := l.tree.Root(l.size())
	f.Add(Checkpoint{Origin: l.signer.Name(), Size: l.size(), Root: root}.Text())
	f.Add("o\n0\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Add("o\n1\n\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, body string) {
		c, err := ParseCheckpoint(body)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v is not ErrCheckpoint", err)
			}
			return
		}
		// One tree head, one text.
		if c.Text() != body || c.Size < 0 {
			t.Fatalf("parsed %q as %+v, which is %q", body, c, c.Text())
		}
	})
}

func FuzzOpenCheckpoint(f *testing.F) {
	l := smallLog(f)
	w, wv := testWitness(f, 5, "w1.example")
	signed := l.checkpoint(l.size())
	cosigned, _ := Cosign(signed, l.verifier, w)
	f.Add(signed)
	f.Add(cosigned)
	f.Add(l.checkpoint(1))
	f.Add([]byte("o\n1\n\n— o AAAA\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		peeked, perr := PeekCheckpoint(data)
		c, err := OpenCheckpoint(data, l.verifier)
		if perr != nil && !errors.Is(perr, ErrCheckpoint) {
			t.Fatalf("PeekCheckpoint error %v is not ErrCheckpoint", perr)
		}
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v is not ErrCheckpoint", err)
			}
			return
		}
		if perr != nil || peeked != c {
			t.Fatalf("PeekCheckpoint = %+v, %v; opened %+v", peeked, perr, c)
		}
		if c.Origin != l.signer.Name() {
			t.Fatalf("opened a checkpoint of %q", c.Origin)
		}
		// A checkpoint that opens is a signed note of exactly its text.
		n, err := note.Open(data, note.VerifierList(l.verifier))
		if err != nil || n.Text != c.Text() {
			t.Fatalf("note %q, %v; checkpoint %q", n.Text, err, c.Text())
		}
		// Cosigning keeps it openable, by both.
		co, err := Cosign(data, l.verifier, w)
		if err != nil {
			t.Fatalf("Cosign: %v", err)
		}
		if c2, err := OpenCheckpoint(co, l.verifier, wv); err != nil || c2 != c {
			t.Fatalf("cosigned: %+v, %v", c2, err)
		}
	})
}

func FuzzSplitCheckpoints(f *testing.F) {
	l := smallLog(f)
	a, b := l.checkpoint(3), l.checkpoint(9)
	f.Add(append(append([]byte{}, a...), b...))
	f.Add([]byte(string(a) + "\n\n" + string(b) + "\n"))
	f.Add([]byte("— x\n"))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		notes, err := SplitCheckpoints(data)
		if err != nil {
			if !errors.Is(err, ErrCheckpoint) {
				t.Fatalf("error %v is not ErrCheckpoint", err)
			}
			return
		}
		for _, n := range notes {
			if len(n) == 0 || len(n) > maxCheckpoint {
				t.Fatalf("a note of %d bytes", len(n))
			}
			// A note split off splits into itself.
			again, err := SplitCheckpoints(n)
			if err != nil || len(again) != 1 || !bytes.Equal(again[0], n) {
				t.Fatalf("%q split again into %q, %v", n, again, err)
			}
		}
	})
}

// tinyLog keeps fuzzing fast: coverage instrumentation makes each
// signature check slow.
func tinyLog(t testing.TB) *testLog {
	l := newTestLog(t, 1)
	l.fill(3, []string{"m1"}, 1)
	return l
}

func FuzzReadExport(f *testing.F) {
	l := tinyLog(f)
	full := encode(f, l.full(l.size()))
	pack := encode(f, l.pack("m1", l.size(), 2))
	lines := strings.SplitAfter(string(pack), "\n")
	f.Add(full)
	f.Add(pack)
	f.Add([]byte(lines[0] + lines[1] + lines[2] + lines[len(lines)-2]))
	f.Add([]byte(lines[0]))
	f.Add([]byte("{}\n{}\n"))
	f.Add([]byte(""))
	held := [][]byte{l.checkpoint(2)}
	f.Fuzz(func(t *testing.T, data []byte) {
		x, err := ReadExport(bytes.NewReader(data))
		if err != nil {
			var le *LineError
			if !errors.As(err, &le) || le.Line < 1 {
				t.Fatalf("error %v names no line", err)
			}
			if _, verr := VerifyExport(bytes.NewReader(data), VerifyOptions{Log: l.verifier, Checkpoints: held}); verr == nil {
				t.Fatalf("VerifyExport accepted a file ReadExport rejects: %v", err)
			}
			return
		}
		// Verifying what reads must not panic; only every few inputs,
		// since signature checks under coverage instrumentation are slow
		// and the mutator mostly breaks them at the first entry anyway.
		if len(data)%8 == 0 {
			VerifyExport(bytes.NewReader(data), VerifyOptions{Log: l.verifier, Checkpoints: held})
		}
		// What reads writes back byte for byte: there is one spelling.
		var buf bytes.Buffer
		if werr := WriteExport(&buf, x); werr != nil {
			t.Fatalf("WriteExport of a file that read: %v", werr)
		}
		norm := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		if !bytes.HasSuffix(norm, []byte("\n")) {
			norm = append(bytes.TrimSuffix(norm, []byte("\r")), '\n')
		}
		if !bytes.Equal(buf.Bytes(), norm) {
			t.Fatalf("rewrite differs:\n%q\n%q", buf.Bytes(), norm)
		}
	})
}
