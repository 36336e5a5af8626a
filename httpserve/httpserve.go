// Package httpserve builds and runs oakmeet's HTTP servers: the control
// plane's API and web app, the media nodes' signaling, and the test fakes.
// Every server gets the same bounds (header, read, write and idle
// timeouts, a header size limit), optionally TLS with HTTP/2, and a
// graceful shutdown. WebSocket connections outlive the request timeouts:
// net/http clears a connection's deadlines when a handler hijacks it
// (TestWebSocketOutlivesRequestTimeouts holds it to that), and bounding
// them is the WebSocket layer's job. JSON request bodies are read through
// DecodeJSON, which bounds their size.
package httpserve

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Timeouts bound every connection of a server. Zero fields take the
// values of DefaultTimeouts.
type Timeouts struct {
	// ReadHeader is how long a client has to send a request's headers.
	ReadHeader time.Duration
	// Read is how long a client has to send a whole request, body
	// included: a body dripped slower is cut off.
	Read time.Duration
	// Write is how long the server has to answer once the request is
	// read. It must exceed the longest answer held open on purpose (a
	// join waiting in the lobby).
	Write time.Duration
	// Idle is how long a keep-alive connection may wait for its next
	// request.
	Idle time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
}

// DefaultTimeouts are the bounds of a server started without others.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		ReadHeader:     10 * time.Second,
		Read:           20 * time.Second,
		Write:          60 * time.Second,
		Idle:           20 * time.Second,
		MaxHeaderBytes: 64 << 10,
	}
}

// WithDefaults fills t's zero fields from DefaultTimeouts.
func (t Timeouts) WithDefaults() Timeouts {
	d := DefaultTimeouts()
	if t.ReadHeader <= 0 {
		t.ReadHeader = d.ReadHeader
	}
	if t.Read <= 0 {
		t.Read = d.Read
	}
	// The header deadline is part of the read deadline, never longer.
	t.ReadHeader = min(t.ReadHeader, t.Read)
	if t.Write <= 0 {
		t.Write = d.Write
	}
	if t.Idle <= 0 {
		t.Idle = d.Idle
	}
	if t.MaxHeaderBytes <= 0 {
		t.MaxHeaderBytes = d.MaxHeaderBytes
	}
	return t
}

// Config describes a server.
type Config struct {
	Handler  http.Handler
	Timeouts Timeouts
	// TLS, when set, makes the server speak HTTPS only; it must be able to
	// give a certificate (Certificates or GetCertificate; see CertFiles
	// and ACME).
	TLS *tls.Config
	// HTTP1Only keeps HTTP/2 off under TLS, for servers whose clients
	// upgrade to WebSocket (an upgrade needs HTTP/1.1).
	HTTP1Only bool
	// Logger receives the server's own errors (TLS handshakes that fail
	// and the like); nil discards them to slog.Default at debug level.
	Logger *slog.Logger
}

// Server is one HTTP server on one listener.
type Server struct {
	srv *http.Server
	ln  net.Listener
	tls bool
}

// New builds the server for cfg on ln; Serve runs it.
func New(ln net.Listener, cfg Config) *Server {
	t := cfg.Timeouts.WithDefaults()
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	srv := &http.Server{
		Handler:           cfg.Handler,
		ReadHeaderTimeout: t.ReadHeader,
		ReadTimeout:       t.Read,
		WriteTimeout:      t.Write,
		IdleTimeout:       t.Idle,
		MaxHeaderBytes:    t.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	var p http.Protocols
	p.SetHTTP1(true)
	if cfg.TLS != nil {
		srv.TLSConfig = cfg.TLS.Clone()
		if srv.TLSConfig.MinVersion < tls.VersionTLS12 {
			srv.TLSConfig.MinVersion = tls.VersionTLS12
		}
		p.SetHTTP2(!cfg.HTTP1Only)
	}
	srv.Protocols = &p
	return &Server{srv: srv, ln: ln, tls: cfg.TLS != nil}
}

// Listen binds addr and builds the server for cfg on it.
func Listen(addr string, cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return New(ln, cfg), nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// TLS says whether the server speaks HTTPS.
func (s *Server) TLS() bool { return s.tls }

// URL is the server's base URL on its listening address (http:// or
// https://).
func (s *Server) URL() string {
	if s.tls {
		return "https://" + s.ln.Addr().String()
	}
	return "http://" + s.ln.Addr().String()
}

// Serve serves until Shutdown or Close; it returns nil then, and the
// listener's error otherwise.
func (s *Server) Serve() error {
	var err error
	if s.tls {
		err = s.srv.ServeTLS(s.ln, "", "")
	} else {
		err = s.srv.Serve(s.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Shutdown stops taking connections and waits, up to ctx, for requests in
// progress; hijacked connections are their handlers' to close. Whatever
// is still open when ctx ends is closed.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	return err
}

// Close closes the listener and every connection at once.
func (s *Server) Close() error { return s.srv.Close() }
