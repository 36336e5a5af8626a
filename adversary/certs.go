package adversary

import (
	"crypto/ed25519"
	"fmt"

	"github.com/oakmeet/oakmeet/nodecert"
)

// SelfSigned is cert as a machine that is not enrolled would make it: the
// same node, place, identity key and validity, signed by a key of its own
// instead of the deployment's enrollment key.
func SelfSigned(cert string) (string, error) {
	c, err := nodecert.Parse([]byte(cert))
	if err != nil {
		return "", fmt.Errorf("self-sign: %w", err)
	}
	_, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		return "", err
	}
	c.EnrollmentKeyID = ""
	out, err := nodecert.Issue(key, c)
	if err != nil {
		return "", fmt.Errorf("self-sign: %w", err)
	}
	return string(out), nil
}

// Describe says in a line what a certificate claims, for test failures.
func Describe(cert string) string {
	c, err := nodecert.Parse([]byte(cert))
	if err != nil {
		return "unreadable certificate: " + err.Error()
	}
	return fmt.Sprintf("node %s in %s/%s, serial %s, valid %s to %s, enrollment key %s",
		c.NodeID, c.Country, c.Region, c.Serial, c.NotBefore.Format("15:04:05"), c.NotAfter.Format("15:04:05"), c.EnrollmentKeyID)
}
