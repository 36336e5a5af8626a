package audit

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Format is the Header.Format of exports this package writes and reads.
const Format = "oakmeet-audit/2"

// headsDomain separates the trailer's signed message from every other use of
// the log key; /2 binds the checkpoint and meeting as well as the heads.
const headsDomain = "oakmeet-audit-heads/2"

// maxLine bounds one line of an export; entries are a few hundred bytes and a
// trailer of many chains a few hundred per chain.
const maxLine = 16 << 20

// Header is the first line of an export.
type Header struct {
	Format string `json:"format"`
	// VerifierKey is the note verifier string of the log key (as GET
	// /api/config names audit_verifier_key). A verifier trusts it only
	// when told to; otherwise it must match the key it was given.
	VerifierKey string `json:"verifier_key"`
	// Meeting is set in a meeting's evidence pack: the export holds only
	// that meeting's entries, each with its inclusion proof.
	Meeting  string    `json:"meeting,omitempty"`
	Exported time.Time `json:"exported"`
	// Checkpoint is the signed note text of the checkpoint the export is
	// proved against: a full export holds its entries 0..Size-1, a pack
	// proves each entry's inclusion in its tree.
	Checkpoint string `json:"checkpoint"`
}

// ConsistencyStep proves that the tree of From entries is a prefix of the
// tree of To; one of the two is the size of the export's checkpoint and
// the other that of a checkpoint someone else holds, so a meeting pack can
// be checked against checkpoints of other sizes offline.
type ConsistencyStep struct {
	From  int64          `json:"from"`
	To    int64          `json:"to"`
	Proof tlog.TreeProof `json:"proof"`
}

// Trailer is the last line of an export: the head of every chain in the
// export, signed by the log key, so that entries cut off the end of a chain
// are detected.
type Trailer struct {
	Heads map[string]Head `json:"heads"`
	Sig   string          `json:"sig"`
}

// Export is a whole export file.
type Export struct {
	Header Header
	// Entries in log order (Index strictly increasing).
	Entries []Entry
	// Proofs is set in a meeting pack only: Proofs[i] proves Entries[i]
	// in the tree of Header.Checkpoint.
	Proofs      []tlog.RecordProof
	Consistency []ConsistencyStep
	Trailer     Trailer
}

// Lines an export is made of, besides the header and entries.
type (
	inclusionLine struct {
		Inclusion tlog.RecordProof `json:"inclusion"`
	}
	consistencyLine struct {
		Consistency ConsistencyStep `json:"consistency"`
	}
)

// LineError is a line of an export that cannot be read.
type LineError struct {
	Line int // 1-based line number
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("audit export: line %d: %v", e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// SignHeads signs heads with the log key, bound to cp (the export header's
// checkpoint) and meeting (the header's Meeting, "" for a full export). The
// heads are those of the last exported entry of each chain: the trailer must
// name exactly what the file holds. Binding the checkpoint and meeting keeps
// a trailer from one export from vouching for another, cut short.
func SignHeads(key ed25519.PrivateKey, cp Checkpoint, meeting string, heads map[string]Head) Trailer {
	hs := make(map[string]Head, len(heads))
	for k, h := range heads {
		hs[k] = h
	}
	return Trailer{Heads: hs, Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(key, headsMessage(cp, meeting, hs)))}
}

// headsMessage is what a trailer signs: field(domain) ‖ field(origin) ‖
// size ‖ root ‖ field(meeting) ‖ count ‖ per chain in ascending id order
// field(id) ‖ seq ‖ field(hash); fields are length-prefixed, numbers 8
// bytes big-endian.
func headsMessage(cp Checkpoint, meeting string, heads map[string]Head) []byte {
	ids := make([]string, 0, len(heads))
	for id := range heads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b []byte
	b = appendField(b, headsDomain)
	b = appendField(b, cp.Origin)
	b = appendUint(b, uint64(cp.Size))
	b = append(b, cp.Root[:]...)
	b = appendField(b, meeting)
	b = appendUint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendField(b, id)
		b = appendUint(b, heads[id].Seq)
		b = appendField(b, heads[id].Hash)
	}
	return b
}

// WriteExport writes x as JSON lines (docs/AUDIT.md): the header, each
// entry (in a meeting pack followed by its inclusion proof), the
// consistency steps and the trailer. An empty Header.Format is set to
// [Format]; Header.Exported is written in UTC.
func WriteExport(w io.Writer, x Export) error {
	h := x.Header
	if h.Format == "" {
		h.Format = Format
	}
	if h.Format != Format {
		return fmt.Errorf("audit export: unsupported format %q", h.Format)
	}
	h.Exported = h.Exported.UTC()
	pack := h.Meeting != ""
	if pack && len(x.Proofs) != len(x.Entries) {
		return fmt.Errorf("audit export: meeting %q: %d entries but %d inclusion proofs", h.Meeting, len(x.Entries), len(x.Proofs))
	}
	if !pack && len(x.Proofs) != 0 {
		return errors.New("audit export: inclusion proofs belong in a meeting's export only")
	}
	t := x.Trailer
	if t.Heads == nil {
		t.Heads = map[string]Head{}
	}
	bw := bufio.NewWriter(w)
	line, err := encodeLine(h)
	if err != nil {
		return fmt.Errorf("audit export: header: %w", err)
	}
	bw.Write(line)
	for i := range x.Entries {
		line, err := encodeLine(&x.Entries[i])
		if err != nil {
			return fmt.Errorf("audit export: entry %d (meeting %q, seq %d): %w", x.Entries[i].Index, x.Entries[i].Meeting, x.Entries[i].Seq, err)
		}
		bw.Write(line)
		if pack {
			// One spelling: an empty proof is [] (never null).
			line, _ = encodeLine(inclusionLine{Inclusion: append(tlog.RecordProof{}, x.Proofs[i]...)})
			bw.Write(line)
		}
	}
	for _, s := range x.Consistency {
		s.Proof = append(tlog.TreeProof{}, s.Proof...)
		line, _ = encodeLine(consistencyLine{Consistency: s})
		bw.Write(line)
	}
	if line, err = encodeLine(t); err != nil {
		return fmt.Errorf("audit export: trailer: %w", err)
	}
	bw.Write(line)
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("audit export: %w", err)
	}
	return nil
}

// encodeLine is the one spelling of v that an export may contain, with a
// final newline.
func encodeLine(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadExport reads an export. It checks the shape of the file — a header of
// [Format], entries (each followed by its inclusion proof in a meeting
// pack, none otherwise), consistency steps, one trailer and nothing after
// it, every line exactly as [WriteExport] writes it — but no hash, proof or
// signature. Errors name the line as a *LineError.
func ReadExport(r io.Reader) (Export, error) {
	x, _, _, err := readExport(r)
	return x, err
}

// readExport also returns the line number and leaf hash of each entry.
func readExport(r io.Reader) (Export, []int, []tlog.Hash, error) {
	var (
		x       Export
		lines   []int
		leaves  []tlog.Hash
		trailer bool
		inConsistency,
		wantProof bool
	)
	fail := func(n int, format string, args ...any) (Export, []int, []tlog.Hash, error) {
		return Export{}, nil, nil, &LineError{Line: n, Err: fmt.Errorf(format, args...)}
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			return fail(n, "empty line")
		case trailer:
			return fail(n, "line after the trailer")
		case n == 1:
			if err := decodeLine(line, &x.Header); err != nil {
				return fail(n, "header: %w", err)
			}
			if x.Header.Format != Format {
				return fail(n, "header: unsupported format %q, want %q", x.Header.Format, Format)
			}
		case wantProof:
			var p inclusionLine
			if !hasPrefix(line, `{"inclusion":`) {
				return fail(n, "want the inclusion proof of the entry on line %d", n-1)
			}
			if err := decodeLine(line, &p); err != nil {
				return fail(n, "inclusion proof: %w", err)
			}
			if p.Inclusion == nil {
				return fail(n, "inclusion proof: null, want a list of hashes")
			}
			x.Proofs = append(x.Proofs, p.Inclusion)
			wantProof = false
		case hasPrefix(line, `{"seq":`):
			if inConsistency {
				return fail(n, "entry after the consistency proofs")
			}
			var e Entry
			if err := decodeLine(line, &e); err != nil {
				return fail(n, "entry: %w", err)
			}
			x.Entries = append(x.Entries, e)
			lines = append(lines, n)
			leaves = append(leaves, tlog.RecordHash(line)) // the line is the leaf
			wantProof = x.Header.Meeting != ""
		case hasPrefix(line, `{"inclusion":`):
			return fail(n, "an inclusion proof belongs after an entry of a meeting's export")
		case hasPrefix(line, `{"consistency":`):
			var c consistencyLine
			if err := decodeLine(line, &c); err != nil {
				return fail(n, "consistency proof: %w", err)
			}
			if c.Consistency.Proof == nil {
				return fail(n, "consistency proof: null, want a list of hashes")
			}
			x.Consistency = append(x.Consistency, c.Consistency)
			inConsistency = true
		case hasPrefix(line, `{"heads":`):
			if err := decodeLine(line, &x.Trailer); err != nil {
				return fail(n, "trailer: %w", err)
			}
			if x.Trailer.Heads == nil {
				return fail(n, "trailer: heads null, want an object")
			}
			trailer = true
		default:
			return fail(n, "not an entry, proof or trailer line")
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fail(n+1, "line longer than %d bytes", maxLine)
		}
		return Export{}, nil, nil, fmt.Errorf("audit export: read: %w", err)
	}
	switch {
	case n == 0:
		return fail(1, "empty export: no header")
	case wantProof:
		return fail(n+1, "no inclusion proof for the entry on line %d", n)
	case !trailer:
		return fail(n+1, "no trailer: cannot tell whether entries were removed from the end")
	}
	return x, lines, leaves, nil
}

func hasPrefix(line []byte, p string) bool {
	return len(line) >= len(p) && string(line[:len(p)]) == p
}

// decodeLine decodes line into v and insists that it is the canonical
// spelling of what it decodes to. encoding/json matches keys case-blind and
// tolerates duplicates and spaces; without this check, a file could be
// altered and still verify.
func decodeLine(line []byte, v any) error {
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("malformed JSON: %w", err)
	}
	canon, err := encodeLine(v)
	if err != nil {
		return fmt.Errorf("cannot re-encode: %w", err)
	}
	if !bytes.Equal(canon[:len(canon)-1], line) {
		return errors.New("not in canonical form (extra, duplicate, misspelt or reformatted fields)")
	}
	return nil
}
