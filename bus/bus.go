// Package bus gives every oakmeet process its NATS connection: either to an
// existing NATS cluster, or to a NATS server with JetStream embedded in this
// process so that one machine needs nothing else.
package bus

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
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
}

// Embedded is a NATS server with JetStream running inside this process.
type Embedded struct {
	srv *server.Server
}

// Embed starts a NATS server with JetStream and waits until it accepts
// connections.
func Embed(cfg EmbedConfig) (*Embedded, error) {
	if cfg.StoreDir == "" {
		return nil, errors.New("embedded nats: a store directory is required")
	}
	host, port := "127.0.0.1", server.RANDOM_PORT
	if cfg.Listen != "" {
		h, p, err := net.SplitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("embedded nats: listen address %q: %w", cfg.Listen, err)
		}
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("embedded nats: listen address %q: bad port", cfg.Listen)
		}
		if h != "" {
			host = h
		}
		port = n
		if n == 0 {
			port = server.RANDOM_PORT
		}
	}
	opts := &server.Options{
		ServerName: "oakmeet",
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   cfg.StoreDir,
		NoLog:      true,
		NoSigs:     true,
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
	return &Embedded{srv: srv}, nil
}

// URL is the client URL of the embedded server.
func (e *Embedded) URL() string { return e.srv.ClientURL() }

// Connect opens a client connection to the embedded server.
func (e *Embedded) Connect(name string) (*nats.Conn, error) {
	return Connect(e.URL(), name)
}

// Shutdown stops the server and waits for it to finish.
func (e *Embedded) Shutdown() {
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// Connect dials a NATS server. Reconnects are unlimited: a process outlives
// a NATS restart.
func Connect(url, name string) (*nats.Conn, error) {
	nc, err := nats.Connect(url,
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.Timeout(5*time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("connect to nats at %s: %w", url, err)
	}
	return nc, nil
}
