package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/enrollment"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/nodecert"
)

func TestEnrollWritesEverythingANodeNeeds(t *testing.T) {
	data, out := t.TempDir(), filepath.Join(t.TempDir(), "jp")
	code, stdout, errOut := runCmd("enroll", "--data", data, "--id", "jp-tyo-1", "--country", "jp", "--region", "ap-northeast-1", "--valid", "30d", "--out", out)
	if code != 0 {
		t.Fatalf("enroll: %d %q", code, errOut)
	}
	if !strings.Contains(stdout, "enrolled node jp-tyo-1 (JP ap-northeast-1)") {
		t.Fatalf("enroll said %q", stdout)
	}
	if st, err := os.Stat(filepath.Join(data, enrollmentKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("enrollment key: %v %v", st, err)
	}
	e, err := enrollment.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := keyfile.ReadPublic(filepath.Join(data, enrollmentPubFile))
	if err != nil {
		t.Fatal(err)
	}
	c, err := nodecert.Verify(pub, e.Cert, time.Now())
	if err != nil {
		t.Fatalf("the certificate does not verify with %s: %v", enrollmentPubFile, err)
	}
	if c.NodeID != "jp-tyo-1" || c.Country != "JP" || c.Region != "ap-northeast-1" || !c.IdentityKey.Equal(e.Identity.Public()) {
		t.Fatalf("certificate says %+v", c)
	}
	if d := c.NotAfter.Sub(c.NotBefore); d != 30*24*time.Hour {
		t.Fatalf("valid for %s, want 30d", d)
	}
	control, err := keyfile.LoadOrCreate(filepath.Join(data, controlKeyFile))
	if err != nil || !e.TokenKey.Equal(control.Public()) {
		t.Fatalf("pinned token key is not the control plane's: %v", err)
	}
	// The enrollment key is not the control plane's signing key.
	ekey, _ := keyfile.LoadOrCreate(filepath.Join(data, enrollmentKeyFile))
	if ekey.Equal(control) {
		t.Fatal("the enrollment key is the signing key")
	}
	for _, bad := range []string{"0d", "-3d", "soon", "20000d"} {
		if code, _, errOut := runCmd("enroll", "--data", data, "--country", "JP", "--valid", bad, "--out", out); code != 1 || !strings.Contains(errOut, "--valid") {
			t.Errorf("--valid %s: %d %q", bad, code, errOut)
		}
	}
}

func TestEnrollRefusesAKeyTheControlPlaneDoesNotTrust(t *testing.T) {
	data := t.TempDir()
	if code, _, errOut := runCmd("enroll", "--data", data, "--country", "DE", "--out", filepath.Join(t.TempDir(), "a")); code != 0 {
		t.Fatal(errOut)
	}
	other := filepath.Join(t.TempDir(), "offline.key")
	code, _, errOut := runCmd("enroll", "--data", data, "--enrollment-key", other, "--country", "DE", "--out", filepath.Join(t.TempDir(), "b"))
	if code != 1 || !strings.Contains(errOut, "is not the one") {
		t.Fatalf("enrolled with another key: %d %q", code, errOut)
	}
}

func TestNodeRefusesWhatItsCertificateDoesNotSay(t *testing.T) {
	data, out := t.TempDir(), filepath.Join(t.TempDir(), "jp")
	if code, _, errOut := runCmd("enroll", "--data", data, "--id", "jp-1", "--country", "JP", "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	for _, tc := range []struct{ flag, value, says string }{
		{"--country", "DE", `country "JP"`},
		{"--id", "de-1", `id "jp-1"`},
		{"--region", "eu-central-1", `region ""`},
	} {
		// Refused before anything is started: no NATS is needed to tell.
		code, _, errOut := runCmd("node", "--enrollment", out, tc.flag, tc.value, "--nats", "nats://127.0.0.1:1")
		if code != 1 || !strings.Contains(errOut, tc.flag+" "+tc.value) || !strings.Contains(errOut, tc.says) {
			t.Errorf("node %s %s: %d %q", tc.flag, tc.value, code, errOut)
		}
	}
	// A certificate swapped for another node's is refused too: it does not
	// name the identity key.
	other := filepath.Join(t.TempDir(), "de")
	if code, _, errOut := runCmd("enroll", "--data", data, "--id", "de-1", "--country", "DE", "--out", other); code != 0 {
		t.Fatal(errOut)
	}
	cert, _ := os.ReadFile(filepath.Join(other, enrollment.NodeCert))
	if err := os.WriteFile(filepath.Join(out, enrollment.NodeCert), cert, 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd("node", "--enrollment", out, "--nats", "nats://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "is not the key") {
		t.Fatalf("node with another's certificate: %d %q", code, errOut)
	}
}

func TestRevokeSignsANewerListTheControlPlaneReads(t *testing.T) {
	data, out := t.TempDir(), filepath.Join(t.TempDir(), "de")
	if code, _, errOut := runCmd("enroll", "--data", data, "--id", "de-1", "--country", "DE", "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	e, err := enrollment.Read(out)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := keyfile.ReadPublic(filepath.Join(data, enrollmentPubFile))
	cert, _ := nodecert.Parse(e.Cert)

	// The control plane's watcher hands every new list on.
	got := make(chan []byte, 4)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchRevocations(ctx, data, nil, func(_ context.Context, list []byte) error { got <- list; return nil },
			slog.New(slog.NewTextHandler(io.Discard, nil)))
	}()
	defer func() { cancel(); <-done }()

	var held nodecert.Revocations
	for seq := uint64(1); seq <= 2; seq++ {
		start := time.Now()
		code, stdout, errOut := runCmd("enroll", "--data", data, "--revoke", "de-1")
		if code != 0 || !strings.Contains(stdout, "revoked node de-1") {
			t.Fatalf("revoke: %d %q %q", code, stdout, errOut)
		}
		select {
		case list := <-got:
			if held, err = nodecert.VerifyRevocation(pub, list, held); err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the control plane's watcher did not see the revocation within 5s")
		}
		if held.Seq != seq || !held.Revoked(cert) || len(held.Entries) != 1 {
			t.Fatalf("list %d: %+v", seq, held)
		}
		t.Logf("list %d seen after %s", seq, time.Since(start))
	}
	if code, _, errOut := runCmd("enroll", "--data", data, "--revoke", "no such id"); code != 1 || !strings.Contains(errOut, "--revoke") {
		t.Fatalf("revoke a bad id: %d %q", code, errOut)
	}
	// Only the trusted enrollment key signs revocations.
	code, _, errOut := runCmd("enroll", "--data", data, "--enrollment-key", filepath.Join(t.TempDir(), "other.key"), "--revoke", "de-1")
	if code != 1 || !strings.Contains(errOut, "is not the one") {
		t.Fatalf("revoke with another key: %d %q", code, errOut)
	}
}
