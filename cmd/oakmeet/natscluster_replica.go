package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/oakmeet/oakmeet/keyfile"
	"github.com/oakmeet/oakmeet/natsauth"
)

// runReplica prepares control-plane replicas of one deployment: "init"
// gives a new replica's --data the secrets every replica shares, "creds"
// writes one replica's own NATS credentials (for --nats-creds with an
// external NATS).
func runReplica(_ context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "init" && args[0] != "creds") {
		fmt.Fprintln(stderr, "usage: oakmeet replica init --data NEW --from EXISTING")
		fmt.Fprintln(stderr, "       oakmeet replica creds --data DIR --name NAME --out FILE")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return flag.ErrHelp
		}
		return errUsage
	}
	fs := flag.NewFlagSet("replica "+args[0], flag.ContinueOnError)
	dataDir := fs.String("data", "", "the replica's --data (init: a new one)")
	from := fs.String("from", "", "init: the --data of a replica of the deployment (made ready as serve would on its first start, if it has not run yet)")
	name := fs.String("name", "", "creds: the replica's name (letters, digits, '-', '_'); its NATS user is oakmeet-control-<name>")
	out := fs.String("out", "", "creds: the credentials file to write (0600)")
	if err := parseFlags(fs, args[1:], stderr); err != nil {
		return err
	}
	if *dataDir == "" {
		return errors.New("--data is required")
	}
	if args[0] == "creds" {
		return writeReplicaCreds(*dataDir, *name, *out, stdout)
	}
	if *from == "" {
		return errors.New("--from is required")
	}
	copied, err := initReplica(*from, *dataDir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s holds the deployment's shared secrets from %s (%d files); start it with\n", *dataDir, *from, copied)
	fmt.Fprintf(stdout, "  oakmeet serve --data %s --nats-cluster NAME --nats-routes ... (its own --nats-server-name, ports and replica id)\n", *dataDir)
	return nil
}

func writeReplicaCreds(dataDir, name, out string, stdout io.Writer) error {
	if name == "" || out == "" {
		return errors.New("--name and --out are required")
	}
	if _, err := os.Stat(natsDir(dataDir)); err != nil {
		return fmt.Errorf("--data %s holds no deployment keys: %w", dataDir, err)
	}
	auth, err := natsauth.LoadOrCreate(natsDir(dataDir))
	if err != nil {
		return err
	}
	creds, err := auth.ReplicaCreds(name)
	if err != nil {
		return err
	}
	if err := keyfile.WriteAtomic(out, creds, 0o600); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(stdout, "wrote the NATS credentials of replica %s to %s\n", name, out)
	return nil
}

// sharedFiles are what every replica of a deployment must hold alike,
// relative to --data: the NATS operator and account keys (the identities
// and the route password derive from them) and the CA (route and client
// TLS), the control plane's signing key (tokens, the audit log), the
// enrollment public key (node certificates), the operator token, and the
// revocation list in force. Optional ones may be missing from a
// deployment. The enrollment key itself stays where it is: it certifies
// nodes and may be kept offline. Nothing of JetStream is copied: the NATS
// cluster replicates it, and each replica keeps its own id.
var sharedFiles = []struct {
	path     string
	optional bool
}{
	{filepath.Join("nats", "operator.nk"), false},
	{filepath.Join("nats", "account.nk"), false},
	{filepath.Join("nats", "system.nk"), false},
	{filepath.Join("nats", "ca.pem"), false},
	{filepath.Join("nats", "ca.key"), false},
	{controlKeyFile, false},
	{enrollmentPubFile, false},
	{operatorTokenName, false},
	{revocationsFile, true},
}

// initReplica copies the shared secrets from one replica's data directory
// into a new one's. What from lacks because serve never ran there is made
// there first, as serve would make it. A file already in to is kept if it
// is the same and refused if not: replicas with different keys would
// reject each other's tokens and nodes.
func initReplica(from, to string) (int, error) {
	if filepath.Clean(from) == filepath.Clean(to) {
		return 0, errors.New("--data and --from are the same directory")
	}
	if err := prepareDeployment(from); err != nil {
		return 0, fmt.Errorf("--from %s: %w", from, err)
	}
	type file struct {
		rel  string
		data []byte
	}
	var files []file
	for _, f := range sharedFiles {
		data, err := os.ReadFile(filepath.Join(from, f.path))
		if errors.Is(err, os.ErrNotExist) && f.optional {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("--from: %w", err)
		}
		if held, err := os.ReadFile(filepath.Join(to, f.path)); err == nil && !bytes.Equal(held, data) {
			return 0, fmt.Errorf("%s already holds a different %s: a replica of another deployment? (nothing was copied)", to, f.path)
		} else if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		files = append(files, file{f.path, data})
	}
	for _, f := range files {
		path := filepath.Join(to, f.rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return 0, err
		}
		if err := keyfile.WriteAtomic(path, f.data, 0o600); err != nil {
			return 0, fmt.Errorf("write %s: %w", path, err)
		}
	}
	// Directories made above are 0700 already, to itself too if it was
	// new; one that existed is narrowed to it.
	if err := os.Chmod(to, 0o700); err != nil {
		return 0, err
	}
	return len(files), nil
}

// prepareDeployment makes in dataDir the shared secrets serve makes on its
// first start, leaving those already there untouched.
func prepareDeployment(dataDir string) error {
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	if _, err := natsauth.LoadOrCreate(natsDir(dataDir)); err != nil {
		return err
	}
	if _, err := natsauth.LoadOrCreateCA(natsDir(dataDir)); err != nil {
		return err
	}
	if _, err := keyfile.LoadOrCreate(filepath.Join(dataDir, controlKeyFile)); err != nil {
		return err
	}
	if _, err := servePublicKey("", dataDir); err != nil {
		return err
	}
	_, err := loadOrCreateOperatorToken(filepath.Join(dataDir, operatorTokenName))
	return err
}
