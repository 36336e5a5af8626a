package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"time"

	"github.com/oakmeet/oakmeet/httpserve"
)

// httpFlags are the TLS and timeout flags of a process that serves HTTP
// (serve, node); the ACME ones only where asked for.
type httpFlags struct {
	tlsCert, tlsKey                   *string
	acmeDomain, acmeCache, acmeHTTP   *string
	readTimeout, writeTimeout, idleTO *time.Duration
}

func addHTTPFlags(fs *flag.FlagSet, what string, acme bool) *httpFlags {
	d := httpserve.DefaultTimeouts()
	f := &httpFlags{
		tlsCert:      fs.String("tls-cert", "", "serve "+what+" over TLS with this certificate chain (PEM); needs --tls-key"),
		tlsKey:       fs.String("tls-key", "", "the private key (PEM) of --tls-cert"),
		readTimeout:  fs.Duration("http-read-timeout", d.Read, "how long a client has to send a whole request, body included"),
		writeTimeout: fs.Duration("http-write-timeout", d.Write, "how long the server has to answer a request once read (WebSockets are not bound by it)"),
		idleTO:       fs.Duration("http-idle-timeout", d.Idle, "how long an idle keep-alive connection stays open"),
	}
	if acme {
		f.acmeDomain = fs.String("acme-domain", "", "get certificates automatically from Let's Encrypt (ACME) for these comma-separated domains; needs --acme-cache")
		f.acmeCache = fs.String("acme-cache", "", "directory keeping the ACME account and certificates across restarts")
		f.acmeHTTP = fs.String("acme-http", "", "also answer ACME http-01 challenges on this address (e.g. :80), which redirects everything else to HTTPS (default: tls-alpn-01 on --listen, which must then be port 443)")
	}
	return f
}

// httpSettings are httpFlags read and checked.
type httpSettings struct {
	certFile, keyFile string
	acmeDomains       []string
	acmeCache         string
	acmeHTTP          string
	timeouts          httpserve.Timeouts
}

func (f *httpFlags) settings() (httpSettings, error) {
	s := httpSettings{certFile: *f.tlsCert, keyFile: *f.tlsKey,
		timeouts: httpserve.Timeouts{Read: *f.readTimeout, Write: *f.writeTimeout, Idle: *f.idleTO}}
	for _, t := range []struct {
		name string
		d    time.Duration
	}{{"--http-read-timeout", *f.readTimeout}, {"--http-write-timeout", *f.writeTimeout}, {"--http-idle-timeout", *f.idleTO}} {
		if t.d <= 0 {
			return httpSettings{}, fmt.Errorf("%s %s: must be positive", t.name, t.d)
		}
	}
	if (s.certFile == "") != (s.keyFile == "") {
		return httpSettings{}, errors.New("--tls-cert and --tls-key go together: the certificate and its private key")
	}
	if f.acmeDomain != nil {
		s.acmeDomains, s.acmeCache, s.acmeHTTP = splitList(*f.acmeDomain), *f.acmeCache, *f.acmeHTTP
	}
	switch {
	case len(s.acmeDomains) > 0 && s.certFile != "":
		return httpSettings{}, errors.New("--acme-domain and --tls-cert are two ways to get a certificate: give one")
	case len(s.acmeDomains) > 0 && s.acmeCache == "":
		return httpSettings{}, errors.New("--acme-domain needs --acme-cache DIR: without a cache every start asks the CA for new certificates and soon hits its rate limits")
	case len(s.acmeDomains) == 0 && (s.acmeCache != "" || s.acmeHTTP != ""):
		return httpSettings{}, errors.New("--acme-cache and --acme-http are for --acme-domain")
	}
	return s, nil
}

// tls says whether the process serves HTTPS.
func (s httpSettings) tls() bool { return s.certFile != "" || len(s.acmeDomains) > 0 }

// serverTLS is the TLS configuration to serve with (nil: plain HTTP), and
// the ACME manager when certificates come from one.
func (s httpSettings) serverTLS() (*tls.Config, *httpserve.ACME, error) {
	switch {
	case s.certFile != "":
		c, err := httpserve.CertFiles(s.certFile, s.keyFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-cert: %w", err)
		}
		return c, nil, nil
	case len(s.acmeDomains) > 0:
		a, err := httpserve.NewACME(s.acmeDomains, s.acmeCache)
		if err != nil {
			return nil, nil, err
		}
		return a.TLS(), a, nil
	}
	return nil, nil, nil
}

// loopbackAddr says whether a listen address is on loopback only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// caFileTLS is a TLS client configuration trusting the CA certificates in
// file (PEM) only; "" gives nil, the system's roots.
func caFileTLS(flagName, file string) (*tls.Config, error) {
	if file == "" {
		return nil, nil
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", flagName, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s %s: no PEM certificate in it", flagName, file)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// caFileClient is an HTTP client (for the API and the nodes' WebSockets)
// trusting the CA certificates in file only; "" gives nil, the default
// client and the system's roots.
func caFileClient(flagName, file string) (*http.Client, error) {
	c, err := caFileTLS(flagName, file)
	if c == nil || err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = c
	return &http.Client{Transport: tr}, nil
}
