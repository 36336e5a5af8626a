package enrollment

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/nodecert"
)

// enrollmentFor is what enroll writes for a node in DE: a certificate of a
// fresh enrollment key naming a fresh identity key.
func enrollmentFor(t *testing.T) Enrollment {
	t.Helper()
	_, authority, _ := ed25519.GenerateKey(nil)
	_, identity, _ := ed25519.GenerateKey(nil)
	tok, _, _ := ed25519.GenerateKey(nil)
	serial, _ := nodecert.NewSerial()
	cert, err := nodecert.Issue(authority, nodecert.Cert{Serial: serial, NodeID: "de-1", Country: "DE", Region: "eu-central-1",
		IdentityKey: identity.Public().(ed25519.PublicKey), NotBefore: time.Now(), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	return Enrollment{Cert: cert, Identity: identity, TokenKey: tok, NATSCreds: []byte("creds"), NATSCA: []byte("ca")}
}

func TestWriteReadOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "de-1")
	in := enrollmentFor(t)
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{NodeCert, IdentityKey, TokenKey, NATSCreds, NATSCA} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	out, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != (Node{ID: "de-1", Country: "DE", Region: "eu-central-1"}) || string(out.Cert) != string(in.Cert) ||
		!out.Identity.Equal(in.Identity) || !out.TokenKey.Equal(in.TokenKey) || string(out.NATSCreds) != "creds" || string(out.NATSCA) != "ca" {
		t.Fatalf("read %+v", out)
	}
}

func TestPartsMustBelongTogether(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "de-1")
	e := enrollmentFor(t)
	_, other, _ := ed25519.GenerateKey(nil)
	bad := e
	bad.Identity = other
	if err := Write(dir, bad); err == nil || !strings.Contains(err.Error(), "is not the key") {
		t.Fatalf("an identity key the certificate does not name was written: %v", err)
	}
	bad = e
	bad.Cert = []byte("oakmeet-node-cert-v1.e30.AA")
	if err := Write(dir, bad); err == nil {
		t.Fatal("a malformed certificate was written")
	}
	if err := Write(dir, e); err != nil {
		t.Fatal(err)
	}
	// An identity key swapped in afterwards is noticed when the node starts.
	if err := os.WriteFile(filepath.Join(dir, IdentityKey), other.Seed(), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Read(dir); err == nil || !strings.Contains(err.Error(), "is not the key") {
		t.Fatalf("read with a swapped identity key: %v", err)
	}
}
