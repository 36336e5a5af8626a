package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Errors a check of the log returns, wrapped with what contradicts what.
var (
	// ErrInconsistent: two checkpoints that cannot both be views of one
	// append-only log (truncated, forked or rebuilt).
	ErrInconsistent = errors.New("audit: inconsistent log")
	// ErrNotIncluded: an entry that the checkpoint's tree does not hold.
	ErrNotIncluded = errors.New("audit: entry not in the log")
	// ErrCheckpoint: a checkpoint that is malformed or not signed by the
	// expected key.
	ErrCheckpoint = errors.New("audit: bad checkpoint")
)

// Checkpoint is a signed tree head in the C2SP tlog-checkpoint format: the
// log's origin, its size and the root hash of its tree. Its text is the
// body of a signed note (golang.org/x/mod/sumdb/note) whose signer's name
// is the origin.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
}

// Text is the checkpoint's note body: three lines, no extensions.
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// MaxLogSize is the largest log size a checkpoint or proof may name: far
// more entries than a deployment writes, and small enough that tlog's
// arithmetic on sizes stays exact (it loops forever past 2^62).
const MaxLogSize = 1 << 40

// maxOtherSigs is how many signatures of other witnesses a cosigned note
// keeps: a handful of witnesses, and a note well under maxCheckpoint.
const maxOtherSigs = 4

// maxCheckpoint bounds a signed checkpoint: a body of three short lines
// and a handful of signatures.
const maxCheckpoint = 4096

// ParseCheckpoint reads a checkpoint body. It accepts only the spelling
// [Checkpoint.Text] writes (no extension lines, no leading zeros,
// canonical base64), so one tree head has one text.
func ParseCheckpoint(body string) (Checkpoint, error) {
	lines := strings.Split(body, "\n")
	if len(lines) != 4 || lines[3] != "" {
		return Checkpoint{}, fmt.Errorf("%w: want three lines (origin, size, root hash)", ErrCheckpoint)
	}
	var c Checkpoint
	c.Origin = lines[0]
	if c.Origin == "" || strings.ContainsAny(c.Origin, " \t+") {
		return Checkpoint{}, fmt.Errorf("%w: origin %q", ErrCheckpoint, c.Origin)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || n > MaxLogSize || strconv.FormatInt(n, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: size %q", ErrCheckpoint, lines[1])
	}
	c.Size = n
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != tlog.HashSize {
		return Checkpoint{}, fmt.Errorf("%w: root hash %q", ErrCheckpoint, lines[2])
	}
	copy(c.Root[:], root)
	if c.Text() != body {
		return Checkpoint{}, fmt.Errorf("%w: not in canonical form", ErrCheckpoint)
	}
	return c, nil
}

// DefaultOrigin names a deployment's log after its key, so that the name
// stays when the control plane's address changes.
func DefaultOrigin(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "oakmeet.audit/" + hex.EncodeToString(sum[:8])
}

// NewSigner is the note signer of a log: the control plane's Ed25519 key
// under the log's origin.
func NewSigner(origin string, key ed25519.PrivateKey) (note.Signer, error) {
	skey, err := SignerKey(origin, key)
	if err != nil {
		return nil, err
	}
	return note.NewSigner(skey)
}

// SignerKey is the note signer key string of key under name, as
// note.NewSigner reads it: how a witness stores its key.
func SignerKey(name string, key ed25519.PrivateKey) (string, error) {
	vkey, err := VerifierKey(name, key.Public().(ed25519.PublicKey))
	if err != nil {
		return "", err
	}
	// A verifier key is name+hash+base64(alg||key); the signer key is the
	// same with the seed in place of the public key.
	parts := strings.SplitN(vkey, "+", 3)
	return "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)), nil
}

// VerifierKey is the standard note verifier string (name+hash+key) of a
// log or witness key: what `audit verify --public-key` takes.
func VerifierKey(origin string, pub ed25519.PublicKey) (string, error) {
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return "", fmt.Errorf("audit: verifier key for %q: %w", origin, err)
	}
	return vkey, nil
}

// NewVerifier parses a verifier string. The verifier also knows the
// Ed25519 public key ([LogPublicKey]), which signs the log's entries as
// well as its checkpoints.
func NewVerifier(vkey string) (note.Verifier, error) {
	vkey = strings.TrimSpace(vkey)
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("audit: verifier key: %w (want name+hash+key, as GET /api/config names audit_verifier_key)", err)
	}
	pub, err := PublicKeyOf(vkey)
	if err != nil {
		return nil, err
	}
	return keyedVerifier{Verifier: v, pub: pub}, nil
}

// keyedVerifier is a note verifier that remembers its key.
type keyedVerifier struct {
	note.Verifier
	pub ed25519.PublicKey
}

// LogPublicKey is the Ed25519 key of a verifier [NewVerifier] made, or
// nil for another kind of verifier.
func LogPublicKey(v note.Verifier) ed25519.PublicKey {
	if k, ok := v.(keyedVerifier); ok {
		return k.pub
	}
	return nil
}

// PublicKeyOf is the Ed25519 public key in a note verifier string: its
// last field is base64 of the algorithm byte 1 and the 32-byte key.
func PublicKeyOf(vkey string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, fmt.Errorf("audit: verifier key %q: want name+hash+key", vkey)
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 1 {
		return nil, fmt.Errorf("audit: verifier key %q: not an Ed25519 key", vkey)
	}
	return ed25519.PublicKey(key[1:]), nil
}

// SignCheckpoint signs c as a note.
func SignCheckpoint(s note.Signer, c Checkpoint) ([]byte, error) {
	if s.Name() != c.Origin {
		return nil, fmt.Errorf("audit: signer %q cannot sign a checkpoint of %q", s.Name(), c.Origin)
	}
	return note.Sign(&note.Note{Text: c.Text()}, s)
}

// OpenCheckpoint checks a signed checkpoint: a valid signature by log,
// whose name must be the origin, and one by each witness given. Other
// signatures are ignored.
func OpenCheckpoint(signed []byte, log note.Verifier, witnesses ...note.Verifier) (Checkpoint, error) {
	if len(signed) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, more than %d", ErrCheckpoint, len(signed), maxCheckpoint)
	}
	n, err := note.Open(signed, note.VerifierList(append([]note.Verifier{log}, witnesses...)...))
	var unverified *note.UnverifiedNoteError
	if errors.As(err, &unverified) {
		return Checkpoint{}, fmt.Errorf("%w: not signed by %s (another log, or signed with another key)", ErrCheckpoint, log.Name())
	}
	if err != nil {
		return Checkpoint{}, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	signedBy := map[uint32]string{}
	for _, s := range n.Sigs {
		signedBy[s.Hash] = s.Name
	}
	for _, v := range append([]note.Verifier{log}, witnesses...) {
		if name, ok := signedBy[v.KeyHash()]; !ok || name != v.Name() {
			return Checkpoint{}, fmt.Errorf("%w: not signed by %s", ErrCheckpoint, v.Name())
		}
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if c.Origin != log.Name() {
		return Checkpoint{}, fmt.Errorf("%w: checkpoint of %q signed as %q", ErrCheckpoint, c.Origin, log.Name())
	}
	return c, nil
}

// PeekCheckpoint reads the checkpoint of a signed note without checking
// any signature: for choosing which proofs to fetch, never as evidence.
func PeekCheckpoint(signed []byte) (Checkpoint, error) {
	if len(signed) > maxCheckpoint {
		return Checkpoint{}, fmt.Errorf("%w: %d bytes, more than %d", ErrCheckpoint, len(signed), maxCheckpoint)
	}
	// A note is its text, a blank line and the signature lines.
	i := bytes.LastIndex(signed, []byte("\n\n"))
	if i < 0 {
		return Checkpoint{}, fmt.Errorf("%w: not a signed note", ErrCheckpoint)
	}
	return ParseCheckpoint(string(signed[:i+1]))
}

// Cosign adds a witness's signature to a checkpoint the log signed,
// keeping the log's signature and any other verified ones. The witness
// must have checked the checkpoint against the ones it saw before.
func Cosign(signed []byte, log note.Verifier, witness note.Signer) ([]byte, error) {
	if _, err := OpenCheckpoint(signed, log); err != nil {
		return nil, err
	}
	n, err := note.Open(signed, note.VerifierList(log))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCheckpoint, err)
	}
	// Signatures this witness cannot check (other witnesses') are kept,
	// but only the first few: a log that served junk signature lines
	// would otherwise make every cosigned note grow past what a reader
	// accepts. The witness's own earlier signature is replaced.
	var others []note.Signature
	for _, sig := range n.UnverifiedSigs {
		if sig.Name == witness.Name() && sig.Hash == witness.KeyHash() {
			continue
		}
		if len(others) < maxOtherSigs {
			others = append(others, sig)
		}
	}
	n.Sigs = append(n.Sigs, others...)
	n.UnverifiedSigs = nil
	return note.Sign(n, witness)
}

// SplitCheckpoints splits a file of signed checkpoints written one after
// another (as `bot --checkpoints` appends them). A note ends with its
// signature lines ("— name sig"); the next line that is not one starts
// the next note. Blank lines between notes are allowed.
func SplitCheckpoints(data []byte) ([][]byte, error) {
	var out [][]byte
	var cur []byte
	inSigs := false
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		isSig := bytes.HasPrefix(line, []byte("— "))
		switch {
		case inSigs && !isSig:
			out = append(out, cur)
			cur, inSigs = nil, false
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
		case len(cur) == 0 && len(bytes.TrimSpace(line)) == 0:
			continue
		}
		if len(cur)+len(line) > maxCheckpoint {
			return nil, fmt.Errorf("%w: a checkpoint longer than %d bytes", ErrCheckpoint, maxCheckpoint)
		}
		cur = append(cur, line...)
		if isSig {
			inSigs = true
		}
	}
	if len(cur) > 0 {
		if !inSigs {
			return nil, fmt.Errorf("%w: the last checkpoint has no signature", ErrCheckpoint)
		}
		out = append(out, cur)
	}
	return out, nil
}
