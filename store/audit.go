package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// LastAudit returns the newest record of one audit chain and its stream
// sequence; ErrNotFound for a chain with no entries yet.
func (s *Store) LastAudit(ctx context.Context, chain string) ([]byte, uint64, error) {
	m, err := s.audit.GetLastMsgForSubject(ctx, cluster.AuditSubject(chain))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, ErrNotFound
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read audit head of %q: %w", chain, err)
	}
	return m.Data, m.Sequence, nil
}

// AppendAudit adds a record to a chain. expectLast is the stream sequence of
// the chain's previous record (0 for the first); if another writer appended
// in between, the append fails with ErrConflict rather than fork the chain.
func (s *Store) AppendAudit(ctx context.Context, chain string, record []byte, expectLast uint64) (uint64, error) {
	ack, err := s.js.Publish(ctx, cluster.AuditSubject(chain), record,
		jetstream.WithExpectLastSequencePerSubject(expectLast))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return 0, fmt.Errorf("append audit to %q: %w", chain, ErrConflict)
		}
		return 0, fmt.Errorf("append audit to %q: %w", chain, err)
	}
	return ack.Sequence, nil
}

// AuditRecords returns records in log order: one chain's, or every chain's
// when all is true.
func (s *Store) AuditRecords(ctx context.Context, chain string, all bool) ([][]byte, error) {
	subject := cluster.AuditSubject(chain)
	if all {
		subject = "oakmeet.audit.>"
	}
	var out [][]byte
	for seq := uint64(1); ; {
		m, err := s.audit.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subject))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read audit log at %d: %w", seq, err)
		}
		out = append(out, m.Data)
		seq = m.Sequence + 1
	}
}
