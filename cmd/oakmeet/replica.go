package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/control"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/replica"
	"github.com/oakmeet/oakmeet/store"
)

// serve always runs the control plane as a replica: alone (the embedded
// NATS) it leads at once; with others on one NATS cluster, the one
// holding the lease runs the control plane and the rest forward to it.

// replicaIDFile keeps a replica's id under --data, so a restarted leader
// takes its lease back at once.
const replicaIDFile = "replica.id"

type replicaSettings struct {
	id       string // "" = the one in <data>/replica.id
	leaseTTL time.Duration
}

type replicaFlagValues struct {
	id       *string
	leaseTTL *time.Duration
}

func replicaFlags(fs *flag.FlagSet) replicaFlagValues {
	return replicaFlagValues{
		id:       fs.String("replica-id", "", "this control-plane replica's name among those on one NATS cluster (default: --nats-server-name with --nats-cluster, else a random one kept in <data>/"+replicaIDFile+")"),
		leaseTTL: fs.Duration("lease-ttl", 2*time.Second, "how long the leader's lease lasts unrenewed; another replica takes over after it"),
	}
}

func (v replicaFlagValues) get() replicaSettings {
	return replicaSettings{id: *v.id, leaseTTL: *v.leaseTTL}
}

// loadOrCreateReplicaID reads the replica id under dataDir, or makes one
// there on first start.
func loadOrCreateReplicaID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, replicaIDFile)
	data, err := os.ReadFile(path)
	if err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("replica id: %w", err)
	}
	id := "r-" + strings.ToLower(rand.Text()[:12])
	if err := keyfile.WriteAtomic(path, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("replica id: %w", err)
	}
	return id, nil
}

// controlPlane is what each election's control.Server is built on.
type controlPlane struct {
	nc      *nats.Conn
	dataDir string
	cfg     control.Config
	// member is this process's server of an embedded NATS cluster (nil
	// with a lone or an external NATS).
	member *bus.Embedded
	log    *slog.Logger
}

func (cp *controlPlane) publicKey() ed25519.PublicKey {
	return cp.cfg.Key.Public().(ed25519.PublicKey)
}

// newServer builds the control plane with the newest revocation list.
func (cp *controlPlane) newServer(ctx context.Context) (*control.Server, error) {
	cfg := cp.cfg
	_, list, err := readRevocations(cp.dataDir, cfg.EnrollmentKey)
	if err != nil {
		return nil, err
	}
	if list != nil {
		cfg.Revocations = list
	}
	if cp.member != nil {
		go cp.leadNothing(ctx, cfg.Store)
	}
	return control.New(ctx, cfg)
}

// leadNothingEvery is how often a leading replica that embeds a NATS
// cluster member hands its server's JetStream leaderships over.
const leadNothingEvery = 5 * time.Second

// leadNothing keeps, while ctx (the leadership) lasts, this process's NATS
// server from leading JetStream's meta group or any of the deployment's
// streams. The leader's process embeds that server: should it die, every
// stream its server led would wait out a JetStream election (4 to 9 s, not
// configurable) before the next leader could renew a lease or write, and
// the takeover would take that long. A stream is handed over only while
// its other replicas are all there, so this repeats until it holds.
func (cp *controlPlane) leadNothing(ctx context.Context, st *store.Store) {
	t := time.NewTicker(leadNothingEvery)
	defer t.Stop()
	for {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := errors.Join(cp.member.StepDownMeta(hctx), st.StepDownLeaders(hctx, cp.member.ServerName()))
		cancel()
		if err != nil && ctx.Err() == nil {
			cp.log.Debug("handing this server's JetStream leaderships to the other members", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// checkControlConfig finds, before the replica stands for election, what
// would make every control.New fail whatever the store says: such an
// error ends serve at once instead of at each election.
func checkControlConfig(cfg control.Config) error {
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return errors.New("control plane: an Ed25519 signing key is required")
	}
	floor, err := cfg.Floor.Normalize()
	if err == nil {
		_, err = policy.Combine(floor, policy.Policy{})
	}
	if err != nil {
		return fmt.Errorf("deployment floor (--block, --block-regions, --allow): %w", err)
	}
	return nil
}

// refusedLog is what control.New says of a stored audit log it will not
// extend: no retry changes the log, so serve ends with it.
const refusedLog = "this control plane will not extend"

// fatalStart says whether a control plane's start error is one no retry
// can cure. Everything else (a store without quorum for a moment, a
// stream still electing its leader) is retried by the replica.
func fatalStart(err error) bool {
	for _, e := range []error{audit.ErrInconsistent, audit.ErrCheckpoint, audit.ErrEntry, audit.ErrChain, audit.ErrOrder} {
		if errors.Is(err, e) {
			return true
		}
	}
	// control.New refusing the configuration itself, should
	// checkControlConfig not have caught it.
	s := err.Error()
	return strings.Contains(s, refusedLog) || strings.Contains(s, "control: deployment floor") || strings.Contains(s, "control: limit ")
}

func newReplica(st serveSettings, cp *controlPlane, log *slog.Logger) (*replica.Replica, error) {
	if err := checkControlConfig(cp.cfg); err != nil {
		return nil, err
	}
	id := st.replica.id
	if id == "" && st.natsCluster != nil {
		// A member of an embedded cluster is one process with one name:
		// its NATS server's, which also names its NATS user
		// (ReplicaCreds) and is as stable across restarts.
		id = st.natsCluster.ServerName
	}
	if id == "" {
		var err error
		if id, err = loadOrCreateReplicaID(st.dataDir); err != nil {
			return nil, err
		}
	}
	if st.replica.leaseTTL <= 0 {
		return nil, fmt.Errorf("--lease-ttl %s: must be positive", st.replica.leaseTTL)
	}
	// On a NATS cluster (external, or embedded members of one), a new
	// leader waits for a heartbeat of every live node before it places
	// anyone. A lone embedded NATS has one replica and no failover: it
	// starts as it always did.
	var settle time.Duration
	if st.natsURL != "" || st.natsCluster != nil {
		settle = cp.cfg.Timing.HeartbeatInterval * 3 / 2
	}
	r, err := replica.New(replica.Config{ID: id, NATS: cp.nc, Key: cp.cfg.Key, Replicas: st.jsReplicas, New: cp.newServer, Fatal: fatalStart,
		LeaseTTL: st.replica.leaseTTL, Settle: settle, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--replica-id: %w", err)
	}
	return r, nil
}

// leaderRevocations hands a new revocation list to the control plane this
// replica runs, if it leads; the next one built reads the list from disk.
func leaderRevocations(r *replica.Replica) func(context.Context, []byte) error {
	return func(ctx context.Context, list []byte) error {
		if s := r.Server(); s != nil {
			return s.SetRevocations(ctx, list)
		}
		return nil
	}
}
