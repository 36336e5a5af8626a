package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// AuditAppend is one record for AppendAudits: the chain it belongs to and
// its bytes.
type AuditAppend struct {
	Chain  string
	Record []byte
}

// jsErrWrongLastMsgID is JetStream's answer to a publish whose expected
// last message id is not the stream's (nats.go names no constant for it).
const jsErrWrongLastMsgID jetstream.ErrorCode = 10070

// AppendAudits appends records in order as AppendAudit would one after
// another, but without waiting for each answer before sending the next:
// n records cost about one round trip. The first expects the log's newest
// record to be expectLast; every later one expects, besides the sequence
// after its predecessor's, that the stream's last message is its
// predecessor (each record carries a message id of its own). So a record
// is stored only if every record before it in the call was stored right
// before it: when another writer appends in between, or one record is
// refused, none after it is stored, and nothing is ever stored out of
// order or after a gap.
//
// It returns the stream sequences of the records stored, a prefix of
// recs, and for the first record not stored the reason: ErrConflict when
// another writer won the race (the caller reads what won and seals the
// rest again), anything else when the outcome is unknown.
func (s *Store) AppendAudits(ctx context.Context, recs []AuditAppend, expectLast uint64) ([]uint64, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(recs))
	var sendErr error
	prevID := ""
	for i, r := range recs {
		id := newMsgID()
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(id), jetstream.WithExpectLastSequence(expectLast + uint64(i))}
		if i > 0 {
			opts = append(opts, jetstream.WithExpectLastMsgID(prevID))
		}
		f, err := s.js.PublishMsgAsync(&nats.Msg{Subject: cluster.AuditSubject(r.Chain), Data: r.Record}, opts...)
		if err != nil {
			sendErr = fmt.Errorf("append audit to %q: %w", r.Chain, err)
			break
		}
		futures = append(futures, f)
		prevID = id
	}
	seqs := make([]uint64, 0, len(futures))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			if want := expectLast + uint64(i) + 1; ack.Sequence != want {
				return seqs, fmt.Errorf("append audit to %q: stored at stream sequence %d, not %d", recs[i].Chain, ack.Sequence, want)
			}
			seqs = append(seqs, ack.Sequence)
		case err := <-f.Err():
			return seqs, auditAppendErr(recs[i].Chain, err)
		case <-ctx.Done():
			return seqs, fmt.Errorf("append audit to %q: %w", recs[i].Chain, ctx.Err())
		}
	}
	return seqs, sendErr
}

// auditAppendErr names an append's failure, ErrConflict when the stream
// moved on under it.
func auditAppendErr(chain string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant, jsErrWrongLastMsgID:
			return fmt.Errorf("append audit to %q: %w", chain, ErrConflict)
		}
	}
	return fmt.Errorf("append audit to %q: %w", chain, err)
}

// newMsgID is a message id no other record carries.
func newMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
