package main

import (
	"strings"
	"testing"
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
	} {
		args := append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, tc.args...)
		code, _, errOut := runCmd(args...)
		if code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q", tc.args, code, errOut)
		}
	}
}
