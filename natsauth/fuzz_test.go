package natsauth

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseCreds checks that reading any credentials file (the operator
// hands them to nodes; a node reads its own at start) never panics, and
// that a file it accepts names a user whose seed matches the JWT. Seeds are
// real files: a node's and the control plane's, from a fresh deployment.
//
// Rate: hundreds to about a thousand inputs per second. A file that parses
// costs an Ed25519 check of its JWT's signature, and this package's tests
// link the NATS server, so the coverage map the fuzzer scans around every
// input is large.
func FuzzParseCreds(f *testing.F) {
	d, err := New()
	if err != nil {
		f.Fatal(err)
	}
	node, err := d.NodeCreds("de-1", time.Time{})
	if err != nil {
		f.Fatal(err)
	}
	control, err := d.ControlCreds()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(node)
	f.Add(control)
	f.Add([]byte("-----BEGIN NATS USER JWT-----\nx\n------END NATS USER JWT------\n"))
	f.Fuzz(func(t *testing.T, creds []byte) {
		u, err := ParseCreds(creds)
		if err != nil {
			return
		}
		if u.Key == nil || u.JWT == "" || !strings.HasPrefix(u.InboxPrefix, "_INBOX") {
			t.Fatalf("accepted credentials without a key, a JWT or an inbox: %+v", u)
		}
	})
}
