package group

import (
	"sync/atomic"

	"github.com/oakmeet/oakmeet/e2ee/keymsg"
	"github.com/oakmeet/oakmeet/e2ee/mediaframe"
	"github.com/oakmeet/oakmeet/e2ee/securitycode"
	"github.com/oakmeet/oakmeet/e2ee/sframe"
)

// currentSender encrypts with whichever sender the current epoch installed.
type currentSender struct {
	p *atomic.Pointer[sframe.Sender]
}

func (c currentSender) Encrypt(dst, metadata, plaintext []byte) ([]byte, error) {
	s := c.p.Load()
	if s == nil {
		return nil, mediaframe.ErrNoKey
	}
	return s.Encrypt(dst, metadata, plaintext)
}

// Protect encrypts an outgoing frame with this member's key of the sending
// epoch, the newest committed one (see mediaframe.Protector.Protect).
// Before the first commit, and while the sending epoch names someone the
// host removed, it returns mediaframe.ErrNoKey: the frame must be dropped,
// never sent clear.
func (m *Member) Protect(dst []byte, codec mediaframe.Codec, frame []byte) ([]byte, error) {
	return m.protector.Protect(dst, codec, frame)
}

// Unprotect decrypts a frame from another member under any key of an
// installed epoch, committed or not, or of a replaced one still within its
// grace window (see
// mediaframe.Unprotector.Unprotect).
func (m *Member) Unprotect(dst []byte, codec mediaframe.Codec, frame []byte) ([]byte, error) {
	return m.unprotector.Unprotect(dst, codec, frame)
}

// MediaStats returns the counts of frames protected and unprotected, and of
// those dropped, by reason.
func (m *Member) MediaStats() (sent, received mediaframe.Stats) {
	return m.protector.Stats(), m.unprotector.Stats()
}

// Participant is this member's participant id.
func (m *Member) Participant() string { return m.cfg.Participant }

// Entry is this member's own roster entry: its participant id, identity and
// HPKE public keys, and announcement signature.
func (m *Member) Entry() keymsg.Entry { return m.self }

// Epoch is the sending epoch's number (the newest committed one), 0
// before the first.
func (m *Member) Epoch() uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sending == nil {
		return 0
	}
	return m.sending.number
}

// SecurityCode is the code of the sending epoch's roster under the current
// policy hash; ok is false before the first epoch.
func (m *Member) SecurityCode() (code securitycode.Code, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sending == nil {
		return securitycode.Code{}, false
	}
	return m.securityCode(m.sending), true
}

// Roster is the sending epoch's roster, the leader first: exactly who holds
// the media key this member sends under. A user interface shows People.
func (m *Member) Roster() []keymsg.Entry {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sending == nil {
		return nil
	}
	out := make([]keymsg.Entry, len(m.sending.roster))
	copy(out, m.sending.roster)
	return out
}

// Leader is the participant this member expects to lead: the first in
// roster order not removed by the host.
func (m *Member) Leader() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expectedLeader()
}

// SenderOf names the participant whose key a KID is, in any installed epoch
// (the sending one or a newer one); ok is false otherwise.
func (m *Member) SenderOf(kid uint64) (participant string, ok bool) {
	epoch, index := SplitKID(kid)
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.epochByNumber(epoch)
	if st == nil || index >= len(st.roster) {
		return "", false
	}
	return st.roster[index].Participant, true
}
