package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// AuditRecord is one record of the audit stream: its stream sequence, the
// chain it was stored under and its bytes.
type AuditRecord struct {
	Seq   uint64
	Chain string
	Data  []byte
}

// AuditLastSeq is the stream sequence of the audit log's newest record (0
// for an empty log).
func (s *Store) AuditLastSeq(ctx context.Context) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	info, err := s.audit.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("audit log state: %w", err)
	}
	return info.State.LastSeq, nil
}

// AppendAudit adds a record to a chain. expectLast is the stream sequence
// of the log's newest record, whatever its chain (0 for an empty log): the
// log is one sequence for the whole deployment, so if any other writer
// appended in between, the append fails with ErrConflict rather than fork
// it.
func (s *Store) AppendAudit(ctx context.Context, chain string, record []byte, expectLast uint64) (uint64, error) {
	// Bounded as one key's write is (opWait): nats.go waits for the
	// caller's whole context (a join's is a minute) for an answer that a
	// dying stream leader never sends, and the log's one appender, with
	// every join queued behind it, waited as long.
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	ack, err := s.js.Publish(ctx, cluster.AuditSubject(chain), record,
		jetstream.WithExpectLastSequence(expectLast))
	if err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
			return 0, fmt.Errorf("append audit to %q: %w", chain, ErrConflict)
		}
		return 0, fmt.Errorf("append audit to %q: %w", chain, err)
	}
	return ack.Sequence, nil
}

// auditBatch is how many records one pull asks for: enough that a long
// read is a few dozen round trips, small enough that one answer stays a
// few megabytes.
const auditBatch = 4096

// auditWait bounds one pull: the records asked for are stored already,
// so only a stalled server makes it wait.
const auditWait = 10 * time.Second

// ReadAudit reads, in stream order, the records of one chain (every
// chain when all is true) whose stream sequence is from..to, at most n of
// them (n ≤ 0: no limit), and calls fn for each. It reads them in batches
// through one short-lived consumer, not one request per record. to must
// be the sequence of a stored record of the chain (so the read knows
// where to stop); a read of fewer records than asked for (a gap) waits
// for auditWait and returns what there is.
func (s *Store) ReadAudit(ctx context.Context, chain string, all bool, from, to uint64, n int, fn func(AuditRecord) error) error {
	if from == 0 {
		from = 1
	}
	if to < from {
		return nil
	}
	subject := cluster.AuditSubject(chain)
	if all {
		subject = cluster.AuditSubjectAll
	}
	want := to - from + 1
	if n > 0 && uint64(n) < want {
		want = uint64(n)
	}
	cctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	cons, err := s.audit.CreateConsumer(cctx, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       from,
		FilterSubject:     subject,
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute,
	})
	if err != nil {
		return fmt.Errorf("read audit log from %d: %w", from, err)
	}
	defer func() {
		// A consumer left behind lapses after InactiveThreshold anyway.
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = s.audit.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	var got uint64
	for got < want {
		batch := min(want-got, auditBatch)
		msgs, err := cons.Fetch(int(batch), jetstream.FetchMaxWait(auditWait))
		if err != nil {
			return fmt.Errorf("read audit log from %d: %w", from, err)
		}
		seen := 0
		for m := range msgs.Messages() {
			seen++
			meta, err := m.Metadata()
			if err != nil {
				return fmt.Errorf("read audit log from %d: %w", from, err)
			}
			seq := meta.Sequence.Stream
			if seq > to {
				return nil
			}
			got++
			if err := fn(AuditRecord{Seq: seq, Chain: chainOf(m.Subject()), Data: m.Data()}); err != nil {
				return err
			}
			if seq == to {
				return nil
			}
		}
		if err := msgs.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("read audit log from %d: %w", from, err)
		}
		if seen == 0 {
			return ctx.Err()
		}
	}
	return nil
}

// chainOf is the chain a subject of the audit stream belongs to, the
// inverse of cluster.AuditSubject; a subject no writer uses yields itself
// prefixed with "?", which is no meeting's id.
func chainOf(subject string) string {
	if subject == cluster.AuditSubject("") {
		return ""
	}
	prefix := strings.TrimSuffix(cluster.AuditSubject("x"), "x")
	if id, ok := strings.CutPrefix(subject, prefix); ok {
		return id
	}
	return "?" + subject
}

// AuditRecords returns the stored records in log order: one chain's, or
// every chain's when all is true. It reads the whole stream, in batches;
// the control plane reads by position instead (ReadAudit).
func (s *Store) AuditRecords(ctx context.Context, chain string, all bool) ([][]byte, error) {
	last, err := s.AuditLastSeq(ctx)
	if err != nil {
		return nil, err
	}
	var out [][]byte
	err = s.ReadAudit(ctx, "", true, 1, last, 0, func(r AuditRecord) error {
		if all || r.Chain == chain {
			out = append(out, r.Data)
		}
		return nil
	})
	return out, err
}
