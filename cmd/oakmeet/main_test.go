package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
		if code, _, errOut := runCmd(tc.args...); code != 1 || strings.Count(errOut, tc.why) != 1 || !strings.Contains(errOut, "usage: oakmeet bot --link LINK") {
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

// TestAuditExportFailures: an export that cannot be had says why and
// leaves no file behind.
func TestAuditExportFailures(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"error":"no such meeting","code":"not_found"}`))
	}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	if code, _, errOut := runCmd("audit", "export", "--server", srv.URL, "--meeting", "m2", "--out", path); code != 1 || !strings.Contains(errOut, "no such meeting (not_found)") {
		t.Fatalf("refused export: %d %q", code, errOut)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("a refused export left %s: %v", path, err)
	}
	if code, _, _ := runCmd("audit", "export", "--server", "http://127.0.0.1:1"); code != 1 {
		t.Fatalf("unreachable server: %d", code)
	}
}
