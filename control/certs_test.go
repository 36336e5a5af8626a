package control

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/nodecert"
)

// testEnrollmentKey enrolls the nodes of this package's tests.
var testEnrollmentKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func testEnrollmentPub() ed25519.PublicKey { return testEnrollmentKey.Public().(ed25519.PublicKey) }

// testCertifier checks certificates against testEnrollmentKey.
func testCertifier(t testing.TB) *certifier {
	t.Helper()
	c, err := newCertifier(testEnrollmentPub(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// issueCert signs a certificate for what info says, valid from notBefore
// to notAfter, with key.
func issueCert(t testing.TB, key ed25519.PrivateKey, info cluster.NodeInfo, notBefore, notAfter time.Time) string {
	t.Helper()
	serial, err := nodecert.NewSerial()
	if err != nil {
		t.Fatal(err)
	}
	cert, err := nodecert.Issue(key, nodecert.Cert{Serial: serial, NodeID: info.ID, Country: info.Country, Region: info.Region,
		IdentityKey: info.IdentityKey, NotBefore: notBefore, NotAfter: notAfter})
	if err != nil {
		t.Fatal(err)
	}
	return string(cert)
}

// enrolled gives info an identity key, if it has none, and a certificate
// of testEnrollmentKey valid through every clock these tests use. Fixtures
// that have no testing.T call it, so a failure panics.
func enrolled(info cluster.NodeInfo) cluster.NodeInfo {
	if info.IdentityKey == nil {
		pub, _, _ := ed25519.GenerateKey(nil)
		info.IdentityKey = pub
	}
	serial, err := nodecert.NewSerial()
	if err != nil {
		panic(err)
	}
	cert, err := nodecert.Issue(testEnrollmentKey, nodecert.Cert{Serial: serial, NodeID: info.ID, Country: info.Country, Region: info.Region,
		IdentityKey: info.IdentityKey, NotBefore: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), NotAfter: time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		panic(err)
	}
	info.Cert = string(cert)
	return info
}
