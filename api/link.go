package api

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Link is a meeting link: https://HOST/m/ID#s=SECRET&h=FINGERPRINT, and for
// the host &host=HOST_TOKEN too. Everything after '#' stays in the client:
// browsers never send a fragment to a server.
type Link struct {
	Server          string // scheme://host[:port], no trailing slash
	Meeting         string
	Secret          string // the join secret
	HostFingerprint string // hoststmt.Fingerprint of the host key; empty if the meeting has none
	HostToken       string // only in the host's link
}

// String writes the link.
func (l Link) String() string {
	// Written by hand, not with url.Values.Encode, to keep the documented
	// order of the fields.
	parts := []string{"s=" + url.QueryEscape(l.Secret)}
	if l.HostFingerprint != "" {
		parts = append(parts, "h="+url.QueryEscape(l.HostFingerprint))
	}
	if l.HostToken != "" {
		parts = append(parts, "host="+url.QueryEscape(l.HostToken))
	}
	return strings.TrimSuffix(l.Server, "/") + "/m/" + url.PathEscape(l.Meeting) + "#" + strings.Join(parts, "&")
}

// ParseLink reads a meeting link. The secret is required; the fingerprint
// and host token are optional.
func ParseLink(raw string) (Link, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return Link{}, fmt.Errorf("meeting link: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return Link{}, errors.New("meeting link: want http(s)://HOST/m/ID#s=SECRET&h=FINGERPRINT")
	}
	id, ok := strings.CutPrefix(u.EscapedPath(), "/m/")
	id = strings.TrimSuffix(id, "/")
	if !ok || id == "" || strings.Contains(id, "/") {
		return Link{}, fmt.Errorf("meeting link: path %q is not /m/ID", u.Path)
	}
	if id, err = url.PathUnescape(id); err != nil {
		return Link{}, fmt.Errorf("meeting link: %w", err)
	}
	frag, err := url.ParseQuery(u.EscapedFragment())
	if err != nil {
		return Link{}, fmt.Errorf("meeting link: fragment: %w", err)
	}
	l := Link{Server: u.Scheme + "://" + u.Host, Meeting: id, Secret: frag.Get("s"), HostFingerprint: frag.Get("h"), HostToken: frag.Get("host")}
	if l.Secret == "" {
		return Link{}, errors.New("meeting link: no join secret (#s=…) in the link; ask the host for the whole link")
	}
	return l, nil
}
