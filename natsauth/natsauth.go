// Package natsauth holds a deployment's NATS identities in NATS's own
// decentralised model: an operator key that signs the oakmeet account and
// the system account, and the account key that signs one user JWT per role
// with only the subjects that role's job needs (permissions.go). A NATS
// server trusts the operator and preloads the two account JWTs; every
// process connects with its own user credentials, and nothing without.
package natsauth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"github.com/oakmeet/oakmeet/cluster"
)

// Key files under a deployment's NATS directory: nkey seeds, 0600.
const (
	operatorFile = "operator.nk"
	accountFile  = "account.nk"
	systemFile   = "system.nk"
)

// Deployment is the operator, the oakmeet account and the system account,
// with their JWTs. It is immutable once built.
type Deployment struct {
	operator, account, system          nkeys.KeyPair
	operatorJWT, accountJWT, systemJWT string
	accountPub, systemPub              string
	operatorClaims                     *jwt.OperatorClaims
}

// New makes a deployment with fresh keys, held in memory only (tests and
// throw-away clusters).
func New() (*Deployment, error) {
	op, err := nkeys.CreateOperator()
	if err != nil {
		return nil, err
	}
	acc, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	sys, err := nkeys.CreateAccount()
	if err != nil {
		return nil, err
	}
	return build(op, acc, sys)
}

// LoadOrCreate reads the deployment's keys from dir, creating the missing
// ones (files 0600, dir 0700) on first use. A key file that does not parse is
// an error, never replaced: a new account key would void every node's
// credentials.
func LoadOrCreate(dir string) (*Deployment, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("nats keys: %w", err)
	}
	op, err := loadOrCreateKey(filepath.Join(dir, operatorFile), nkeys.PrefixByteOperator)
	if err != nil {
		return nil, err
	}
	acc, err := loadOrCreateKey(filepath.Join(dir, accountFile), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	sys, err := loadOrCreateKey(filepath.Join(dir, systemFile), nkeys.PrefixByteAccount)
	if err != nil {
		return nil, err
	}
	return build(op, acc, sys)
}

func loadOrCreateKey(path string, kind nkeys.PrefixByte) (nkeys.KeyPair, error) {
	seed, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		kp, err := nkeys.CreatePair(kind)
		if err != nil {
			return nil, err
		}
		seed, err := kp.Seed()
		if err != nil {
			return nil, err
		}
		created, err := createPrivate(path, append(seed, '\n'))
		if err != nil {
			return nil, fmt.Errorf("nats key %s: %w", path, err)
		}
		if created {
			return kp, nil
		}
		// Another process made the key first: its key is the one.
		return loadOrCreateKey(path, kind)
	}
	if err != nil {
		return nil, fmt.Errorf("nats key: %w", err)
	}
	kp, err := nkeys.FromSeed([]byte(strings.TrimSpace(string(seed))))
	if err != nil {
		return nil, fmt.Errorf("nats key %s: %w", path, err)
	}
	pub, err := kp.PublicKey()
	if err != nil || !nkeys.IsValidPublicKey(pub) || nkeys.PrefixByte(pub[0]) != prefixLetter(kind) {
		return nil, fmt.Errorf("nats key %s: not a %s key", path, kind)
	}
	return kp, nil
}

// prefixLetter is the first character of a public key of that kind.
func prefixLetter(kind nkeys.PrefixByte) nkeys.PrefixByte {
	switch kind {
	case nkeys.PrefixByteOperator:
		return 'O'
	case nkeys.PrefixByteAccount:
		return 'A'
	case nkeys.PrefixByteUser:
		return 'U'
	}
	return 0
}

// createPrivate writes data owner-only at path unless a file is there
// already (false): two processes making a deployment's keys at once end up
// with one key, never each their own. Like writePrivate, a crash never
// leaves half a key.
func createPrivate(path string, data []byte) (bool, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return false, err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	_, werr := tmp.Write(data)
	if err := errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close()); err != nil {
		return false, err
	}
	// A link, unlike a rename, does not replace what is there.
	err = os.Link(tmp.Name(), path)
	if errors.Is(err, os.ErrExist) {
		return false, nil
	}
	return err == nil, err
}

// writePrivate writes data owner-only beside path and renames it into place,
// so a crash never leaves half a key.
func writePrivate(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	_, werr := tmp.Write(data)
	err = errors.Join(werr, tmp.Chmod(0o600), tmp.Sync(), tmp.Close())
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		_ = os.Remove(tmp.Name())
	}
	return err
}

func build(op, acc, sys nkeys.KeyPair) (*Deployment, error) {
	d := &Deployment{operator: op, account: acc, system: sys}
	opPub, err := op.PublicKey()
	if err != nil {
		return nil, err
	}
	if d.accountPub, err = acc.PublicKey(); err != nil {
		return nil, err
	}
	if d.systemPub, err = sys.PublicKey(); err != nil {
		return nil, err
	}
	oc := jwt.NewOperatorClaims(opPub)
	oc.Name = "oakmeet"
	oc.SystemAccount = d.systemPub
	if d.operatorJWT, err = oc.Encode(op); err != nil {
		return nil, fmt.Errorf("operator jwt: %w", err)
	}
	if d.operatorClaims, err = jwt.DecodeOperatorClaims(d.operatorJWT); err != nil {
		return nil, err
	}
	ac := jwt.NewAccountClaims(d.accountPub)
	ac.Name = "oakmeet"
	// JetStream on, without limits of its own: the server's are enough.
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit,
		Streams: jwt.NoLimit, Consumer: jwt.NoLimit, MaxAckPending: jwt.NoLimit}
	// A user JWT alone is not enough: every connection proves it holds the
	// user's seed.
	ac.Limits.DisallowBearer = true
	if d.accountJWT, err = ac.Encode(op); err != nil {
		return nil, fmt.Errorf("account jwt: %w", err)
	}
	sc := jwt.NewAccountClaims(d.systemPub)
	sc.Name = "SYS"
	if d.systemJWT, err = sc.Encode(op); err != nil {
		return nil, fmt.Errorf("system account jwt: %w", err)
	}
	return d, nil
}

// Operator is the operator's claims, for a server's trusted operators.
func (d *Deployment) Operator() *jwt.OperatorClaims { return d.operatorClaims }

// OperatorJWT is the operator's signed JWT.
func (d *Deployment) OperatorJWT() string { return d.operatorJWT }

// SystemAccount is the system account's public key.
func (d *Deployment) SystemAccount() string { return d.systemPub }

// Account is the oakmeet account's public key.
func (d *Deployment) Account() string { return d.accountPub }

// AccountJWTs are the JWTs a server preloads, by account public key.
func (d *Deployment) AccountJWTs() map[string]string {
	return map[string]string{d.accountPub: d.accountJWT, d.systemPub: d.systemJWT}
}

// ServerConfig is the part of a nats-server configuration file that makes a
// server (or every server of a cluster) trust this deployment.
func (d *Deployment) ServerConfig() string {
	return fmt.Sprintf(`# oakmeet: trust its operator and preload its accounts.
operator: %s
system_account: %s
resolver: MEMORY
resolver_preload: {
  # oakmeet
  %s: %s
  # system account
  %s: %s
}
`, d.operatorJWT, d.systemPub, d.accountPub, d.accountJWT, d.systemPub, d.systemJWT)
}

// ControlCreds is a credentials file for the control plane.
func (d *Deployment) ControlCreds() ([]byte, error) {
	return d.user(controlUser, ControlPermissions(), time.Time{})
}

// controlUser is the control plane's user name; a replica's adds
// "-<name>".
const controlUser = "oakmeet-control"

// ReplicaCreds is a credentials file for one control-plane replica: the
// control plane's permissions under a name of its own, so that the NATS
// server's connection list and its errors say which replica is which.
func (d *Deployment) ReplicaCreds(name string) ([]byte, error) {
	if err := ValidReplicaName(name); err != nil {
		return nil, err
	}
	return d.user(controlUser+"-"+name, ControlPermissions(), time.Time{})
}

// ValidReplicaName checks a replica's name: the same alphabet and length as
// a node id, since it ends up in a NATS user name and in logs.
func ValidReplicaName(name string) error {
	if err := cluster.ValidNodeID(name); err != nil {
		return fmt.Errorf("replica name: %w", err)
	}
	return nil
}

// SystemCreds is a credentials file for a user of the system account, for
// a process's own embedded server to be told what only the system account
// may tell it (its JetStream meta leader's step-down). It is never written
// anywhere nor handed to another process: the system account sees and
// commands every server.
func (d *Deployment) SystemCreds() ([]byte, error) {
	// Only what the step-down needs.
	p := jwt.Permissions{
		Pub: jwt.Permission{Allow: jwt.StringList{"$JS.API.META.LEADER.STEPDOWN"}},
		Sub: jwt.Permission{Allow: jwt.StringList{inboxRoot + ".system.>"}},
	}
	return userOf(d.system, "oakmeet-system", p, time.Time{})
}

// RouteAuth is the user and password with which the servers of one NATS
// cluster admit each other's routes. It is derived from the account key, so
// every server that holds the deployment's keys agrees on it without another
// secret to copy, and no one without the keys can join the cluster (a route
// sees every account's messages).
func (d *Deployment) RouteAuth() (user, password string, err error) {
	seed, err := d.account.Seed()
	if err != nil {
		return "", "", err
	}
	mac := hmac.New(sha256.New, seed)
	mac.Write([]byte("oakmeet nats route v1"))
	return "oakmeet-route", hex.EncodeToString(mac.Sum(nil)), nil
}

// NodeCreds is a credentials file for media node id and nothing else,
// valid until notAfter (zero: no expiry).
func (d *Deployment) NodeCreds(id string, notAfter time.Time) ([]byte, error) {
	p, err := NodePermissions(id)
	if err != nil {
		return nil, err
	}
	return d.user(nodeUserPrefix+id, p, notAfter)
}

// nodeUserPrefix starts a node user's name; the rest is its id.
const nodeUserPrefix = "oakmeet-node-"

func (d *Deployment) user(name string, p jwt.Permissions, notAfter time.Time) ([]byte, error) {
	return userOf(d.account, name, p, notAfter)
}

// userOf is a credentials file of a new user of the account whose key
// signs it.
func userOf(account nkeys.KeyPair, name string, p jwt.Permissions, notAfter time.Time) ([]byte, error) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		return nil, err
	}
	pub, err := kp.PublicKey()
	if err != nil {
		return nil, err
	}
	uc := jwt.NewUserClaims(pub)
	uc.Name = name
	uc.Permissions = p
	if !notAfter.IsZero() {
		uc.Expires = notAfter.Unix()
	}
	token, err := uc.Encode(account)
	if err != nil {
		return nil, fmt.Errorf("user jwt %s: %w", name, err)
	}
	seed, err := kp.Seed()
	if err != nil {
		return nil, err
	}
	return jwt.FormatUserConfig(token, seed)
}

// User is what a credentials file says about its holder.
type User struct {
	Name string
	// InboxPrefix is where this user may receive replies; a connection
	// must use it (nats.CustomInboxPrefix) or no request is answered.
	InboxPrefix string
	JWT         string
	Key         nkeys.KeyPair
}

// ParseCreds reads a credentials file.
func ParseCreds(creds []byte) (User, error) {
	token, err := jwt.ParseDecoratedJWT(creds)
	if err != nil {
		return User{}, fmt.Errorf("nats credentials: %w", err)
	}
	uc, err := jwt.DecodeUserClaims(token)
	if err != nil {
		return User{}, fmt.Errorf("nats credentials: %w", err)
	}
	kp, err := jwt.ParseDecoratedNKey(creds)
	if err != nil {
		return User{}, fmt.Errorf("nats credentials: %w", err)
	}
	pub, err := kp.PublicKey()
	if err != nil || pub != uc.Subject {
		return User{}, errors.New("nats credentials: the seed is not the JWT's user")
	}
	u := User{Name: uc.Name, JWT: token, Key: kp, InboxPrefix: "_INBOX"}
	for _, s := range uc.Sub.Allow {
		if p, ok := strings.CutSuffix(s, ".>"); ok && strings.HasPrefix(p, inboxRoot+".") {
			u.InboxPrefix = p
		}
	}
	return u, nil
}
