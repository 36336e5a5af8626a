// Package store keeps oakmeet's durable state in NATS JetStream: meetings
// and nodes in key-value buckets, the audit log in an append-only stream. It
// moves bytes; the control plane owns what they mean.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/cluster"
)

// Sentinel errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("changed concurrently")
	ErrExists   = errors.New("already exists")
)

// publishAckWait bounds the wait for an asynchronous publish's answer. By
// default nats.go waits for ever, and an answer lost while a NATS server
// of the cluster goes away (the connection moving to another) then held
// the audit log's appender, and every join behind it, until its context
// ended; now the append fails as "outcome unknown" and is settled from
// what the stream holds.
const publishAckWait = 5 * time.Second

// opWait bounds one read or write of a single key. A write sent while its
// stream elects a new leader (a NATS server of the cluster lost) is never
// answered, and nats.go waits for the whole context: a join then hung for
// its 30 s. Failing after opWait gives the caller a clear "try again"
// (and a write whose answer was lost is settled by the caller, as any
// unknown outcome is).
const opWait = 5 * time.Second

// Store is a handle on the buckets and stream. It is safe for concurrent use.
type Store struct {
	js       jetstream.JetStream
	meetings jetstream.KeyValue
	nodes    jetstream.KeyValue
	control  jetstream.KeyValue
	audit    jetstream.Stream
	events   jetstream.Stream
}

// Options are how OpenWith makes the buckets and streams.
type Options struct {
	// Replicas is how many JetStream servers keep each bucket and stream
	// (1 when zero): with 3, a cluster loses none of it to one server's
	// death. More than 1 needs a clustered JetStream with that many servers.
	Replicas int
}

// Open binds to (creating where missing) oakmeet's buckets and stream, each
// kept by one JetStream server.
func Open(ctx context.Context, nc *nats.Conn) (*Store, error) {
	return OpenWith(ctx, nc, Options{})
}

// OpenWith binds to (creating where missing) oakmeet's buckets and stream
// with opts. One that exists with another replica count is changed to
// opts.Replicas, which a clustered JetStream does in place. While a
// cluster is still electing its leader, or has fewer servers up than
// opts.Replicas, it retries until ctx ends.
func OpenWith(ctx context.Context, nc *nats.Conn, opts Options) (*Store, error) {
	if opts.Replicas == 0 {
		opts.Replicas = 1
	}
	if opts.Replicas < 1 || opts.Replicas > maxReplicas {
		return nil, fmt.Errorf("store: %d replicas: want 1 to %d", opts.Replicas, maxReplicas)
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishAckWait))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	s := &Store{js: js}
	kv := func(bucket, desc string) (jetstream.KeyValue, error) {
		var b jetstream.KeyValue
		err := retry(ctx, func(ctx context.Context) (err error) {
			b, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
				Bucket:      bucket,
				Description: desc,
				Storage:     jetstream.FileStorage,
				History:     1,
				Replicas:    opts.Replicas,
			})
			return err
		})
		if err == nil {
			err = settled(ctx, js, "KV_"+bucket, opts.Replicas)
		}
		if err != nil {
			return nil, fmt.Errorf("open bucket %s (%d replicas): %w", bucket, opts.Replicas, err)
		}
		return b, nil
	}
	stream := func(cfg jetstream.StreamConfig) (jetstream.Stream, error) {
		cfg.Replicas = opts.Replicas
		var st jetstream.Stream
		err := retry(ctx, func(ctx context.Context) (err error) {
			st, err = js.CreateOrUpdateStream(ctx, cfg)
			return err
		})
		if err == nil {
			err = settled(ctx, js, cfg.Name, opts.Replicas)
		}
		if err != nil {
			return nil, fmt.Errorf("open stream %s (%d replicas): %w", cfg.Name, opts.Replicas, err)
		}
		return st, nil
	}
	// Every bucket and stream of the deployment is made here, with the
	// same replicas.
	if s.meetings, err = kv(cluster.BucketMeetings, "oakmeet meetings"); err != nil {
		return nil, err
	}
	if s.nodes, err = kv(cluster.BucketNodes, "oakmeet node registrations"); err != nil {
		return nil, err
	}
	if s.control, err = kv(cluster.BucketControl, "oakmeet control-plane values"); err != nil {
		return nil, err
	}
	s.audit, err = stream(jetstream.StreamConfig{
		Name:        cluster.StreamAudit,
		Description: "oakmeet audit log (hash-chained, signed)",
		Subjects:    []string{"oakmeet.audit.>"},
		Storage:     jetstream.FileStorage,
		// The log is append-only: nothing may be removed through the API.
		DenyDelete: true,
		DenyPurge:  true,
		// Group-committed appends go as one atomic batch (AppendAudits).
		AllowAtomicPublish: true,
	})
	if err != nil {
		return nil, err
	}
	if s.events, err = stream(eventsStreamConfig(opts.Replicas)); err != nil {
		return nil, err
	}
	return s, nil
}

// settled waits until stream has a leader and enough followers caught up
// with it to make a quorum. A stream whose replicas were just raised is
// still copying itself to the new ones, and a write sent meanwhile may go
// unanswered; one opened here is written to at once. A quorum, not all:
// a process restarting while another member is down must still start.
func settled(ctx context.Context, js jetstream.JetStream, stream string, replicas int) error {
	if replicas <= 1 {
		return nil
	}
	wait := retryMin
	for {
		var why string
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		s, err := js.Stream(actx, stream)
		cancel()
		switch {
		case err != nil:
			why = err.Error()
		case s.CachedInfo().Cluster == nil || s.CachedInfo().Cluster.Leader == "":
			why = "no leader"
		default:
			current := 0
			for _, p := range s.CachedInfo().Cluster.Replicas {
				// A member that went away keeps its last Current.
				if p.Current && !p.Offline {
					current++
				}
			}
			if current >= replicas/2 {
				return nil
			}
			why = fmt.Sprintf("%d of %d followers current, %d needed", current, replicas-1, replicas/2)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("replicas of %s not settled (%s): %w", stream, why, ctx.Err())
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// maxReplicas is JetStream's own bound on a stream's replicas.
const maxReplicas = 5

// Bounds of OpenWith's retries. A request to a cluster without a leader,
// or one creating a stream that another process is creating at the same
// moment (replicas starting together), may go unanswered: each try gets
// from attemptMin, doubling up to attemptTimeout, and the next waits from
// retryMin, doubling up to retryMax.
const (
	attemptMin     = 250 * time.Millisecond
	attemptTimeout = 2 * time.Second
	retryMin       = 50 * time.Millisecond
	retryMax       = time.Second
)

// retry runs f until it succeeds, fails for good, or ctx ends; the error
// is the last one f returned.
func retry(ctx context.Context, f func(context.Context) error) error {
	wait, timeout := retryMin, attemptMin
	for {
		actx, cancel := context.WithTimeout(ctx, timeout)
		timeout = min(2*timeout, attemptTimeout)
		err := f(actx)
		cancel()
		if err == nil || !transient(err) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// JetStream's answers when fewer servers are up than the replicas asked
// for (nats-server's JSInsufficientResourcesErr, JSClusterNoPeersErrF).
const (
	jsErrInsufficientResources jetstream.ErrorCode = 10023
	jsErrNoPeers               jetstream.ErrorCode = 10005
)

// transient reports whether a JetStream request may succeed when tried
// again: the cluster has no leader yet, too few servers are up for the
// replicas asked, or nothing answered in time.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.ErrorCode == jsErrInsufficientResources ||
			apiErr.ErrorCode == jsErrNoPeers
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}

// OpenReader is a handle for a process that may only read control-plane
// values (a media node, whose NATS identity writes nothing): it creates
// nothing and binds to the control bucket on each read, so it works before
// the control plane has made the bucket. Only Control may be called on it.
func OpenReader(nc *nats.Conn) (*Store, error) {
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncTimeout(publishAckWait))
	if err != nil {
		return nil, fmt.Errorf("jetstream: %w", err)
	}
	return &Store{js: js}, nil
}

// Record is a stored value with its revision, for compare-and-set updates.
type Record struct {
	Value    []byte
	Revision uint64
}

func get(ctx context.Context, kv jetstream.KeyValue, key string) (Record, error) {
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, ErrNotFound
	}
	if err != nil {
		return Record{}, err
	}
	return Record{Value: e.Value(), Revision: e.Revision()}, nil
}

func keys(ctx context.Context, kv jetstream.KeyValue) ([]string, error) {
	ks, err := kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	return ks, err
}

// Meeting returns a meeting's stored value.
func (s *Store) Meeting(ctx context.Context, id string) (Record, error) {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	r, err := get(ctx, s.meetings, id)
	if err != nil {
		return r, fmt.Errorf("meeting %s: %w", id, err)
	}
	return r, nil
}

// CreateMeeting stores a new meeting; ErrExists if the id is taken.
func (s *Store) CreateMeeting(ctx context.Context, id string, value []byte) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	rev, err := s.meetings.Create(ctx, id, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("meeting %s: %w", id, ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("create meeting %s: %w", id, err)
	}
	return rev, nil
}

// UpdateMeeting replaces a meeting's value if it is still at revision rev;
// ErrConflict otherwise.
func (s *Store) UpdateMeeting(ctx context.Context, id string, value []byte, rev uint64) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	n, err := s.meetings.Update(ctx, id, value, rev)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("meeting %s: %w", id, ErrConflict)
	}
	if err != nil {
		return 0, fmt.Errorf("update meeting %s: %w", id, err)
	}
	return n, nil
}

// MeetingIDs lists every stored meeting.
func (s *Store) MeetingIDs(ctx context.Context) ([]string, error) {
	ks, err := keys(ctx, s.meetings)
	if err != nil {
		return nil, fmt.Errorf("list meetings: %w", err)
	}
	return ks, nil
}

// PutNode stores a node's registration.
func (s *Store) PutNode(ctx context.Context, id string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	if _, err := s.nodes.Put(ctx, id, value); err != nil {
		return fmt.Errorf("register node %s: %w", id, err)
	}
	return nil
}

// DeleteNode removes a node's registration (a clean shutdown).
func (s *Store) DeleteNode(ctx context.Context, id string) error {
	if err := s.nodes.Delete(ctx, id); err != nil {
		return fmt.Errorf("deregister node %s: %w", id, err)
	}
	return nil
}

// Nodes returns every registered node's value.
func (s *Store) Nodes(ctx context.Context) ([][]byte, error) {
	ks, err := keys(ctx, s.nodes)
	if err != nil {
		return nil, fmt.Errorf("list nodes: %w", err)
	}
	out := make([][]byte, 0, len(ks))
	for _, k := range ks {
		r, err := get(ctx, s.nodes, k)
		if errors.Is(err, ErrNotFound) {
			continue // removed between listing and reading
		}
		if err != nil {
			return nil, fmt.Errorf("read node %s: %w", k, err)
		}
		out = append(out, r.Value)
	}
	return out, nil
}

// Control returns a control-plane value.
func (s *Store) Control(ctx context.Context, key string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	kv := s.control
	if kv == nil {
		var err error
		if kv, err = s.js.KeyValue(ctx, cluster.BucketControl); err != nil {
			return nil, fmt.Errorf("control value %s: %w", key, err)
		}
	}
	r, err := get(ctx, kv, key)
	if err != nil {
		return nil, fmt.Errorf("control value %s: %w", key, err)
	}
	return r.Value, nil
}

// PutControl stores a control-plane value.
func (s *Store) PutControl(ctx context.Context, key string, value []byte) error {
	ctx, cancel := context.WithTimeout(ctx, opWait)
	defer cancel()
	if _, err := s.control.Put(ctx, key, value); err != nil {
		return fmt.Errorf("store control value %s: %w", key, err)
	}
	return nil
}

// StepDownLeaders hands the leadership of every replicated stream of the
// deployment (the buckets, the audit log, and the leader's lease and the
// events stream where they exist) that NATS server server leads to
// another of its replicas. A process that embeds a cluster member and
// does the deployment's work calls it on taking that work up: should the
// process then die abruptly, its server held no stream leader, and the
// writes of whoever takes over need not wait out a JetStream election
// (seconds; nats-server's are not configurable). Streams with one replica
// are left alone. Each stream is asked at once and given stepDownWait: one
// whose state cannot be had (its servers, or the cluster's meta leader,
// just lost) is skipped with an error rather than holding up the rest.
func (s *Store) StepDownLeaders(ctx context.Context, server string) error {
	names := []string{"KV_" + cluster.BucketMeetings, "KV_" + cluster.BucketNodes, "KV_" + cluster.BucketControl,
		cluster.StreamAudit, "KV_" + cluster.BucketLeader, cluster.StreamEvents}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, stepDownWait)
			defer cancel()
			st, err := s.js.Stream(ctx, name)
			if errors.Is(err, jetstream.ErrStreamNotFound) {
				return
			}
			if err != nil {
				errs[i] = fmt.Errorf("stream %s: %w", name, err)
				return
			}
			info := st.CachedInfo()
			if info.Config.Replicas <= 1 || info.Cluster == nil || info.Cluster.Leader != server {
				return
			}
			// Not while a replica has gone quiet without being known to be
			// gone: one just lost may still be chosen, and its election
			// would then have to time out (the very wait this is meant to
			// spare). The caller asks again later.
			for _, p := range info.Cluster.Replicas {
				if p != nil && !p.Offline && (!p.Current || p.Active > stepDownFresh) {
					// Gone quiet, and not yet known to be gone.
					errs[i] = fmt.Errorf("stream %s: replica %s is not current; leadership kept for now", name, p.Name)
					return
				}
			}
			errs[i] = s.stepDown(ctx, name)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stepDownFresh is how recently every other replica of a stream must have
// been heard for StepDownLeaders to hand its leadership over.
const stepDownFresh = 2 * time.Second

// stepDownWait bounds StepDownLeaders' work on one stream.
const stepDownWait = time.Second

func (s *Store) stepDown(ctx context.Context, stream string) error {
	msg, err := s.js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+stream, nil)
	if err != nil {
		return fmt.Errorf("step down as leader of %s: %w", stream, err)
	}
	var resp struct {
		Success bool                `json:"success"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("step down as leader of %s: %w", stream, err)
	}
	if resp.Error != nil {
		return fmt.Errorf("step down as leader of %s: %w", stream, resp.Error)
	}
	if !resp.Success {
		return fmt.Errorf("step down as leader of %s: refused", stream)
	}
	return nil
}
