package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"

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

// JetStream's atomic batch headers (nats.go names no constants for them).
const (
	hdrBatchID     = "Nats-Batch-Id"
	hdrBatchSeq    = "Nats-Batch-Sequence"
	hdrBatchCommit = "Nats-Batch-Commit"
)

// jsErrIncompleteBatch is JetStream's answer to a batch commit when a
// message of the batch did not arrive (or the batch was abandoned):
// nothing of it is stored.
const jsErrIncompleteBatch jetstream.ErrorCode = 10176

// maxAuditBatch is the most records one AppendAudits call may carry: the
// server's default limit on an atomic batch.
const maxAuditBatch = 1000

// AppendAudits appends records in order as AppendAudit would one after
// another, in one JetStream atomic batch: n records cost about one round
// trip, and either all are stored, right after the log's newest record
// expectLast, or none is. The batch's expected last sequence is checked
// once, by the stream's leader, before it proposes the batch, so a batch
// that meets another writer's record is refused as a whole; a record is
// never stored after a gap or out of order. (Checking each record
// against its predecessor's message id instead is done by every server
// only when it applies the record: a mismatch there, after a change of
// stream leader or a second writer, stops the stream on every server.)
//
// It returns the stream sequences of the records stored, all of recs or
// none, and when none the reason: ErrConflict when nothing was stored and
// the caller may seal and send again (another writer won the race, or a
// record of the batch was lost on the way), anything else when the
// outcome is unknown.
func (s *Store) AppendAudits(ctx context.Context, recs []AuditAppend, expectLast uint64) ([]uint64, error) {
	if len(recs) == 0 {
		return nil, nil
	}
	if len(recs) > maxAuditBatch {
		return nil, fmt.Errorf("append audit: %d records in one batch, at most %d", len(recs), maxAuditBatch)
	}
	id := newMsgID()
	last := len(recs) - 1
	for i, r := range recs {
		m := nats.NewMsg(cluster.AuditSubject(r.Chain))
		m.Data = r.Record
		m.Header.Set(hdrBatchID, id)
		m.Header.Set(hdrBatchSeq, strconv.Itoa(i+1))
		if i == 0 {
			m.Header.Set(jetstream.ExpectedLastSeqHeader, strconv.FormatUint(expectLast, 10))
		}
		if i < last {
			// No reply: a lost message makes the commit's answer say
			// the batch is incomplete.
			if err := s.js.Conn().PublishMsg(m); err != nil {
				return nil, fmt.Errorf("append audit to %q: %w", r.Chain, err)
			}
			continue
		}
		m.Header.Set(hdrBatchCommit, "1")
		pctx, cancel := context.WithTimeout(ctx, opWait)
		ack, err := s.js.PublishMsg(pctx, m)
		cancel()
		if err != nil {
			return nil, auditAppendErr(r.Chain, err)
		}
		if first := ack.Sequence - uint64(last); ack.Sequence < uint64(last) || first != expectLast+1 {
			return nil, fmt.Errorf("append audit to %q: batch stored ending at stream sequence %d, not %d", r.Chain, ack.Sequence, expectLast+uint64(len(recs)))
		}
	}
	seqs := make([]uint64, len(recs))
	for i := range seqs {
		seqs[i] = expectLast + uint64(i) + 1
	}
	return seqs, nil
}

// auditAppendErr names an append's failure, ErrConflict when nothing was
// stored and sending again is safe.
func auditAppendErr(chain string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamWrongLastSequence, jetstream.JSErrCodeStreamWrongLastSequenceConstant, jsErrIncompleteBatch:
			return fmt.Errorf("append audit to %q: %w", chain, ErrConflict)
		}
	}
	return fmt.Errorf("append audit to %q: %w", chain, err)
}

// newMsgID is an id no other batch carries.
func newMsgID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return hex.EncodeToString(b[:])
}
