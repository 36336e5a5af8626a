package adversary

import (
	"bytes"
	"context"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
)

// LogVerifier is the verifier of the deployment's audit log, as its
// control plane names it (GET /api/config audit_verifier_key).
func LogVerifier(t testing.TB, cl *apiclient.Client) note.Verifier {
	t.Helper()
	cfg, err := cl.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(cfg.AuditVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// VerifyExport exports one meeting's log ("" = the whole log) and fails
// the test unless it verifies with the log's key: a test's finding counts
// only as part of the signed log.
func VerifyExport(t testing.TB, cl *apiclient.Client, meeting string) {
	t.Helper()
	var buf bytes.Buffer
	if err := cl.AuditExport(context.Background(), meeting, &buf); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(&buf, audit.VerifyOptions{Log: LogVerifier(t, cl)}); err != nil {
		t.Fatalf("audit log does not verify: %v", err)
	}
}
