package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/oakmeet/oakmeet/enrollment"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/natsauth"
	"github.com/oakmeet/oakmeet/node"
)

// runEnroll writes the enrollment directory of one media node: its own
// NATS credentials, signed by the deployment's account key under --data,
// and the CA the NATS server's certificate is verified with.
func runEnroll(_ context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	var (
		dataDir = fs.String("data", defaultDataDir(), "the control plane's --data, holding the deployment's keys")
		id      = fs.String("id", "", "node id, unique in the deployment (default: <country>-<region or random>)")
		country = fs.String("country", "", "ISO 3166-1 alpha-2 country the node runs in (required)")
		region  = fs.String("region", "", "region id the node runs in (optional; see GET /api/geo)")
		out     = fs.String("out", "", "directory to write the enrollment into (required)")
		natsCA  = fs.String("nats-ca", "", "CA (PEM) of the NATS server's certificate, when it is not the deployment's own")
	)
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if *country == "" || *out == "" {
		return errors.New("--country and --out are required")
	}
	c, err := geo.ParseCountry(*country)
	if err != nil {
		return err
	}
	e := enrollment.Enrollment{Node: enrollment.Node{ID: *id, Country: c.Code}}
	if *region != "" {
		r, err := geo.ParseRegion(*region)
		if err != nil {
			return err
		}
		if r.Country != c.Code {
			return fmt.Errorf("--region %s is in %s, not %s", r.ID, r.Country, c.Code)
		}
		e.Node.Region = r.ID
	}
	if e.Node.ID == "" {
		e.Node.ID = node.DefaultID(c.Code, e.Node.Region)
	}
	auth, err := natsauth.LoadOrCreate(natsDir(*dataDir))
	if err != nil {
		return err
	}
	if e.NATSCreds, err = auth.NodeCreds(e.Node.ID, time.Time{}); err != nil {
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
	fmt.Fprintf(stdout, "enrolled node %s (%s) in %s\n", e.Node.ID, strings.TrimSpace(e.Node.Country+" "+e.Node.Region), *out)
	return nil
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
