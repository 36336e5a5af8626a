package node

import (
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/pion/turn/v4"

	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/turncred"
)

// turnRealm names this deployment in TURN's long-term credential scheme.
const turnRealm = "oakmeet"

// turnServer is the node's own TURN server, so that a participant who
// needs a relay is relayed in the node's country, never elsewhere.
type turnServer struct {
	srv  *turn.Server
	info cluster.TURNService
}

// startTURN listens on port (-1: any free port) and relays from relayIP;
// now is the clock credentials expire by.
func startTURN(host string, port int, relayIP net.IP, now func() time.Time, log *slog.Logger) (*turnServer, error) {
	secret := make([]byte, 32)
	_, _ = rand.Read(secret)
	if port < 0 {
		port = 0
	}
	pc, err := net.ListenPacket("udp4", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, fmt.Errorf("turn: listen on udp %d: %w", port, err)
	}
	srv, err := turn.NewServer(turn.ServerConfig{
		Realm: turnRealm,
		AuthHandler: func(username, realm string, src net.Addr) ([]byte, bool) {
			if _, err := turncred.Check(username, now()); err != nil {
				log.Info("turn credential refused", "username", username, "from", src, "err", err)
				return nil, false
			}
			return turn.GenerateAuthKey(username, realm, turncred.Password(secret, username)), true
		},
		PacketConnConfigs: []turn.PacketConnConfig{{
			PacketConn: pc,
			RelayAddressGenerator: &turn.RelayAddressGeneratorStatic{
				RelayAddress: relayIP,
				Address:      host,
			},
		}},
	})
	if err != nil {
		_ = pc.Close()
		return nil, fmt.Errorf("turn: %w", err)
	}
	addr := pc.LocalAddr().(*net.UDPAddr)
	url := fmt.Sprintf("turn:%s?transport=udp", net.JoinHostPort(relayIP.String(), strconv.Itoa(addr.Port)))
	return &turnServer{srv: srv, info: cluster.TURNService{URLs: []string{url}, Secret: secret}}, nil
}

func (t *turnServer) close() error { return t.srv.Close() }

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
