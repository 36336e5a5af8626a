package main

import (
	"errors"
	"flag"
	"fmt"
	"net/textproto"
	"strings"
)

// proxyFlags registers the flags that say how serve sits behind a reverse
// proxy or load balancer, and returns what applies them to the settings once
// parsed. Headers are believed only from --trusted-proxies: any client can
// set any header it likes.
func proxyFlags(fs *flag.FlagSet) func(*serveSettings) error {
	clientIPHeader := fs.String("client-ip-header", "",
		"header in X-Forwarded-For form naming the client's address, set by a proxy in --trusted-proxies; "+
			"GeoIP and per-client limits then use that address instead of the proxy's")
	return func(st *serveSettings) error {
		h := strings.TrimSpace(*clientIPHeader)
		if h == "" {
			return nil
		}
		if !validHeaderName(h) {
			return fmt.Errorf("--client-ip-header %q: not a header name", h)
		}
		if len(st.locate.TrustedProxies) == 0 {
			return errors.New("--client-ip-header needs --trusted-proxies: the header is believed only from those peers")
		}
		st.locate.ClientIPHeader = textproto.CanonicalMIMEHeaderKey(h)
		return nil
	}
}

// validHeaderName reports whether s is an HTTP field name (an RFC 9110 token).
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}
