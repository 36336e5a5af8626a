package node

import (
	"context"
	"crypto/ecdh"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"time"

	"github.com/pion/turn/v4"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/turncred"
)

// turnRealm names this deployment in TURN's long-term credential scheme.
const turnRealm = "oakmeet"

// turnServer is the node's own TURN server, so that a participant who
// needs a relay is relayed in the node's country, never elsewhere, and only
// to this node (docs/RELAYS.md, "TURN").
type turnServer struct {
	srv    *turn.Server
	info   cluster.TURNService
	grants *grants
}

// turnConfig is what the node's TURN server needs of the node.
type turnConfig struct {
	host    string
	port    int // -1: any free port
	relayIP net.IP
	// peers are the only addresses a relay may reach: the node's own
	// media addresses. TURN permissions are per IP (RFC 8656 §9), so any
	// UDP port on them is reachable.
	peers    []net.IP
	nodeID   string
	identity ed25519.PrivateKey
	// open checks a username's signature against the pinned token key and
	// returns its claims and password (turncred.Open).
	open func(key *ecdh.PrivateKey, username string) (turncred.Claims, string, error)
	now  func() time.Time
	log  *slog.Logger
}

// errWrongTURNNode: a credential issued for another node.
var errWrongTURNNode = errors.New("credential is for another node")

func startTURN(cfg turnConfig) (*turnServer, error) {
	key, err := turncred.NodeKey(cfg.identity)
	if err != nil {
		return nil, fmt.Errorf("turn: %w", err)
	}
	port := max(cfg.port, 0)
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(cfg.host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("turn: listen on udp %d: %w", port, err)
	}
	g := newGrants()
	auth := func(username, realm string, src net.Addr) ([]byte, bool) {
		c, pass, err := cfg.open(key, username)
		if err == nil && c.Node != cfg.nodeID {
			err = fmt.Errorf("%w %q", errWrongTURNNode, c.Node)
		}
		if err == nil {
			err = g.admit(c, src.String(), username, cfg.now())
		}
		if err != nil {
			cfg.log.Info("turn credential refused", "meeting", c.Meeting, "participant", c.Participant, "from", src, "err", err)
			return nil, false
		}
		return turn.GenerateAuthKey(username, realm, pass), true
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm:       turnRealm,
		AuthHandler: auth,
		// Runs after the credential was authenticated.
		QuotaHandler: func(username, _ string, _ net.Addr) bool { return g.underQuota(username) },
		EventHandler: turn.EventHandler{
			OnAllocationCreated: func(src, _ net.Addr, _, username, _ string, _ net.Addr, _ int) {
				g.allocated(src.String(), username)
			},
			OnAllocationDeleted: func(src, _ net.Addr, _, username, _ string) {
				g.deallocated(src.String(), username)
			},
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: cfg.relayIP,
				Address:      cfg.host,
			},
			PermissionHandler: func(client net.Addr, peer net.IP) bool {
				ok := slices.ContainsFunc(cfg.peers, peer.Equal)
				if !ok {
					cfg.log.Info("turn permission refused", "from", client, "peer", peer)
				}
				return ok
			},
		}},
	})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("turn: %w", err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	url := fmt.Sprintf("turn:%s?transport=udp", net.JoinHostPort(cfg.relayIP.String(), strconv.Itoa(addr.Port)))
	pub := key.PublicKey()
	return &turnServer{srv: srv, grants: g, info: cluster.TURNService{
		URLs: []string{url}, Key: pub.Bytes(), KeySig: turncred.SignNodeKey(cfg.identity, pub),
	}}, nil
}

func (t *turnServer) close() error { return t.srv.Close() }

// turnVerifyTimeout bounds the store reads a TURN request may wait for
// (pinning the token key on first use, or looking for a rotation).
const turnVerifyTimeout = 2 * time.Second

// startTURN starts the node's TURN server, relaying from the node's
// address to its media addresses only, with credentials signed by the
// pinned token key.
func (n *Node) startTURN() (*turnServer, error) {
	host := "0.0.0.0"
	if n.cfg.LoopbackOnly {
		host = "127.0.0.1"
	}
	ip, err := relayAddress(n.cfg.PublicIP, n.cfg.LoopbackOnly)
	if err != nil {
		return nil, err
	}
	peers, err := mediaAddresses(n.cfg.PublicIP, n.cfg.LoopbackOnly)
	if err != nil {
		return nil, err
	}
	return startTURN(turnConfig{
		host: host, port: n.cfg.TURNPort, relayIP: ip, peers: peers,
		nodeID: n.cfg.ID, identity: n.identity, now: n.now, log: n.log,
		open: func(key *ecdh.PrivateKey, username string) (c turncred.Claims, pass string, err error) {
			ctx, cancel := context.WithTimeout(context.Background(), turnVerifyTimeout)
			defer cancel()
			err = n.verifyToken(ctx, func(pub ed25519.PublicKey) (err error) {
				c, pass, err = turncred.Open(pub, key, username)
				return err
			})
			return c, pass, err
		},
	})
}

// relayAddress is the address a TURN relay hands out: the configured public
// address, loopback for local clusters, or else this host's first
// non-loopback IPv4 address.
func relayAddress(publicIP string, loopback bool) (net.IP, error) {
	if publicIP != "" {
		ip := net.ParseIP(publicIP)
		if ip == nil || ip.To4() == nil {
			return nil, fmt.Errorf("public ip %q is not an IPv4 address", publicIP)
		}
		return ip.To4(), nil
	}
	if loopback {
		return net.IPv4(127, 0, 0, 1).To4(), nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			return n.IP.To4(), nil
		}
	}
	return nil, fmt.Errorf("no IPv4 address to relay from; set a public IP")
}

// mediaAddresses are the IPs the node's media engine is reached at, the
// only peers its TURN server relays to: loopback for local clusters, else
// the host's IPv4 addresses (the media engine listens on each) and the
// public address it advertises.
func mediaAddresses(publicIP string, loopback bool) ([]net.IP, error) {
	if loopback {
		return []net.IP{net.IPv4(127, 0, 0, 1).To4()}, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil, err
	}
	var ips []net.IP
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			ips = append(ips, n.IP.To4())
		}
	}
	if ip := net.ParseIP(publicIP); ip != nil && ip.To4() != nil {
		ips = append(ips, ip.To4())
	}
	return ips, nil
}
