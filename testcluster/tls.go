package testcluster

import (
	"context"
	"crypto/tls"
	"net/http"
	"time"

	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
)

// WithTLS serves the control plane over HTTPS (HTTP/2) and every node's
// signaling over wss://, with certificates for 127.0.0.1 from ca; API and
// HTTPClient trust ca, and nodes dial each other trusting it.
func WithTLS(ca *httpservetest.CA) Option {
	return func(c *Cluster) { c.ca, c.leaf, c.client = ca, ca.Issue(), ca.Client() }
}

// HTTPClient is an HTTP client that reaches the cluster: one trusting the
// cluster's CA under WithTLS, else http.DefaultClient.
func (c *Cluster) HTTPClient() *http.Client {
	if c.ca == nil {
		return http.DefaultClient
	}
	return c.client
}

// closeHTTP stops the control plane's HTTP server, waiting up to 5 s for
// requests in progress, as httptest's Close did.
func (c *Cluster) closeHTTP() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.http.Shutdown(ctx)
}

// nodeTLS is the server and peer TLS configuration of the cluster's nodes
// (nil, nil without WithTLS).
func (c *Cluster) nodeTLS() (server, peer *tls.Config) {
	if c.ca == nil {
		return nil, nil
	}
	return c.leaf.ServerTLS(), &tls.Config{RootCAs: c.ca.Pool(), MinVersion: tls.VersionTLS12}
}
