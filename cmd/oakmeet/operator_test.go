package main

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
)

// serve makes the operator token once, owner-only, says where it is, and
// reads the same one on the next start.
func TestOperatorTokenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d", operatorTokenName)
	tok, err := loadOrCreateOperatorToken(path)
	if err != nil || len(tok) != 43 {
		t.Fatalf("made %q: %v", tok, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file %v: %v", st.Mode(), err)
	}
	again, err := loadOrCreateOperatorToken(path)
	if err != nil || again != tok {
		t.Fatalf("read again %q, %v; made %q", again, err, tok)
	}
	if err := os.WriteFile(path, []byte("short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadOrCreateOperatorToken(path); err == nil {
		t.Fatal("a token file too short to hold a token was taken")
	}
	if got, err := readOperatorToken(filepath.Join(t.TempDir(), "none")); got != "" || err != nil {
		t.Fatalf("missing file: %q %v", got, err)
	}
}

// audit and report send --token, else the operator token from its file.
func TestAuditAndReportSendTheirToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.URL.Path+" "+r.Header.Get("Authorization"))
		mu.Unlock()
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"needs the operator token","code":"unauthorized"}`))
	}))
	defer srv.Close()
	file := filepath.Join(t.TempDir(), "op.token")
	if err := os.WriteFile(file, []byte("operator-secret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCmd("report", "--server", srv.URL, "--operator-token-file", file)
	if code != 1 || !strings.Contains(errOut, "needs the operator token (unauthorized)") {
		t.Fatalf("report: %d %q", code, errOut)
	}
	runCmd("report", "--server", srv.URL, "--meeting", "m1", "--token", "host-tok", "--operator-token-file", file)
	runCmd("audit", "export", "--server", srv.URL, "--operator-token-file", file)
	runCmd("audit", "export", "--server", srv.URL, "--operator-token-file", filepath.Join(t.TempDir(), "none"))
	want := []string{
		"/api/report Bearer operator-secret-token",
		"/api/meetings/m1/report Bearer host-tok",
		"/api/audit/export Bearer operator-secret-token",
		"/api/audit/export ",
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, "\n") != strings.Join(want, "\n") {
		t.Fatalf("requests\n%s\nwant\n%s", strings.Join(seen, "\n"), strings.Join(want, "\n"))
	}
}

// serve --demo: the banner names the operator token's file, and the
// deployment report answers only with the token in it.
func TestServePrintsTheOperatorToken(t *testing.T) {
	data := t.TempDir()
	httpAddr := freeAddr(t)
	out := start(t, "serve", "--demo", "--nodes", "0", "--data", data, "--listen", httpAddr, "--log-level", "warn")
	path := filepath.Join(data, operatorTokenName)
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(out.String(), "operator token (oakmeet audit and report read it): "+path) {
		if time.Now().After(deadline) {
			t.Fatalf("no operator token in the banner:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	tok, err := readOperatorToken(path)
	if err != nil || tok == "" {
		t.Fatalf("token file: %q %v", tok, err)
	}
	c := apiclient.New("http://"+httpAddr, nil)
	var ae *api.Error
	if _, err := c.Report(context.Background()); err == nil {
		t.Fatal("report without the operator token")
	} else if !errors.As(err, &ae) || ae.Status != 401 {
		t.Fatalf("report without the operator token: %v", err)
	}
	if _, err := c.WithBearer(tok).Report(context.Background()); err != nil {
		t.Fatalf("report with the operator token: %v", err)
	}
	if code, stdout, errOut := runCmd("report", "--server", "http://"+httpAddr, "--operator-token-file", path); code != 0 || !strings.Contains(stdout, "Traffic of 0 meetings") {
		t.Fatalf("oakmeet report: %d %q %q", code, stdout, errOut)
	}
}
