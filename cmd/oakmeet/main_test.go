package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/audit"
)

func runCmd(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestUsageAndUnknownCommand(t *testing.T) {
	if code, _, errOut := runCmd(); code != 2 || !strings.Contains(errOut, "serve") {
		t.Fatalf("no args: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("frobnicate"); code != 2 || !strings.Contains(errOut, `unknown command "frobnicate"`) {
		t.Fatalf("unknown: %d %q", code, errOut)
	}
	if code, out, _ := runCmd("version"); code != 0 || !strings.HasPrefix(out, "oakmeet ") {
		t.Fatalf("version: %d %q", code, out)
	}
	if code, _, errOut := runCmd("node"); code != 1 || !strings.Contains(errOut, "--enrollment is required") {
		t.Fatalf("node without enrollment: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("bot", "--meeting", "m", "--duration", "-1s"); code != 1 || !strings.Contains(errOut, "--duration -1s") {
		t.Fatalf("bot with a negative duration: %d %q", code, errOut)
	}
	if code, _, _ := runCmd("serve", "--no-such-flag"); code != 1 {
		t.Fatalf("bad flag: %d", code)
	}
	// The flag package explains a command-line error once, with the usage.
	for _, tc := range []struct {
		args []string
		why  string
	}{
		{[]string{"bot", "-meeting"}, "flag needs an argument"},
		{[]string{"bot", "---x"}, "bad flag syntax"},
		{[]string{"bot", "--duration", "soon"}, "invalid value"},
	} {
		if code, _, errOut := runCmd(tc.args...); code != 1 || strings.Count(errOut, tc.why) != 1 || !strings.Contains(errOut, "Usage of bot") {
			t.Errorf("%v: %d %q", tc.args, code, errOut)
		}
	}
}

func TestServeRejectsBadSettings(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"serve", "--data", dir, "--block", "XX", "--listen", "127.0.0.1:0"},
		{"serve", "--data", dir, "--trusted-proxies", "nonsense"},
		{"serve", "--data", dir, "--log-level", "loud"},
		{"serve", "--data", dir, "--nodes", "99"},
		{"serve", "--data", dir, "--heartbeat-interval", "1ms"},
		{"node", "--country", "DE", "--heartbeat-interval", "2m"},
	} {
		code, _, errOut := runCmd(args...)
		if code != 1 || errOut == "" {
			t.Errorf("%v: %d %q", args, code, errOut)
		}
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	ch := audit.NewChain(key, "m1", audit.Head{})
	var entries []audit.Entry
	for i := range 3 {
		entries = append(entries, ch.Seal(audit.Entry{Time: time.Unix(int64(i), 0), Kind: audit.KindPlacement, Node: "de-fra", NodeCountry: "DE"}))
	}
	var buf bytes.Buffer
	h := audit.Header{Format: audit.Format, PublicKey: b64(key.Public().(ed25519.PublicKey)), Exported: time.Unix(9, 0)}
	if err := audit.WriteExport(&buf, h, entries, audit.SignHeads(key, audit.Heads(entries))); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "log.jsonl")
	os.WriteFile(path, buf.Bytes(), 0o600)
	if code, out, _ := runCmd("audit", "verify", path); code != 0 || !strings.HasPrefix(out, "ok: 3 entries") {
		t.Fatalf("verify: %d %q", code, out)
	}
	if code, out, _ := runCmd("audit", "verify", "--public-key", "AAAA", path); code != 1 || !strings.Contains(out, "not by the expected key") {
		t.Fatalf("wrong expected key: %d %q", code, out)
	}
	tampered := bytes.Replace(buf.Bytes(), []byte(`"node":"de-fra"`), []byte(`"node":"de-frb"`), 1)
	os.WriteFile(path, tampered, 0o600)
	if code, out, _ := runCmd("audit", "verify", path); code != 1 || !strings.Contains(out, "FAILED") || !strings.Contains(out, "line 2") {
		t.Fatalf("tampered: %d %q", code, out)
	}
	if code, _, _ := runCmd("audit", "verify"); code != 1 {
		t.Fatalf("no file: %d", code)
	}
	if code, _, _ := runCmd("audit", "export", "--server", "http://127.0.0.1:1"); code != 1 {
		t.Fatalf("unreachable server: %d", code)
	}
}

func TestAuditExportCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/audit/export" || r.URL.Query().Get("meeting") != "m 1" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"error":"no such meeting","code":"not_found"}`))
			return
		}
		_, _ = w.Write([]byte("header\nentry\nentry\nheads\n"))
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if code, _, errOut := runCmd("audit", "export", "--server", srv.URL, "--meeting", "m 1", "--out", path); code != 0 || !strings.Contains(errOut, "wrote 2 entries") {
		t.Fatalf("export: %d %q", code, errOut)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "header\nentry\nentry\nheads\n" {
		t.Fatalf("exported %q, %v", data, err)
	}
	if code, _, errOut := runCmd("audit", "export", "--server", srv.URL, "--meeting", "m2"); code != 1 || !strings.Contains(errOut, "no such meeting (not_found)") {
		t.Fatalf("refused export: %d %q", code, errOut)
	}
}
