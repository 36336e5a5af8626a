package enrollment

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteReadOwnerOnly(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "de-1")
	in := Enrollment{Node: Node{ID: "de-1", Country: "DE", Region: "eu-central-1"}, NATSCreds: []byte("creds"), NATSCA: []byte("ca")}
	if err := Write(dir, in); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{NodeFile, NATSCreds, NATSCA} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v", f, st, err)
		}
	}
	out, err := Read(dir)
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != in.Node || string(out.NATSCreds) != "creds" || string(out.NATSCA) != "ca" {
		t.Fatalf("read %+v", out)
	}
	if err := Write(dir, Enrollment{Node: Node{ID: "a b"}, NATSCreds: []byte("x")}); err == nil {
		t.Fatal("a bad node id was written")
	}
}
