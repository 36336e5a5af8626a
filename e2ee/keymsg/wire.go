package keymsg

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// b64 is standard base64 with padding (RFC 4648 Section 4), what JavaScript's
// btoa produces; Strict refuses non-canonical trailing bits.
var b64 = base64.StdEncoding.Strict()

type wireHeader struct {
	V    int    `json:"v"`
	Type string `json:"type"`
}

type wireAnnounce struct {
	V           int     `json:"v"`
	Type        string  `json:"type"`
	Meeting     string  `json:"meeting"`
	Participant string  `json:"participant"`
	Name        *string `json:"name"` // a pointer, to tell a missing name from an empty one
	Identity    string  `json:"identity"`
	HPKE        string  `json:"hpke"`
	Sig         string  `json:"sig"`
}

type wireEntry struct {
	Participant string  `json:"participant"`
	Name        *string `json:"name"`
	Identity    string  `json:"identity"`
	HPKE        string  `json:"hpke"`
	Sig         string  `json:"sig"`
}

type wireEpoch struct {
	V       int         `json:"v"`
	Type    string      `json:"type"`
	Meeting string      `json:"meeting"`
	Epoch   uint64      `json:"epoch"`
	Roster  []wireEntry `json:"roster"`
	Sealed  []string    `json:"sealed"`
	Sig     string      `json:"sig"`
}

type wireAck struct {
	V           int    `json:"v"`
	Type        string `json:"type"`
	Meeting     string `json:"meeting"`
	Epoch       uint64 `json:"epoch"`
	Participant string `json:"participant"`
	Digest      string `json:"digest"`
	Sig         string `json:"sig"`
}

type wireCommit struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Meeting string `json:"meeting"`
	Epoch   uint64 `json:"epoch"`
	Digest  string `json:"digest"`
	Sig     string `json:"sig"`
}

type wireNode struct {
	V           int    `json:"v"`
	Type        string `json:"type"`
	Meeting     string `json:"meeting"`
	Participant string `json:"participant"`
	Cert        string `json:"cert"`
	Sig         string `json:"sig"`
}

type wireSync struct {
	V       int    `json:"v"`
	Type    string `json:"type"`
	Meeting string `json:"meeting"`
	Epoch   uint64 `json:"epoch"`
	Leader  string `json:"leader"`
}

func enc(b []byte) string { return base64.StdEncoding.EncodeToString(b) }

func toWireEntry(e Entry) wireEntry {
	return wireEntry{Participant: e.Participant, Name: &e.Name, Identity: enc(e.Identity), HPKE: enc(e.HPKE), Sig: enc(e.Signature)}
}

// Encode returns the message's JSON wire form.
func Encode(m Message) ([]byte, error) {
	var w any
	switch m := m.(type) {
	case *Announcement:
		if err := checkID("meeting", m.Meeting); err != nil {
			return nil, err
		}
		if err := m.check(); err != nil {
			return nil, err
		}
		e := toWireEntry(m.Entry)
		w = wireAnnounce{Version, m.Type(), m.Meeting, e.Participant, e.Name, e.Identity, e.HPKE, e.Sig}
	case *Epoch:
		if err := m.check(); err != nil {
			return nil, err
		}
		we := wireEpoch{V: Version, Type: m.Type(), Meeting: m.Meeting, Epoch: m.Epoch, Sig: enc(m.Signature)}
		for i, e := range m.Roster {
			we.Roster = append(we.Roster, toWireEntry(e))
			we.Sealed = append(we.Sealed, enc(m.Sealed[i]))
		}
		w = we
	case *Ack:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = wireAck{Version, m.Type(), m.Meeting, m.Epoch, m.Participant, enc(m.Digest), enc(m.Signature)}
	case *Commit:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = wireCommit{Version, m.Type(), m.Meeting, m.Epoch, enc(m.Digest), enc(m.Signature)}
	case *Sync:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = wireSync{Version, m.Type(), m.Meeting, m.Epoch, m.Leader}
	case *Node:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = wireNode{Version, m.Type(), m.Meeting, m.Participant, m.Cert, enc(m.Signature)}
	case *Checkpoint:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = wireCheckpoint{Version, m.Type(), m.Meeting, m.Participant, m.Checkpoint, enc(m.Signature)}
	case *Presence:
		if err := m.check(); err != nil {
			return nil, err
		}
		w = m.wire()
	default:
		return nil, fmt.Errorf("%w: cannot encode %T", ErrMalformed, m)
	}
	b, err := json.Marshal(w)
	if err == nil && len(b) > MaxMessageSize {
		// Decoders would refuse it: say so here, where it is made.
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxMessageSize)
	}
	return b, err
}

func (m *Sync) check() error {
	if err := checkID("meeting", m.Meeting); err != nil {
		return err
	}
	if err := checkID("leader", m.Leader); err != nil {
		return err
	}
	return checkEpoch(m.Epoch)
}

// Decode parses a message and checks its structure: version, type, every
// field present with the right length, nothing unknown. It does not verify
// signatures; call Verify on every message but a sync.
func Decode(b []byte) (Message, error) {
	if len(b) > MaxMessageSize {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrMalformed, len(b), MaxMessageSize)
	}
	var h wireHeader
	if err := json.Unmarshal(b, &h); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if h.V != Version {
		return nil, fmt.Errorf("%w: v=%d, want %d", ErrVersion, h.V, Version)
	}
	var m Message
	var err error
	switch h.Type {
	case "announce":
		m, err = decodeAnnounce(b)
	case "epoch":
		m, err = decodeEpoch(b)
	case "ack":
		m, err = decodeAck(b)
	case "commit":
		m, err = decodeCommit(b)
	case "sync":
		m, err = decodeSync(b)
	case "node":
		m, err = decodeNode(b)
	case "checkpoint":
		m, err = decodeCheckpoint(b)
	case "presence":
		m, err = decodePresence(b)
	default:
		err = fmt.Errorf("%w: unknown type %q", ErrMalformed, h.Type)
	}
	if err != nil {
		// Never a typed nil or a half-checked message next to an error.
		return nil, err
	}
	return m, nil
}

// strict decodes exactly one JSON object with no unknown fields.
func strict(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if _, err := d.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: data after the message", ErrMalformed)
	}
	return nil
}

func dec(field, s string) ([]byte, error) {
	b, err := b64.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrMalformed, field, err)
	}
	return b, nil
}

func fromWireEntry(w wireEntry) (Entry, error) {
	var e Entry
	var err error
	e.Participant = w.Participant
	if w.Name == nil {
		return Entry{}, fmt.Errorf("%w: no name", ErrMalformed)
	}
	e.Name = *w.Name
	if e.Identity, err = dec("identity", w.Identity); err != nil {
		return Entry{}, err
	}
	if e.HPKE, err = dec("hpke", w.HPKE); err != nil {
		return Entry{}, err
	}
	if e.Signature, err = dec("sig", w.Sig); err != nil {
		return Entry{}, err
	}
	return e, e.check()
}

func decodeAnnounce(b []byte) (*Announcement, error) {
	var w wireAnnounce
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	if err := checkID("meeting", w.Meeting); err != nil {
		return nil, err
	}
	e, err := fromWireEntry(wireEntry{w.Participant, w.Name, w.Identity, w.HPKE, w.Sig})
	if err != nil {
		return nil, err
	}
	return &Announcement{Meeting: w.Meeting, Entry: e}, nil
}

func decodeEpoch(b []byte) (*Epoch, error) {
	var w wireEpoch
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	m := &Epoch{Meeting: w.Meeting, Epoch: w.Epoch}
	if len(w.Roster) > MaxRoster {
		return nil, fmt.Errorf("%w: roster of %d entries, limit %d", ErrMalformed, len(w.Roster), MaxRoster)
	}
	for i, we := range w.Roster {
		e, err := fromWireEntry(we)
		if err != nil {
			return nil, fmt.Errorf("roster entry %d: %w", i, err)
		}
		m.Roster = append(m.Roster, e)
	}
	for i, s := range w.Sealed {
		c, err := dec(fmt.Sprintf("sealed[%d]", i), s)
		if err != nil {
			return nil, err
		}
		m.Sealed = append(m.Sealed, c)
	}
	var err error
	if m.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	if err := checkLen("sig", m.Signature, SignatureSize); err != nil {
		return nil, err
	}
	return m, m.check()
}

func decodeSync(b []byte) (*Sync, error) {
	var w wireSync
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	m := &Sync{Meeting: w.Meeting, Epoch: w.Epoch, Leader: w.Leader}
	return m, m.check()
}

func decodeAck(b []byte) (*Ack, error) {
	var w wireAck
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	m := &Ack{Meeting: w.Meeting, Epoch: w.Epoch, Participant: w.Participant}
	var err error
	if m.Digest, err = dec("digest", w.Digest); err != nil {
		return nil, err
	}
	if m.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	return m, m.check()
}

func decodeCommit(b []byte) (*Commit, error) {
	var w wireCommit
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	m := &Commit{Meeting: w.Meeting, Epoch: w.Epoch}
	var err error
	if m.Digest, err = dec("digest", w.Digest); err != nil {
		return nil, err
	}
	if m.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	return m, m.check()
}

func decodeNode(b []byte) (*Node, error) {
	var w wireNode
	if err := strict(b, &w); err != nil {
		return nil, err
	}
	m := &Node{Meeting: w.Meeting, Participant: w.Participant, Cert: w.Cert}
	var err error
	if m.Signature, err = dec("sig", w.Sig); err != nil {
		return nil, err
	}
	return m, m.check()
}
