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
)

// Format is the Header.Format of exports this package writes and reads.
const Format = "oakmeet-audit/1"

const headsDomain = "oakmeet-audit-heads/1"

// maxLine bounds one line of an export; entries are a few hundred bytes and a
// trailer of many chains a few hundred per chain.
const maxLine = 16 << 20

// Header is the first line of an export.
type Header struct {
	Format    string    `json:"format"`
	PublicKey string    `json:"public_key"` // standard base64 Ed25519 public key of the log
	Meeting   string    `json:"meeting,omitempty"`
	Exported  time.Time `json:"exported"`
}

// Trailer is the last line of an export: the head of every chain in the
// export, signed by the log key, so that entries cut off the end of a chain
// are detected.
type Trailer struct {
	Heads map[string]Head `json:"heads"`
	Sig   string          `json:"sig"`
}

// Summary describes an export that verified.
type Summary struct {
	Entries int
	Chains  int
	// PublicKey is the key the export was verified with, taken from its
	// header. A file can carry any key, so a verifier who knows the
	// deployment's key must compare it with this one.
	PublicKey ed25519.PublicKey
}

// LineError is a line of an export that cannot be read.
type LineError struct {
	Line int // 1-based line number
	Err  error
}

func (e *LineError) Error() string {
	return fmt.Sprintf("audit export: line %d: %v", e.Line, e.Err)
}

func (e *LineError) Unwrap() error { return e.Err }

// SignHeads signs heads with the log key. The heads should come from the
// writer's own record of its chains ([Chain.Head]) where it has one, since
// heads derived from the exported entries only protect the file, not the
// store it was read from.
func SignHeads(key ed25519.PrivateKey, heads map[string]Head) Trailer {
	cp := make(map[string]Head, len(heads))
	for k, h := range heads {
		cp[k] = h
	}
	return Trailer{Heads: cp, Sig: base64.StdEncoding.EncodeToString(ed25519.Sign(key, headsMessage(cp)))}
}

func headsMessage(heads map[string]Head) []byte {
	ids := make([]string, 0, len(heads))
	for id := range heads {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b []byte
	b = appendField(b, headsDomain)
	b = appendUint(b, uint64(len(ids)))
	for _, id := range ids {
		b = appendField(b, id)
		b = appendUint(b, heads[id].Seq)
		b = appendField(b, heads[id].Hash)
	}
	return b
}

// WriteExport writes h, entries and t as JSON lines. An empty h.Format is set
// to [Format]; h.Exported is written in UTC.
func WriteExport(w io.Writer, h Header, entries []Entry, t Trailer) error {
	if h.Format == "" {
		h.Format = Format
	}
	if h.Format != Format {
		return fmt.Errorf("audit export: unsupported format %q", h.Format)
	}
	h.Exported = h.Exported.UTC()
	if t.Heads == nil {
		t.Heads = map[string]Head{}
	}
	bw := bufio.NewWriter(w)
	line, err := encodeLine(h)
	if err != nil {
		return fmt.Errorf("audit export: header: %w", err)
	}
	bw.Write(line)
	for i := range entries {
		line, err := encodeLine(&entries[i])
		if err != nil {
			return fmt.Errorf("audit export: entry %d (meeting %q, seq %d): %w", i+1, entries[i].Meeting, entries[i].Seq, err)
		}
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

// ReadExport reads an export. It checks the shape of the file — a header of a
// known format, entries, at most one trailer and nothing after it, every line
// exactly as [WriteExport] writes it — but no hash or signature; the trailer
// is nil if the file has none. Errors name the line as a *LineError.
func ReadExport(r io.Reader) (Header, []Entry, *Trailer, error) {
	h, entries, _, t, err := readExport(r)
	return h, entries, t, err
}

// readExport also returns the line number of each entry.
func readExport(r io.Reader) (Header, []Entry, []int, *Trailer, error) {
	var (
		h       Header
		entries []Entry
		lines   []int
		trailer *Trailer
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			return h, nil, nil, nil, &LineError{Line: n, Err: errors.New("empty line")}
		case trailer != nil:
			return h, nil, nil, nil, &LineError{Line: n, Err: errors.New("line after the trailer")}
		case n == 1:
			if err := decodeLine(line, &h); err != nil {
				return h, nil, nil, nil, &LineError{Line: n, Err: fmt.Errorf("header: %w", err)}
			}
			if h.Format != Format {
				return h, nil, nil, nil, &LineError{Line: n, Err: fmt.Errorf("header: unsupported format %q, want %q", h.Format, Format)}
			}
		case !isEntry(line) && isTrailer(line):
			var t Trailer
			if err := decodeLine(line, &t); err != nil {
				return h, nil, nil, nil, &LineError{Line: n, Err: fmt.Errorf("trailer: %w", err)}
			}
			trailer = &t
		default:
			var e Entry
			if err := decodeLine(line, &e); err != nil {
				return h, nil, nil, nil, &LineError{Line: n, Err: fmt.Errorf("entry: %w", err)}
			}
			entries = append(entries, e)
			lines = append(lines, n)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return h, nil, nil, nil, &LineError{Line: n + 1, Err: fmt.Errorf("line longer than %d bytes", maxLine)}
		}
		return h, nil, nil, nil, fmt.Errorf("audit export: read: %w", err)
	}
	if n == 0 {
		return h, nil, nil, nil, &LineError{Line: 1, Err: errors.New("empty export: no header")}
	}
	return h, entries, lines, trailer, nil
}

// entryPrefix starts every canonical entry line, which spares decoding most
// lines twice.
const entryPrefix = `{"seq":`

func isEntry(line []byte) bool {
	return len(line) >= len(entryPrefix) && string(line[:len(entryPrefix)]) == entryPrefix
}

// isTrailer reports whether line is a JSON object with a "heads" member;
// entries never have one.
func isTrailer(line []byte) bool {
	var probe map[string]json.RawMessage
	if json.Unmarshal(line, &probe) != nil {
		return false
	}
	_, ok := probe["heads"]
	return ok
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

// VerifyExport reads an export and verifies it with the public key in its
// header: every entry ([Verify]), that a per-meeting export holds only that
// meeting, and that the signed trailer names exactly the chains in the file
// and each chain's last entry. The trailer is required. Errors are a
// *LineError for a line that cannot be read and a *VerifyError, with Line the
// line number in the file, for the first entry or trailer that fails.
//
// A file can carry any key in its header; compare [Summary.PublicKey] with
// the deployment's key.
func VerifyExport(r io.Reader) (Summary, error) {
	h, entries, lines, t, err := readExport(r)
	if err != nil {
		return Summary{}, err
	}
	pub, err := sigEncoding.DecodeString(h.PublicKey)
	if err != nil || len(pub) != ed25519.PublicKeySize || sigEncoding.EncodeToString(pub) != h.PublicKey {
		return Summary{}, &LineError{Line: 1, Err: errors.New("header: public_key is not a base64 Ed25519 public key")}
	}
	if h.Meeting != "" {
		for i, e := range entries {
			if e.Meeting != h.Meeting {
				return Summary{}, &VerifyError{Line: lines[i], Seq: e.Seq, Meeting: e.Meeting,
					Reason: fmt.Sprintf("entry of another chain in the export of meeting %q", h.Meeting)}
			}
		}
	}
	if err := Verify(pub, entries); err != nil {
		var ve *VerifyError
		if errors.As(err, &ve) {
			ve.Line = lines[ve.Line-1]
		}
		return Summary{}, err
	}
	trailerLine := len(entries) + 2
	if t == nil {
		return Summary{}, &VerifyError{Line: trailerLine, Reason: "no trailer: cannot tell whether entries were removed from the end"}
	}
	if err := checkTrailer(pub, entries, t, trailerLine); err != nil {
		return Summary{}, err
	}
	return Summary{Entries: len(entries), Chains: len(t.Heads), PublicKey: ed25519.PublicKey(pub)}, nil
}

func checkTrailer(pub ed25519.PublicKey, entries []Entry, t *Trailer, line int) error {
	sig, err := sigEncoding.DecodeString(t.Sig)
	if err != nil || len(sig) != ed25519.SignatureSize || sigEncoding.EncodeToString(sig) != t.Sig {
		return &VerifyError{Line: line, Reason: "trailer sig is not a base64 Ed25519 signature"}
	}
	if !ed25519.Verify(pub, headsMessage(t.Heads), sig) {
		return &VerifyError{Line: line, Reason: "trailer signature does not verify with the log key"}
	}
	got := Heads(entries)
	ids := make([]string, 0, len(got)+len(t.Heads))
	for id := range got {
		ids = append(ids, id)
	}
	for id := range t.Heads {
		if _, ok := got[id]; !ok {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids) // report the same chain every time
	for _, id := range ids {
		g, inFile := got[id]
		want, inTrailer := t.Heads[id]
		switch {
		case !inTrailer:
			return &VerifyError{Line: line, Meeting: id, Seq: g.Seq, Reason: "chain is in the file but not in the trailer"}
		case !inFile:
			return &VerifyError{Line: line, Meeting: id, Seq: want.Seq, Reason: fmt.Sprintf("trailer names a chain with no entries in the file (ends at seq %d)", want.Seq)}
		case g != want:
			return &VerifyError{Line: line, Meeting: id, Seq: g.Seq, Reason: fmt.Sprintf("chain ends at seq %d but the trailer says seq %d (entries removed from the end?)", g.Seq, want.Seq)}
		}
	}
	return nil
}
