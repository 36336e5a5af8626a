package group

import "errors"

// Reasons a key message is refused. Messages that fail because this
// member's view is behind (ErrUnexpectedLeader, ErrRosterMismatch) are also
// kept and tried again when the roster or the announcements change; their
// errors wrap ErrDeferred too.
var (
	// ErrWrongMeeting means the message is for another meeting.
	ErrWrongMeeting = errors.New("group: message for another meeting")
	// ErrSenderMismatch means the transport's sender is not the participant
	// the message speaks for.
	ErrSenderMismatch = errors.New("group: sender does not match message")
	// ErrStaleEpoch means the epoch is not newer than the current one: a
	// replay, or a leader that is behind.
	ErrStaleEpoch = errors.New("group: stale epoch")
	// ErrNotInRoster means the epoch's roster does not hold this member with
	// its own keys, so it gets no key from it.
	ErrNotInRoster = errors.New("group: not in the epoch's roster")
	// ErrUnexpectedLeader means the signer is not the first participant of
	// this member's roster.
	ErrUnexpectedLeader = errors.New("group: signer is not the leader")
	// ErrRosterMismatch means a roster entry disagrees with an announcement
	// this member verified itself.
	ErrRosterMismatch = errors.New("group: roster disagrees with announcements")
	// ErrDeferred marks a refusal that may turn into acceptance once this
	// member's roster or announcements catch up.
	ErrDeferred = errors.New("group: deferred")
	// ErrUnknownEpoch means an ack or commit names an epoch (number and
	// digest) this member does not hold, or for an ack, did not make.
	ErrUnknownEpoch = errors.New("group: unknown epoch")
	// ErrRemoved means the message is from a participant the host removed.
	ErrRemoved = errors.New("group: removed by the host")
	// ErrEpochExhausted means the epoch number cannot grow any more.
	ErrEpochExhausted = errors.New("group: epoch numbers exhausted")
)
