package main

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/natsauth"
)

// natsDir is where a deployment's NATS keys and CA live under --data.
func natsDir(dataDir string) string { return filepath.Join(dataDir, "nats") }

// natsLink is how this process's parts reach NATS: the server's URL and
// the CA its TLS certificate is verified with (empty: the system's).
type natsLink struct {
	url string
	ca  []byte
}

func (l natsLink) connect(name string, creds []byte) (*nats.Conn, error) {
	return bus.Connect(l.url, name, bus.Creds(creds), bus.CA(l.ca))
}

// natsTLSSettings are serve's flags for the embedded server's TLS.
type natsTLSSettings struct {
	cert, key, ca string
}

// embeddedTLS is the embedded server's TLS when it listens beyond loopback:
// the certificate given by flag, or one the deployment's own CA (made under
// --data on first use) signs for the listen host. It also returns the CA
// this process's own connections verify with. Nil on loopback.
func embeddedTLS(dataDir, listen string, s natsTLSSettings) (*tls.Config, []byte, error) {
	host, _, err := net.SplitHostPort(listen)
	if listen == "" || err != nil {
		return nil, nil, nil // loopback, or a bad address bus.Embed explains
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		return nil, nil, nil
	}
	if (s.cert == "") != (s.key == "") {
		return nil, nil, fmt.Errorf("--nats-tls-cert and --nats-tls-key go together")
	}
	if s.cert != "" {
		pair, err := tls.LoadX509KeyPair(s.cert, s.key)
		if err != nil {
			return nil, nil, fmt.Errorf("--nats-tls-cert: %w", err)
		}
		var ca []byte
		if s.ca != "" {
			if ca, err = os.ReadFile(s.ca); err != nil {
				return nil, nil, fmt.Errorf("--nats-ca: %w", err)
			}
		}
		return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{pair}}, ca, nil
	}
	ca, err := natsauth.LoadOrCreateCA(natsDir(dataDir))
	if err != nil {
		return nil, nil, err
	}
	// The embedded server's own URL is on loopback, so the certificate
	// names it too.
	cfg, err := ca.ServerTLS(host, "127.0.0.1", "localhost")
	if err != nil {
		return nil, nil, err
	}
	return cfg, ca.PEM(), nil
}
