package natsauth

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeysAreOwnerOnlyAndReused(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	d, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{operatorFile, accountFile, systemFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v, %v", f, st, err)
		}
	}
	again, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	if again.Account() != d.Account() || again.Operator().Subject != d.Operator().Subject {
		t.Fatal("a second start made new keys")
	}
	if err := os.WriteFile(filepath.Join(dir, accountFile), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(dir); err == nil {
		t.Fatal("an unreadable account key was accepted")
	}
}

func TestNodeCredsNameTheNodeAndItsInbox(t *testing.T) {
	d, err := New()
	if err != nil {
		t.Fatal(err)
	}
	creds, err := d.NodeCreds("de-1", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	u, err := ParseCreds(creds)
	if err != nil {
		t.Fatal(err)
	}
	if u.Name != "oakmeet-node-de-1" || u.InboxPrefix != "_INBOX.node.de-1" {
		t.Fatalf("user %q, inbox %q", u.Name, u.InboxPrefix)
	}
	if _, err := d.NodeCreds("a.>", time.Time{}); err == nil {
		t.Fatal("a node id with subject wildcards was given credentials")
	}
}

// Processes making a deployment's keys at the same moment all end up with
// the same ones.
func TestLoadOrCreateAtOnceAgrees(t *testing.T) {
	dir := t.TempDir()
	const n = 8
	accounts := make(chan string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			d, err := LoadOrCreate(dir)
			if err != nil {
				errs <- err
				return
			}
			accounts <- d.Account()
		}()
	}
	first := ""
	for range n {
		select {
		case err := <-errs:
			t.Fatal(err)
		case a := <-accounts:
			if first == "" {
				first = a
			} else if a != first {
				t.Fatalf("account %s and %s from one directory", first, a)
			}
		}
	}
	again, err := LoadOrCreate(dir)
	if err != nil || again.Account() != first {
		t.Fatalf("account now %s, %v", again.Account(), err)
	}
}
