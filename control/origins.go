package control

import (
	"net/url"
	"slices"
	"strings"
	"sync"
)

// signalingOrigins lists the origins (scheme://host:port) of the
// certified nodes' signaling URLs, which the web app's Content Security
// Policy lets the page connect to. The list is worked out again only when
// the node view changes, so a page request does not walk the registry.
func (s *Server) signalingOrigins() func() []string {
	var (
		mu      sync.Mutex
		view    *liveView
		origins []string
	)
	return func() []string {
		v := s.owner.live()
		mu.Lock()
		defer mu.Unlock()
		if v != view {
			view, origins = v, nodeOrigins(v)
		}
		return origins
	}
}

func nodeOrigins(v *liveView) []string {
	if v == nil {
		return nil
	}
	var out []string
	for _, n := range v.nodes {
		if !n.Cert.ok {
			continue
		}
		u, err := url.Parse(n.Info.URL)
		if err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "" {
			continue
		}
		out = append(out, u.Scheme+"://"+strings.ToLower(u.Host))
	}
	slices.Sort(out)
	return slices.Compact(out)
}
