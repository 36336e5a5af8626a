// Package bus gives every oakmeet process its NATS connection: either to an
// existing NATS cluster, or to a NATS server with JetStream embedded in this
// process so that one machine needs nothing else. Either way the server runs
// in operator mode (package natsauth): every connection authenticates with
// its own user credentials, and a server reachable from another machine
// speaks TLS only. Embedded servers of several processes can form one NATS
// cluster (EmbedConfig.Cluster) with JetStream replicated across them.
package bus

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
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
	// Cluster, when set, makes the server a member of a NATS cluster with
	// JetStream clustered across its members.
	Cluster *ClusterConfig
	// Logger receives the server's warnings and errors (its notices at
	// debug level); nil keeps it silent.
	Logger *slog.Logger
}

// ClusterConfig makes an embedded server one member of a NATS cluster.
// Every member must trust the same natsauth deployment: its routes are
// admitted with a password derived from the deployment's account key.
type ClusterConfig struct {
	// Name is the cluster's, the same on every member.
	Name string
	// ServerName is this member's, unique in the cluster; JetStream's
	// replicas are placed by it, so it must survive a restart.
	ServerName string
	// Listen is host:port of the route listener other members dial.
	Listen string
	// Routes are every member's route URL (nats-route://host:port); this
	// member's own may be among them. JetStream needs at least one.
	Routes []string
	// TLS secures routes (natsauth.CA.RouteTLS: both ends verified by the
	// deployment's CA); required when Listen or a route is not on
	// loopback.
	TLS *tls.Config
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
	if cfg.Cluster != nil {
		if err := clusterOptions(opts, cfg.Cluster, cfg.Auth); err != nil {
			return nil, err
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(natsLogger{cfg.Logger.With("nats", opts.ServerName)}, false, false, false)
	}
	go srv.Start()
	timeout := cfg.ReadyTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		what := net.JoinHostPort(host, strconv.Itoa(port))
		if port == server.RANDOM_PORT {
			what = host + ", a random port"
		}
		if cfg.Cluster != nil {
			what += ", and " + cfg.Cluster.Listen + " for routes"
		}
		return nil, fmt.Errorf("embedded nats: not ready after %s (is %s free?)", timeout, what)
	}
	return &Embedded{srv: srv, auth: cfg.Auth, ca: cfg.TLSCA}, nil
}

// clusterOptions adds cc's cluster membership to opts, refusing what would
// let a stranger join: routes beyond loopback without TLS.
func clusterOptions(opts *server.Options, cc *ClusterConfig, auth *natsauth.Deployment) error {
	if cc.Name == "" || cc.ServerName == "" {
		return errors.New("embedded nats cluster: a cluster name and a server name are required")
	}
	for _, n := range []string{cc.Name, cc.ServerName} {
		if strings.ContainsAny(n, " \t\n.*>") {
			return fmt.Errorf("embedded nats cluster: name %q may not contain spaces, '.', '*' or '>'", n)
		}
	}
	if len(cc.Routes) == 0 {
		return errors.New("embedded nats cluster: JetStream needs the routes of the cluster's members (--nats-routes)")
	}
	if cc.Listen == "" {
		return errors.New("embedded nats cluster: a route listen address is required")
	}
	host, port, err := listenAddress(cc.Listen)
	if err != nil {
		return fmt.Errorf("embedded nats cluster: route %w", err)
	}
	beyondLoopback := !isLoopback(host)
	user, pass, err := auth.RouteAuth()
	if err != nil {
		return fmt.Errorf("embedded nats cluster: %w", err)
	}
	for _, r := range cc.Routes {
		u, err := url.Parse(r)
		if err != nil || u.Scheme != "nats-route" || u.Hostname() == "" || u.Port() == "" {
			return fmt.Errorf("embedded nats cluster: route %q: want nats-route://host:port", r)
		}
		if u.User != nil {
			return fmt.Errorf("embedded nats cluster: route %q: no credentials in a route (they come from the deployment's keys)", r)
		}
		beyondLoopback = beyondLoopback || !isLoopback(u.Hostname())
		u.User = url.UserPassword(user, pass)
		opts.Routes = append(opts.Routes, u)
	}
	if beyondLoopback && cc.TLS == nil {
		return fmt.Errorf("embedded nats cluster: routes beyond loopback (%s, %s) require TLS", cc.Listen, strings.Join(cc.Routes, ", "))
	}
	opts.ServerName = cc.ServerName
	// A member that is down is dialled every second; its absence is said
	// once a minute, not every time.
	opts.ReconnectErrorReports = 60
	// A member that stops cleanly (Stop) hands its JetStream leaderships
	// over first and then closes its clients within this.
	opts.LameDuckDuration = 2 * time.Second
	opts.LameDuckGracePeriod = time.Millisecond
	opts.Cluster = server.ClusterOpts{
		Name:        cc.Name,
		Host:        host,
		Port:        port,
		Username:    user,
		Password:    pass,
		AuthTimeout: 5,
	}
	if cc.TLS != nil {
		opts.Cluster.TLSConfig = cc.TLS
		opts.Cluster.TLSTimeout = 5
	}
	return nil
}

// natsLogger passes the server's log to slog.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Warnf(format string, v ...any)   { n.l.Warn(fmt.Sprintf(format, v...)) }
func (n natsLogger) Fatalf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Errorf(format string, v ...any)  { n.l.Error(fmt.Sprintf(format, v...)) }
func (n natsLogger) Debugf(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }
func (n natsLogger) Tracef(format string, v ...any)  { n.l.Debug(fmt.Sprintf(format, v...)) }

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

// RouteURL is where other members of the server's cluster reach it
// (nats-route://host:port), "" when it is not in a cluster. A route
// listener on every interface is named by its loopback address.
func (e *Embedded) RouteURL() string {
	addr := e.srv.ClusterAddr()
	if addr == nil {
		return ""
	}
	ip := addr.IP
	if ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return "nats-route://" + net.JoinHostPort(ip.String(), strconv.Itoa(addr.Port))
}

// JetStreamReady reports whether the server's JetStream can take requests:
// a cluster member once the cluster has elected its meta leader and this
// member has caught up with it.
func (e *Embedded) JetStreamReady() bool {
	if !e.srv.JetStreamEnabled() {
		return false
	}
	return !e.srv.JetStreamIsClustered() || e.srv.JetStreamIsCurrent()
}

// ServerName is the server's name in its cluster (what JetStream names
// stream leaders by; store.StepDownLeaders takes it).
func (e *Embedded) ServerName() string { return e.srv.Name() }

// StepDownMeta hands the leadership of the cluster's JetStream meta group
// to another member if this server holds it, so that this process's
// abrupt death costs no meta election (seconds, during which no consumer,
// watch or key listing can be made). A process that does the deployment's
// work calls it on taking that work up, beside store.StepDownLeaders.
func (e *Embedded) StepDownMeta(ctx context.Context) error {
	if !e.srv.JetStreamIsClustered() || !e.srv.JetStreamIsLeader() {
		return nil
	}
	creds, err := e.auth.SystemCreds()
	if err != nil {
		return err
	}
	nc, err := Connect(e.URL(), "oakmeet-system", Creds(creds), CA(e.ca))
	if err != nil {
		return err
	}
	defer nc.Close()
	msg, err := nc.RequestWithContext(ctx, "$JS.API.META.LEADER.STEPDOWN", nil)
	if err != nil {
		return fmt.Errorf("meta leader step-down: %w", err)
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return fmt.Errorf("meta leader step-down: %w", err)
	}
	if !resp.Success {
		why := "refused"
		if resp.Error != nil {
			why = resp.Error.Description
		}
		return fmt.Errorf("meta leader step-down: %s", why)
	}
	return nil
}

// JetStreamLeader reports whether this server leads its cluster's
// JetStream meta group (which places streams and answers their creation).
func (e *Embedded) JetStreamLeader() bool { return e.srv.JetStreamIsLeader() }

// LeadsStream reports whether this server leads the replicas of the
// oakmeet account's stream name (a KV bucket's is "KV_<bucket>").
func (e *Embedded) LeadsStream(name string) bool {
	return e.srv.JetStreamIsStreamLeader(e.auth.Account(), name)
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

// Stop stops the server cleanly: a cluster member first hands the
// leadership of every JetStream replica it leads to another member, so
// writes go on without waiting for an election (JetStream's takes seconds);
// a lone server just shuts down.
func (e *Embedded) Stop() {
	if e.srv.JetStreamIsClustered() {
		e.srv.LameDuckShutdown()
	}
	e.Shutdown()
}

// Shutdown stops the server at once and waits for it to finish.
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
// (a tls:// URL, or nats:// to a server that requires it). rawURL may list
// several servers of one cluster, comma-separated: the connection tries
// them in turn and moves to another when its server goes away.
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
	urls, err := splitURLs(rawURL)
	if err != nil {
		return nil, err
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
	for _, u := range urls {
		if u.Scheme == "tls" || !isLoopback(u.Hostname()) {
			nopts = append(nopts, nats.Secure(tlsCfg))
			break
		}
	}
	nc, err := nats.Connect(rawURL, append(nopts, cfg.natsOpt...)...)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", rawURL, err)
	}
	return nc, nil
}

// splitURLs parses a comma-separated list of NATS server URLs.
func splitURLs(raw string) ([]*url.URL, error) {
	var out []*url.URL
	for _, f := range strings.Split(raw, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		u, err := url.Parse(f)
		if err != nil {
			return nil, fmt.Errorf("nats url %q: %w", f, err)
		}
		if u.Hostname() == "" {
			return nil, fmt.Errorf("nats url %q: no host", f)
		}
		out = append(out, u)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("nats url %q: no server", raw)
	}
	return out, nil
}
