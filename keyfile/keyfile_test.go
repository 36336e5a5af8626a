package keyfile

import (
	"crypto/ed25519"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCreatedOwnerOnlyAndReread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.key")
	key, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 || st.Size() != 32 {
		t.Fatalf("key file mode %v, %d bytes; want 0600, 32 bytes", st.Mode().Perm(), st.Size())
	}
	again, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(again) {
		t.Fatal("the key read back differs from the key created")
	}
	if left, _ := filepath.Glob(path + ".*"); len(left) != 0 {
		t.Fatalf("temporary files left: %v", left)
	}
	other, err := LoadOrCreate(filepath.Join(t.TempDir(), "control.key"))
	if err != nil || other.Equal(key) {
		t.Fatalf("a second key file holds the same key (%v)", err)
	}
}

// A file that is not a seed is refused with its path and sizes, and left
// as it was: replacing it would orphan every signature made before.
func TestRefusesABadFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "control.key")
	if err := os.WriteFile(path, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadOrCreate(path)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "want 32 bytes, found 10") {
		t.Fatalf("bad key file: %v", err)
	}
	if data, _ := os.ReadFile(path); string(data) != "not a key\n" {
		t.Fatalf("bad key file changed to %q", data)
	}
	if _, err := LoadOrCreate(filepath.Join(path, "inside-a-file")); err == nil || !strings.Contains(err.Error(), "signing key") {
		t.Fatalf("unreadable path: %v", err)
	}
}

func TestPublicKeyFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "enrollment.pub")
	key, err := LoadOrCreate(filepath.Join(t.TempDir(), "enrollment.key"))
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePublic(path, key.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublic(path)
	if err != nil || !pub.Equal(key.Public()) {
		t.Fatalf("read back %x, %v", pub, err)
	}
	for _, bad := range []string{"", "AAAA", strings.Repeat("A", 43) + "=", "not base64!"} {
		if _, err := ParsePublic([]byte(bad)); err == nil {
			t.Errorf("%q taken for a public key", bad)
		}
	}
}
