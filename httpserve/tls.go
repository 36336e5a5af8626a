package httpserve

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/crypto/acme/autocert"
)

// CertFiles is a TLS configuration serving the certificate chain and key
// in two PEM files (as certbot and most CAs write them). The files are
// read once; a renewed certificate takes a restart.
func CertFiles(certFile, keyFile string) (*tls.Config, error) {
	if certFile == "" || keyFile == "" {
		return nil, errors.New("TLS needs both a certificate file and its key file")
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("TLS certificate %s with key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}, nil
}

// ACME gets certificates for domains from an ACME CA (Let's Encrypt by
// default) and keeps them under cacheDir. The CA checks control of a
// domain with tls-alpn-01 on the server's own port 443 listener, or with
// http-01 when HTTPHandler is served on port 80.
type ACME struct {
	m *autocert.Manager
}

// NewACME manages certificates for domains, cached in cacheDir.
func NewACME(domains []string, cacheDir string) (*ACME, error) {
	if len(domains) == 0 {
		return nil, errors.New("ACME needs at least one domain")
	}
	if cacheDir == "" {
		return nil, errors.New("ACME needs a cache directory, or every start asks the CA again and soon hits its rate limits")
	}
	return &ACME{m: &autocert.Manager{
		Prompt:     autocert.AcceptTOS,
		HostPolicy: autocert.HostWhitelist(domains...),
		Cache:      autocert.DirCache(cacheDir),
	}}, nil
}

// TLS is the configuration to serve with (it answers tls-alpn-01
// challenges too).
func (a *ACME) TLS() *tls.Config { return a.m.TLSConfig() }

// HTTPHandler answers http-01 challenges and redirects everything else
// to HTTPS.
func (a *ACME) HTTPHandler() http.Handler { return a.m.HTTPHandler(nil) }
