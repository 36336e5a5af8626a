package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/adversary"
	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// lastJSON decodes the bot's report, the last line of its output.
func lastJSON(t *testing.T, out string) bot.Report {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rep bot.Report
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil {
		t.Fatalf("report %q: %v", out, err)
	}
	return rep
}

// `bot --checkpoints FILE` appends every checkpoint it holds to FILE and
// reports them; after the control plane cut entries off its log (and
// signed the rest with its own key), a run given the same FILE raises the
// alarm and exits 3. A key other than the log's, given with --audit-key,
// is an alarm too.
func TestBotCheckpointsFileCatchesATruncatedLog(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	link, err := api.ParseLink(m.JoinURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.API.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "checkpoints")
	botArgs := func(extra ...string) []string {
		link.Server = c.URL
		return append([]string{"bot", "--link", link.String(), "--json", "--checkpoints", file}, extra...)
	}
	code, out, errOut := runCmd(botArgs("--duration", "1500ms", "--audit-key", cfg.AuditVerifierKey)...)
	if code != 0 {
		t.Fatalf("honest run: %d %q", code, errOut)
	}
	rep := lastJSON(t, out)
	if rep.Audit.State != client.AuditConsistent || rep.Audit.EntriesProved < 1 || len(rep.Checkpoints) == 0 {
		t.Fatalf("honest run: %+v, %d checkpoints", rep.Audit, len(rep.Checkpoints))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	inFile, err := audit.SplitCheckpoints(data)
	if err != nil || len(inFile) != len(rep.Checkpoints) || string(inFile[len(inFile)-1]) != rep.Checkpoints[len(rep.Checkpoints)-1] {
		t.Fatalf("file holds %d checkpoints (%v), the report %d", len(inFile), err, len(rep.Checkpoints))
	}

	adversary.RewriteLog(t, c, func(ctx context.Context, l *adversary.AuditLog) error { return l.Truncate(ctx, 1) })
	c.StartNode(testcluster.World()[0])
	c.WaitHealthy(1)
	code, out, errOut = runCmd(botArgs("--duration", "5s")...)
	if code != exitAuditAlarm || !strings.Contains(errOut, "ALARM: ") {
		t.Fatalf("run after the truncation: %d %q", code, errOut)
	}
	if rep := lastJSON(t, out); rep.Audit.State != client.AuditInconsistent || len(rep.Checkpoints) < len(inFile) {
		t.Fatalf("run after the truncation reports %+v", rep.Audit)
	}

	other, err := audit.VerifierKey("another.log", make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCmd("bot", "--link", link.String(), "--duration", "5s", "--audit-key", other)
	if code != exitAuditAlarm || !strings.Contains(errOut, "not the expected") {
		t.Fatalf("run with another log key: %d %q", code, errOut)
	}
}
