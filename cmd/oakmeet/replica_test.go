package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/oakmeet/oakmeet/audit"
)

func TestReplicaIDIsKeptUnderData(t *testing.T) {
	dir := t.TempDir()
	a, err := loadOrCreateReplicaID(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := loadOrCreateReplicaID(dir)
	if err != nil || a != b || !strings.HasPrefix(a, "r-") {
		t.Fatalf("ids %q then %q (%v)", a, b, err)
	}
	if c, _ := loadOrCreateReplicaID(t.TempDir()); c == a {
		t.Fatalf("two data directories, one id %q", a)
	}
}

func TestServeRejectsBadReplicaSettings(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--replica-id", "no spaces"}, "--replica-id"},
		{[]string{"--lease-ttl", "0s"}, "--lease-ttl"},
		// Found before the replica stands: no election would cure it.
		{[]string{"--block", "ZZ"}, "deployment floor"},
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)
		code, _, errOut := runCmd(args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q", tc.args, code, errOut)
		}
	}
}

func TestFatalStartErrors(t *testing.T) {
	for _, tc := range []struct {
		err   error
		fatal bool
	}{
		{fmt.Errorf("store control value audit_checkpoint: %w", jetstream.ErrNoStreamResponse), false},
		{fmt.Errorf("control: %w", context.DeadlineExceeded), false},
		{fmt.Errorf("control: %w", nats.ErrNoResponders), false},
		{fmt.Errorf("control: the stored audit log was altered or written by an older version of oakmeet: stream sequence 3: bad; %s it", refusedLog), true},
		{fmt.Errorf("read: %w", audit.ErrChain), true},
		{errors.New("control: deployment floor: bad"), true},
	} {
		if got := fatalStart(tc.err); got != tc.fatal {
			t.Errorf("%v: fatal %v", tc.err, got)
		}
	}
}
