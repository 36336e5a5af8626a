package main

import (
	"context"
	"crypto/ed25519"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/enrollment"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/node"
	"github.com/oakmeet/oakmeet/nodecert"
)

// runEnroll writes the enrollment directory of one media node: its
// certificate from the deployment's enrollment key, its identity key, the
// control plane's token key to pin, its own NATS credentials (signed by the
// account key under --data) and the CA the NATS server's certificate is
// verified with. With --revoke it revokes a node instead.
func runEnroll(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	var (
		dataDir  = fs.String("data", defaultDataDir(), "the control plane's --data, holding the deployment's keys")
		keyPath  = fs.String("enrollment-key", "", "the deployment's enrollment key (default <data>/enrollment.key, created on first use)")
		id       = fs.String("id", "", "node id, unique in the deployment (default: <country>-<region or random>)")
		country  = fs.String("country", "", "ISO 3166-1 alpha-2 country the node runs in (required)")
		region   = fs.String("region", "", "region id the node runs in (optional; see GET /api/geo)")
		valid    = fs.String("valid", "90d", "how long the node's certificate is valid, e.g. 90d or 36h")
		out      = fs.String("out", "", "directory to write the enrollment into (required)")
		natsCA   = fs.String("nats-ca", "", "CA (PEM) of the NATS server's certificate, when it is not the deployment's own")
		revokeID = fs.String("revoke", "", "revoke node ID instead: the control plane under --data stops using it within seconds")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *keyPath == "" {
		*keyPath = defaultEnrollmentKey(*dataDir)
	}
	if *revokeID != "" {
		return runRevoke(*dataDir, *keyPath, *revokeID, stdout)
	}
	if *country == "" || *out == "" {
		return errors.New("--country and --out are required")
	}
	validFor, err := parseValidity(*valid)
	if err != nil {
		return err
	}
	c, err := geo.ParseCountry(*country)
	if err != nil {
		return err
	}
	who := nodecert.Cert{NodeID: *id, Country: c.Code}
	if *region != "" {
		r, err := geo.ParseRegion(*region)
		if err != nil {
			return err
		}
		if r.Country != c.Code {
			return fmt.Errorf("--region %s is in %s, not %s", r.ID, r.Country, c.Code)
		}
		who.Region = r.ID
	}
	if who.NodeID == "" {
		who.NodeID = node.DefaultID(c.Code, who.Region)
	}
	e, err := enroll(*dataDir, *keyPath, who, validFor)
	if err != nil {
		return err
	}
	if *natsCA != "" {
		if e.NATSCA, err = os.ReadFile(*natsCA); err != nil {
			return fmt.Errorf("--nats-ca: %w", err)
		}
	} else {
		ca, err := natsauth.LoadOrCreateCA(natsDir(*dataDir))
		if err != nil {
			return err
		}
		e.NATSCA = ca.PEM()
	}
	if err := enrollment.Write(*out, e); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "enrolled node %s (%s) in %s, valid until %s\n", e.Node.ID, strings.TrimSpace(e.Node.Country+" "+e.Node.Region), *out,
		time.Now().Add(validFor).UTC().Format(time.RFC3339))
	return nil
}

// enroll makes a node's enrollment from the keys under dataDir, the
// certificate signed with the enrollment key at keyPath; who names the node
// and where it is.
func enroll(dataDir, keyPath string, who nodecert.Cert, validFor time.Duration) (enrollment.Enrollment, error) {
	ekey, err := loadEnrollmentKey(keyPath, dataDir)
	if err != nil {
		return enrollment.Enrollment{}, err
	}
	tokenKey, err := keyfile.LoadOrCreate(filepath.Join(dataDir, controlKeyFile))
	if err != nil {
		return enrollment.Enrollment{}, err
	}
	auth, err := natsauth.LoadOrCreate(natsDir(dataDir))
	if err != nil {
		return enrollment.Enrollment{}, err
	}
	return issueEnrollment(ekey, auth, tokenKey.Public().(ed25519.PublicKey), who, validFor)
}

// issueEnrollment makes a node's identity key, its certificate valid from
// now for validFor, and its NATS credentials, and pins tokenKey.
func issueEnrollment(ekey ed25519.PrivateKey, auth *natsauth.Deployment, tokenKey ed25519.PublicKey, who nodecert.Cert, validFor time.Duration) (enrollment.Enrollment, error) {
	var e enrollment.Enrollment
	pub, identity, err := ed25519.GenerateKey(nil)
	if err != nil {
		return e, err
	}
	if who.Serial, err = nodecert.NewSerial(); err != nil {
		return e, err
	}
	now := time.Now()
	who.IdentityKey, who.NotBefore, who.NotAfter = pub, now, now.Add(validFor)
	if e.Cert, err = nodecert.Issue(ekey, who); err != nil {
		return e, err
	}
	if e.NATSCreds, err = auth.NodeCreds(who.NodeID, time.Time{}); err != nil {
		return e, err
	}
	e.Identity, e.TokenKey = identity, tokenKey
	e.Node = enrollment.Node{ID: who.NodeID, Country: who.Country, Region: who.Region}
	return e, nil
}

func runRevoke(dataDir, keyPath, id string, stdout io.Writer) error {
	if err := cluster.ValidNodeID(id); err != nil {
		return fmt.Errorf("--revoke: %w", err)
	}
	key, err := loadEnrollmentKey(keyPath, dataDir)
	if err != nil {
		return err
	}
	seq, err := revoke(dataDir, key, id, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked node %s (revocation list %d in %s); the control plane stops using it within %s\n",
		id, seq, filepath.Join(dataDir, revocationsFile), 5*time.Second)
	return nil
}

// parseValidity reads a duration that may also be given in days ("90d").
func parseValidity(s string) (time.Duration, error) {
	var d time.Duration
	var err error
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if n, err = strconv.Atoi(days); err == nil {
			d = time.Duration(n) * 24 * time.Hour
		}
	} else {
		d, err = time.ParseDuration(s)
	}
	if err != nil || d <= 0 || d > 10*365*24*time.Hour {
		return 0, fmt.Errorf("--valid %s: want a duration such as 90d or 36h, at most ten years", s)
	}
	return d, nil
}

// runNATS prints what an external NATS cluster needs to know of the
// deployment: the server configuration that trusts its operator and
// preloads its accounts, or the control plane's credentials.
func runNATS(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("nats", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: oakmeet nats server-config|control-creds [--data DIR]")
		fs.PrintDefaults()
	}
	dataDir := fs.String("data", defaultDataDir(), "the control plane's --data, holding the deployment's keys")
	if len(args) == 0 {
		fs.SetOutput(stderr)
		fs.Usage()
		return errUsage
	}
	what := args[0]
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	auth, err := natsauth.LoadOrCreate(natsDir(*dataDir))
	if err != nil {
		return err
	}
	switch what {
	case "server-config":
		_, err = io.WriteString(stdout, auth.ServerConfig())
	case "control-creds":
		var creds []byte
		if creds, err = auth.ControlCreds(); err == nil {
			_, err = stdout.Write(creds)
		}
	default:
		return fmt.Errorf("nats %q: want server-config or control-creds", what)
	}
	return err
}
