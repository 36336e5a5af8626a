// Package bus gives every oakmeet process its NATS connection: either to an
// existing NATS cluster, or to a NATS server with JetStream embedded in this
// process so that one machine needs nothing else. Either way the server runs
// in operator mode (package natsauth): every connection authenticates with
// its own user credentials, and a server reachable from another machine
// speaks TLS only.
package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/natsauth"
)

// EmbedConfig configures an embedded NATS server.
type EmbedConfig struct {
	// StoreDir is where JetStream keeps its data; required, so that state
	// survives a restart.
	StoreDir string
	// Listen is host:port for other processes to reach the server. Empty
	// means loopback on a random port.
	Listen string
	// ReadyTimeout bounds start-up; zero means 10 s.
	ReadyTimeout time.Duration
	// Auth is the deployment whose identities the server trusts; nil makes
	// a throw-away one (tests), which Auth then returns.
	Auth *natsauth.Deployment
	// TLS is the server's certificate; required when Listen is not a
	// loopback address. TLSCA is what this process's own connections
	// verify it with (PEM).
	TLS   *tls.Config
	TLSCA []byte
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv  *server.Server
	auth *natsauth.Deployment
	ca   []byte
}

// Embed starts a NATS server with JetStream in operator mode and waits
// until it accepts connections.
func Embed(cfg EmbedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: a store directory is required")
	}
	host, port, err := listenAddress(cfg.Listen)
	if err != nil {
		return nil, err
	}
	if !isLoopback(host) && cfg.TLS == nil {
		return nil, fmt.Errorf("embedded nats: listening on %s (reachable from other machines) requires TLS", host)
	}
	if cfg.Auth == nil {
		if cfg.Auth, err = natsauth.New(); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	resolver := &server.MemAccResolver{}
	for pub, token := range cfg.Auth.AccountJWTs() {
		if err := resolver.Store(pub, token); err != nil {
			return nil, fmt.Errorf("embedded nats: %w", err)
		}
	}
	opts := &server.Options{
		ServerName:       "oakmeet",
		Host:             host,
		Port:             port,
		JetStream:        true,
		StoreDir:         cfg.StoreDir,
		NoLog:            true,
		NoSigs:           true,
		TrustedOperators: []*jwt.OperatorClaims{cfg.Auth.Operator()},
		SystemAccount:    cfg.Auth.SystemAccount(),
		AccountResolver:  resolver,
	}
	if cfg.TLS != nil {
		opts.TLSConfig = cfg.TLS
		opts.TLS = true
		opts.TLSTimeout = 5
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go srv.Start()
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("embedded nats: not ready after %s (is %s:%d free?)", timeout, host, port)
	}
	return &Embedded{srv: srv, auth: cfg.Auth, ca: cfg.TLSCA}, nil
}

func listenAddress(listen string) (string, int, error) {
	if listen == "" {
		return "127.0.0.1", server.RANDOM_PORT, nil
	}
	h, p, err := net.SplitHostPort(listen)
	if err != nil {
		return "", 0, fmt.Errorf("embedded nats: listen address %q: %w", listen, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil || n < 0 || n > 65535 {
		return "", 0, fmt.Errorf("embedded nats: listen address %q: bad port", listen)
	}
	if h == "" {
		// Like net.Listen, an empty host is every interface.
		h = "0.0.0.0"
	}
	if n == 0 {
		n = server.RANDOM_PORT
	}
	return h, n, nil
}

// isLoopback reports whether host can be reached from this machine only.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// URL is the client URL of the embedded server, for this machine: a server
// on every interface is reached on loopback.
func (e *Embedded) URL() string {
	u, err := url.Parse(e.srv.ClientURL())
	if err != nil {
		return e.srv.ClientURL()
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", u.Port())
	}
	return u.String()
}

// Auth is the deployment the server trusts.
func (e *Embedded) Auth() *natsauth.Deployment { return e.auth }

// ConnectControl connects to the embedded server as the control plane.
func (e *Embedded) ConnectControl(name string) (*nats.Conn, error) {
	creds, err := e.auth.ControlCreds()
	if err != nil {
		return nil, err
	}
	return Connect(e.URL(), name, Creds(creds), CA(e.ca))
}

// ConnectNode connects to the embedded server as media node id.
func (e *Embedded) ConnectNode(id string) (*nats.Conn, error) {
	creds, err := e.auth.NodeCreds(id, time.Time{})
	if err != nil {
		return nil, err
	}
	return Connect(e.URL(), "oakmeet-node-"+id, Creds(creds), CA(e.ca))
}

// Shutdown stops the server and waits for it to finish.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// ConnectOption adds to how Connect connects.
type ConnectOption func(*connectConfig) error

type connectConfig struct {
	creds   []byte
	ca      []byte
	natsOpt []nats.Option
}

// Creds is the connection's identity: a NATS credentials file's contents.
func Creds(creds []byte) ConnectOption {
	return func(c *connectConfig) error { c.creds = creds; return nil }
}

// CredsFile reads the connection's identity from a credentials file.
func CredsFile(path string) ConnectOption {
	return func(c *connectConfig) error {
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("nats credentials: %w", err)
		}
		c.creds = data
		return nil
	}
}

// CA is the PEM certificate authority a TLS server must chain to, instead
// of the system's; empty keeps the system's.
func CA(pem []byte) ConnectOption {
	return func(c *connectConfig) error { c.ca = pem; return nil }
}

// NATSOptions passes options to nats.Connect as they are (an error
// handler, say).
func NATSOptions(opts ...nats.Option) ConnectOption {
	return func(c *connectConfig) error { c.natsOpt = append(c.natsOpt, opts...); return nil }
}

// Connect dials a NATS server with the identity given by Creds or
// CredsFile; there is no anonymous connection. Reconnects are unlimited: a
// process outlives a NATS restart. A server not on loopback must speak TLS
// (a tls:// URL, or nats:// to a server that requires it).
func Connect(rawURL, name string, opts ...ConnectOption) (*nats.Conn, error) {
	var cfg connectConfig
	for _, o := range opts {
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if len(cfg.creds) == 0 {
		return nil, fmt.Errorf("connect to nats at %s: no credentials", rawURL)
	}
	user, err := natsauth.ParseCreds(cfg.creds)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("nats url %q: %w", rawURL, err)
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(cfg.ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(cfg.ca) {
			return nil, errors.New("nats CA: no certificate in the PEM")
		}
		tlsCfg.RootCAs = pool
	}
	nopts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
		nats.UserJWT(func() (string, error) { return user.JWT, nil }, user.Key.Sign),
		nats.CustomInboxPrefix(user.InboxPrefix),
		// Used whenever the server asks for TLS; required below when the
		// server is not on this machine.
		func(o *nats.Options) error { o.TLSConfig = tlsCfg; return nil },
	}
	if u.Scheme == "tls" || !isLoopback(u.Hostname()) {
		nopts = append(nopts, nats.Secure(tlsCfg))
	}
	nc, err := nats.Connect(rawURL, append(nopts, cfg.natsOpt...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", rawURL, err)
	}
	return nc, nil
}
