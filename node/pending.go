package node

import (
	"encoding/json"
	"net"
	"net/http"
	"sync"

	"github.com/oakmeet/oakmeet/api"
)

// pendingConns counts the signaling connections that have not yet sent
// their first message, node-wide and per remote address, so that
// upgrades which never join cannot pile up (each holds a read buffer).
type pendingConns struct {
	mu    sync.Mutex
	total int
	byIP  map[string]int
}

// admit counts the upgrade r as pending, or answers it 503 (the node is
// at MaxPending) or 429 (its address is at MaxPendingPerIP) and reports
// false. release undoes the count; calling it again does nothing.
func (p *pendingConns) admit(w http.ResponseWriter, r *http.Request, lim WebSocketLimits) (release func(), ok bool) {
	ip := remoteIP(r.RemoteAddr)
	p.mu.Lock()
	var refused *api.Error
	switch {
	case lim.MaxPending > 0 && p.total >= lim.MaxPending:
		refused = &api.Error{Status: http.StatusServiceUnavailable, Code: api.CodeUnavailable,
			Message: "too many connections waiting to join this node: try again shortly"}
	case lim.MaxPendingPerIP > 0 && p.byIP[ip] >= lim.MaxPendingPerIP:
		refused = &api.Error{Status: http.StatusTooManyRequests, Code: api.CodeRateLimited,
			Message: "too many connections from this address waiting to join", RetryAfter: 1}
	}
	if refused != nil {
		p.mu.Unlock()
		// The refused client gets no idle keep-alive connection to hold instead.
		w.Header().Set("Connection", "close")
		w.Header().Set("Content-Type", "application/json")
		if refused.RetryAfter > 0 {
			w.Header().Set("Retry-After", "1")
		}
		w.WriteHeader(refused.Status)
		_ = json.NewEncoder(w).Encode(refused)
		return nil, false
	}
	if p.byIP == nil {
		p.byIP = map[string]int{}
	}
	p.total++
	p.byIP[ip]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.total--
			if p.byIP[ip]--; p.byIP[ip] <= 0 {
				delete(p.byIP, ip)
			}
		})
	}, true
}

// remoteIP is the address part of a request's RemoteAddr.
func remoteIP(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	return host
}
