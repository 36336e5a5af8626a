// Package node is a media node's process: it registers with the cluster,
// reports its health and load every heartbeat interval, takes commands from the control
// plane, and serves participants' signaling connections, verifying each join
// token before handing the connection to the media engine. On the control
// plane's command it opens relay links to the meeting's other nodes, and it
// accepts theirs, each authenticated by a relay token and the two nodes'
// identity keys and checked against the meeting's policy by the node itself
// (docs/RELAYS.md). It never holds a media key.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go"
	"github.com/pion/interceptor"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/signal"
)

// Config describes one node.
type Config struct {
	ID      string
	Country string
	// Region is optional; without it the node stands at its country's
	// representative point.
	Region string
	// Listen is the HTTP address for signaling (host:port; port 0 = any).
	Listen string
	// PublicURL is the signaling URL clients are given; default
	// ws://<listen address>/ws, or wss:// with TLS.
	PublicURL string
	// TLS, when set, makes signaling wss:// only (httpserve.CertFiles
	// makes one from PEM files).
	TLS *tls.Config
	// PeerTLS is the TLS client configuration relay links to other
	// nodes' wss:// URLs are dialled with; nil uses the system's roots.
	PeerTLS *tls.Config
	// HTTP bounds the signaling server's connections until they become
	// WebSockets; zero fields take httpserve.DefaultTimeouts.
	HTTP            httpserve.Timeouts
	MaxParticipants int
	MaxBitrateBps   int64
	// Media networking: one UDP port for all ICE traffic (0 = any free
	// port), optional ICE-TCP (0 = off, -1 = any free port), the address
	// to advertise behind 1:1 NAT, and loopback-only ICE for local demos.
	UDPPort      int
	TCPPort      int
	PublicIP     string
	LoopbackOnly bool
	// SendBatchDelay is sfu.Config.SendBatchDelay: how long a forwarded
	// packet may wait to leave with the rest of its frame (0 = 1 ms,
	// negative = every packet alone).
	SendBatchDelay time.Duration
	// WrapUDP wraps the ICE UDP socket in loopback mode (sfu.Config.WrapUDP):
	// for tests and network shaping.
	WrapUDP func(net.PacketConn) net.PacketConn
	// TURNPort is the built-in TURN server's UDP port: 0 = no TURN
	// server, -1 = any free port.
	TURNPort int
	// Interceptors see every packet the node's media engine sends and
	// receives, closest to the network (instrumentation and tests).
	Interceptors []interceptor.Factory
	NATS         *nats.Conn
	Logger       *slog.Logger
	// IdentityKey authenticates the node's relay links to other nodes;
	// nil generates one at start. Its public half is in the node's
	// registration (cluster.NodeInfo.IdentityKey). The TURN server's key
	// is derived from it (turncred.NodeKey).
	IdentityKey ed25519.PrivateKey
	// Cert is the node's certificate from its enrollment (nodecert), sent
	// in every heartbeat: the control plane gives a node participants and
	// relay links only if it vouches for the node's id, country, region
	// and IdentityKey.
	Cert string
	// TokenKey is the control plane's token key, pinned: the only key
	// join tokens, relay tokens and TURN credentials are accepted from,
	// unless a rotation statement signed by it hands over to another
	// (token.FollowRotations). Nil trusts the key the control plane
	// first answers with (cluster.SubjectTokenKey) and pins that.
	TokenKey ed25519.PublicKey
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Timing is the cluster's clock settings, the same as the control
	// plane's; zero fields take cluster.DefaultTiming.
	Timing cluster.Timing
	// WebSocket bounds each signaling connection; zero fields take
	// DefaultWebSocketLimits.
	WebSocket WebSocketLimits
}

// Node is a running media node.
type Node struct {
	cfg  Config
	info cluster.NodeInfo
	log  *slog.Logger
	now  func() time.Time
	sfu  *sfu.SFU
	turn *turnServer // nil without a TURN server
	srv  *httpserve.Server
	// peerDial is how relay links to other nodes are dialled.
	peerDial *websocket.DialOptions

	draining atomic.Bool
	leaving  atomic.Bool
	// pub is the pinned token key (tokenkey.go); rotationRead is when
	// rotation statements were last read, in Unix nanoseconds.
	pub          atomic.Pointer[ed25519.PublicKey]
	rotationRead atomic.Int64
	identity     ed25519.PrivateKey

	// Relay links being dialled or served by this node as the dialler;
	// linkCtx is set by Run and ends with it.
	linkMu  sync.Mutex
	linkCtx context.Context
	dialing map[linkKey]context.CancelFunc
	linkWG  sync.WaitGroup

	// hosts is each meeting's host key and policy as its participants
	// named them (hostpolicy.go).
	hostMu sync.Mutex
	hosts  map[string]*meetingHost

	// pending counts the signaling connections that have not yet sent
	// their first message (pending.go).
	pending pendingConns

	cpuMu   sync.Mutex
	lastCPU time.Duration
	lastAt  time.Time
}

// New validates the configuration and binds the listener, so the node's URL
// is known before it starts.
func New(ctx context.Context, cfg Config) (*Node, error) {
	if err := cluster.ValidNodeID(cfg.ID); err != nil {
		return nil, err
	}
	if cfg.NATS == nil {
		return nil, errors.New("node: a NATS connection is required")
	}
	if cfg.MaxParticipants < 0 || cfg.MaxBitrateBps < 0 {
		return nil, errors.New("node: capacity limits cannot be negative")
	}
	c, err := geo.ParseCountry(cfg.Country)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w", cfg.ID, err)
	}
	loc, _ := geo.CountryLocation(c.Code)
	if cfg.Region != "" {
		r, err := geo.ParseRegion(cfg.Region)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", cfg.ID, err)
		}
		if r.Country != c.Code {
			return nil, fmt.Errorf("node %s: region %s is in %s, not %s", cfg.ID, r.ID, r.Country, c.Code)
		}
		loc, _ = geo.RegionLocation(r.ID)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Timing = cfg.Timing.WithDefaults()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.IdentityKey == nil {
		_, key, err := ed25519.GenerateKey(nil)
		if err != nil {
			return nil, fmt.Errorf("node %s: identity key: %w", cfg.ID, err)
		}
		cfg.IdentityKey = key
	}
	if len(cfg.IdentityKey) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("node %s: identity key has %d bytes, want %d", cfg.ID, len(cfg.IdentityKey), ed25519.PrivateKeySize)
	}
	if cfg.TokenKey != nil && len(cfg.TokenKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("node %s: token key has %d bytes, want %d", cfg.ID, len(cfg.TokenKey), ed25519.PublicKeySize)
	}
	// The TURN server starts after the SFU; its URLs are set before the
	// node serves any participant (New returns only then).
	var turnURLs []string
	media, err := sfu.New(sfu.Config{
		Logger: cfg.Logger.With("node", cfg.ID), UDPPort: cfg.UDPPort, TCPPort: cfg.TCPPort,
		PublicIP: cfg.PublicIP, LoopbackOnly: cfg.LoopbackOnly, Interceptors: cfg.Interceptors, WrapUDP: cfg.WrapUDP,
		EndedMeetingReports: endedMeetingReports(cfg.Timing), Key: cfg.IdentityKey, SendBatchDelay: cfg.SendBatchDelay,
		TURNURLs: func() []string { return turnURLs }, NegotiationTimeout: cfg.WebSocket.withDefaults().NegotiationTimeout,
	})
	if err != nil {
		return nil, fmt.Errorf("node %s: media: %w", cfg.ID, err)
	}
	n := &Node{
		cfg:      cfg,
		log:      cfg.Logger.With("node", cfg.ID),
		now:      cfg.Now,
		sfu:      media,
		identity: cfg.IdentityKey,
		dialing:  map[linkKey]context.CancelFunc{},
		hosts:    map[string]*meetingHost{},
		peerDial: peerDialOptions(cfg.PeerTLS),
	}
	if cfg.TokenKey != nil {
		key := slices.Clone(cfg.TokenKey)
		n.pub.Store(&key)
	}
	if cfg.TURNPort != 0 {
		if n.turn, err = n.startTURN(); err != nil {
			_ = media.Close()
			return nil, fmt.Errorf("node %s: %w", cfg.ID, err)
		}
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		_ = media.Close()
		if n.turn != nil {
			_ = n.turn.close()
		}
		return nil, fmt.Errorf("node %s: listen: %w", cfg.ID, err)
	}
	url := cfg.PublicURL
	if url == "" {
		scheme := "ws://"
		if cfg.TLS != nil {
			scheme = "wss://"
		}
		url = scheme + ln.Addr().String() + "/ws"
	}
	n.info = cluster.NodeInfo{
		ID: cfg.ID, Country: c.Code, Region: loc.Region, Lat: loc.Lat, Lon: loc.Lon,
		URL: url, MaxParticipants: cfg.MaxParticipants, MaxBitrateBps: cfg.MaxBitrateBps,
		Started:     cfg.Now().UTC(),
		IdentityKey: cfg.IdentityKey.Public().(ed25519.PublicKey),
		Cert:        cfg.Cert,
	}
	if n.turn != nil {
		info := n.turn.info
		n.info.TURN = &info
		turnURLs = slices.Clone(info.URLs)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", n.handleHealth)
	mux.HandleFunc("GET /ws", n.handleSignaling)
	// Signaling is WebSocket, which needs HTTP/1.1: no HTTP/2 here.
	n.srv = httpserve.New(ln, httpserve.Config{Handler: mux, Timeouts: cfg.HTTP, TLS: cfg.TLS, HTTP1Only: true, Logger: n.log})
	return n, nil
}

// Info is the node's registration.
func (n *Node) Info() cluster.NodeInfo { return n.info }

// Drain makes the node refuse new participants; the control plane moves the
// ones it has.
func (n *Node) Drain() { n.draining.Store(true) }

// Run serves until ctx ends, then shuts down, its last heartbeat saying
// it is leaving.
func (n *Node) Run(ctx context.Context) error {
	// Pin the token key now if the control plane has stored it; if not,
	// the first token checked pins it.
	if _, err := n.tokenKey(ctx); err != nil {
		n.log.Info("token key not pinned yet", "err", err)
	}
	linkCtx, stopLinks := context.WithCancel(context.Background())
	defer stopLinks()
	n.linkMu.Lock()
	n.linkCtx = linkCtx
	n.linkMu.Unlock()
	cmdSub, err := n.cfg.NATS.Subscribe(cluster.SubjectCommand(n.info.ID), n.handleCommand)
	if err != nil {
		return fmt.Errorf("node %s: subscribe to commands: %w", n.info.ID, err)
	}
	defer cmdSub.Unsubscribe()

	var wg sync.WaitGroup
	serveErr := make(chan error, 1)
	wg.Go(func() {
		if err := n.srv.Serve(); err != nil {
			serveErr <- err
		}
	})
	n.log.Info("node up", "country", n.info.Country, "region", n.info.Region, "url", n.info.URL)

	tick := time.NewTicker(n.cfg.Timing.HeartbeatInterval)
	defer tick.Stop()
	n.heartbeat()
	var runErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case err := <-serveErr:
			runErr = fmt.Errorf("node %s: serve: %w", n.info.ID, err)
			break loop
		case <-tick.C:
			n.heartbeat()
			// Certificates expire between host statements too.
			n.recheckLinks("")
			n.forgetHosts()
		}
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Closing the SFU first ends every participant's Serve, which lets the
	// HTTP server's hijacked WebSocket handlers return, and every relay
	// link; the dialling goroutines are waited for after it.
	n.linkMu.Lock()
	stopLinks()
	n.linkMu.Unlock()
	_ = n.sfu.Close()
	if n.turn != nil {
		_ = n.turn.close()
	}
	// A last report, so the control plane sees the links and participants
	// gone now rather than when the heartbeats stop being missed.
	n.Drain()
	n.leaving.Store(true)
	n.heartbeat()
	_ = n.srv.Shutdown(shutCtx)
	wg.Wait()
	n.linkWG.Wait()
	n.log.Info("node down")
	return runErr
}

// endedMeetingReports is in how many heartbeats a meeting that has left the
// node is still listed with its final byte count. The control plane stores
// a meeting's bytes at its first look after TrafficEvery has passed since
// the last time, so the count has to stay that long, one heartbeat more for
// the gap until that look and one more in case a heartbeat is lost.
func endedMeetingReports(t cluster.Timing) int {
	n := int((t.TrafficEvery + t.HeartbeatInterval - 1) / t.HeartbeatInterval)
	return max(n+2, sfu.DefaultEndedMeetingReports)
}

func (n *Node) heartbeat() {
	l := n.sfu.Load()
	hb := cluster.Heartbeat{
		Node: n.info,
		Load: cluster.Load{
			Participants: l.Participants, Meetings: l.Meetings, TracksIn: l.TracksIn, TracksOut: l.TracksOut,
			BitrateInBps: int64(l.BitrateInBps), BitrateOutBps: int64(l.BitrateOutBps), CPU: n.cpuShare(),
		},
		Draining:     n.draining.Load(),
		Leaving:      n.leaving.Load(),
		MeetingBytes: n.sfu.MeetingBytes(),
		Relays:       n.relays(),
		Sent:         n.now().UTC(),
	}
	data, err := json.Marshal(hb)
	if err != nil {
		n.log.Error("encode heartbeat", "err", err)
		return
	}
	if err := n.cfg.NATS.Publish(cluster.SubjectHeartbeat(n.info.ID), data); err != nil {
		n.log.Warn("publish heartbeat", "err", err)
	}
}

func (n *Node) handleCommand(m *nats.Msg) {
	cmd, err := cluster.Decode[cluster.Command]("command", m.Data)
	if err != nil {
		n.log.Warn("bad command", "err", err)
		return
	}
	switch cmd.Kind {
	case cluster.CommandKick:
		n.sfu.Kick(cmd.Meeting, cmd.Participant, cmd.Reason)
	case cluster.CommandMove:
		n.sfu.Move(cmd.Meeting, cmd.Participant, cmd.Reason)
	case cluster.CommandHost:
		n.host(cmd)
	case cluster.CommandDrain:
		n.Drain()
		n.heartbeat()
	case cluster.CommandRelay:
		n.relay(cmd)
	case cluster.CommandUnrelay:
		n.unrelay(cmd)
	default:
		n.log.Warn("unknown command", "kind", cmd.Kind)
	}
}

// host passes a host statement to the meeting's participants here and then
// disconnects the one it removes. The control plane sends the command to
// every node of the meeting, so nothing goes over relay links. The removal
// stands even if the statement cannot be sent: it is the control plane's
// decision, the statement only lets clients check it.
func (n *Node) host(cmd cluster.Command) {
	n.hostStatement(cmd.Meeting, cmd.Statement)
	if err := n.sfu.Host(cmd.Meeting, cmd.Statement); err != nil {
		n.log.Warn("host statement not sent", "meeting", cmd.Meeting, "err", err)
	}
	if cmd.Participant != "" {
		n.sfu.Kick(cmd.Meeting, cmd.Participant, signal.ReasonRemoved)
	}
}

// relays lists the node's relay links for the heartbeat.
func (n *Node) relays() []cluster.RelayLink {
	rs := n.sfu.Relays()
	if len(rs) == 0 {
		return nil
	}
	out := make([]cluster.RelayLink, len(rs))
	for i, r := range rs {
		out[i] = cluster.RelayLink{Meeting: r.Meeting, Peer: r.Peer, Dialer: r.Dialer, Connected: r.Connected, Since: r.Since.UTC()}
	}
	return out
}

// Relays reports the node's relay links.
func (n *Node) Relays() []sfu.RelayInfo { return n.sfu.Relays() }

func (n *Node) handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"id": n.info.ID, "draining": n.draining.Load()})
}

// cpuShare is the process's CPU time since the last call as a share of one
// core. In-process demo nodes share one process, so each reports the whole.
func (n *Node) cpuShare() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := n.now()
	n.cpuMu.Lock()
	defer n.cpuMu.Unlock()
	var share float64
	if !n.lastAt.IsZero() {
		if wall := now.Sub(n.lastAt); wall > 0 {
			share = float64(used-n.lastCPU) / float64(wall)
		}
	}
	n.lastCPU, n.lastAt = used, now
	return share
}

// peerDialOptions are the WebSocket options relay links are dialled with:
// Config.PeerTLS for wss:// peers.
func peerDialOptions(peerTLS *tls.Config) *websocket.DialOptions {
	if peerTLS == nil {
		return nil
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = peerTLS.Clone()
	return &websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}}
}
