package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// A witness follows a real control plane's log for two rounds; a full
// export and a meeting's evidence pack fetched from it verify against the
// witness's cosigned checkpoints.
func TestAuditWitnessExportVerifyAgainstCluster(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	ctx := context.Background()
	cfg, err := c.API.Config(ctx)
	if err != nil {
		t.Fatal(err)
	}
	logV, err := audit.NewVerifier(cfg.AuditVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	size := func() int64 {
		signed, err := c.API.Checkpoint(ctx)
		if err != nil {
			return -1
		}
		cp, err := audit.OpenCheckpoint(signed, logV)
		if err != nil {
			t.Fatalf("the server's checkpoint: %v", err)
		}
		return cp.Size
	}
	m := c.CreateMeeting(policy.Policy{})
	if _, e, _ := c.Join(m.ID, "DE"); e != nil {
		t.Fatalf("join: %v", e)
	}
	testcluster.WaitFor(t, 10*time.Second, "a checkpoint of the meeting's entries", func() bool { return size() >= 2 })
	dir := filepath.Join(t.TempDir(), "witness")
	witness := func() (int, string) {
		code, _, errOut := runCmd("audit", "witness", "--server", c.URL, "--state", dir, "--log-key", cfg.AuditVerifierKey, "--once")
		return code, errOut
	}
	if code, errOut := witness(); code != 0 || !strings.Contains(errOut, "first checkpoint") {
		t.Fatalf("first round: %d %s", code, errOut)
	}
	first := size()
	if _, e, _ := c.Join(m.ID, "FR"); e != nil {
		t.Fatalf("join: %v", e)
	}
	testcluster.WaitFor(t, 10*time.Second, "a larger checkpoint", func() bool { return size() > first })
	if code, errOut := witness(); code != 0 || !strings.Contains(errOut, "extends the one of") {
		t.Fatalf("second round: %d %s", code, errOut)
	}
	wvkey, err := os.ReadFile(filepath.Join(dir, witnessVKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	held := filepath.Join(dir, witnessHistory)

	full := filepath.Join(t.TempDir(), "log.jsonl")
	if code, _, errOut := runCmd("audit", "export", "--server", c.URL, "--token", c.OperatorToken(), "--out", full); code != 0 {
		t.Fatalf("export: %d %s", code, errOut)
	}
	code, out, errOut := runCmd("audit", "verify", full, "--public-key", cfg.AuditVerifierKey, "--checkpoint", held, "--witness-key", string(wvkey))
	if code != 0 || !strings.Contains(out, "consistent with 2 held checkpoint(s)") || !strings.Contains(out, "cosigned by") {
		t.Fatalf("verify the full export: %d %s %s", code, out, errOut)
	}
	if code, _, errOut := runCmd("audit", "verify", full); code != 2 || !strings.Contains(errOut, "a key is required") {
		t.Fatalf("verify without a key: %d %s", code, errOut)
	}

	pack := filepath.Join(t.TempDir(), "pack.jsonl")
	if code, _, errOut := runCmd("audit", "export", "--server", c.URL, "--meeting", m.ID, "--token", m.HostToken, "--checkpoint", held, "--out", pack); code != 0 {
		t.Fatalf("export the pack: %d %s", code, errOut)
	}
	code, out, errOut = runCmd("audit", "verify", pack, "--public-key", cfg.AuditVerifierKey, "--checkpoint", held, "--witness-key", string(wvkey))
	if code != 0 || !strings.Contains(out, `meeting "`+m.ID+`"`) {
		t.Fatalf("verify the pack: %d %s %s", code, out, errOut)
	}
	x, err := os.ReadFile(pack)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(x), `{"consistency":`); n < 1 {
		t.Fatalf("the pack holds %d consistency proofs", n)
	}
}
