package cluster

import "time"

// Control-plane replicas: several `oakmeet serve` processes on one NATS
// cluster elect one leader through a lease in BucketLeader; every replica
// answers HTTP, the others forward what they receive to the leader on
// SubjectForward.
const (
	// BucketLeader holds the leader's lease under LeaderKey. Only control
	// plane identities may read or write it.
	BucketLeader = "oakmeet_leader"
	LeaderKey    = "control"
	// SubjectForward is where the leader takes requests other replicas
	// received. Only control plane identities may publish or subscribe
	// to it: the leader trusts the client address a forwarded request
	// names.
	SubjectForward = "oakmeet.control.forward"
	// StreamEvents keeps node events (SubjectEvents) until the leader has
	// taken them in, so none is lost while the leadership changes hands.
	StreamEvents = "OAKMEET_EVENTS"
)

// Lease is the value of the leader's lease. It is taken and renewed by
// compare-and-set on the key's revision; a replica that sees the revision
// unchanged for TTL takes it over. Times are informative: no replica
// compares its clock with another's.
type Lease struct {
	Replica string    `json:"replica"`
	Term    uint64    `json:"term"`
	TTLMs   int64     `json:"ttl_ms"`
	Renewed time.Time `json:"renewed"`
	// Released marks a lease its holder gave up (a clean shutdown, a
	// control plane that could not start): any replica may take it at
	// once, with a higher term.
	Released bool `json:"released,omitempty"`
}

// ForwardRequest is an HTTP request a replica received and hands to the
// leader.
type ForwardRequest struct {
	From       string              `json:"from"` // the forwarding replica's id
	Method     string              `json:"method"`
	URL        string              `json:"url"` // path and query
	Host       string              `json:"host"`
	Header     map[string][]string `json:"header,omitempty"`
	Body       []byte              `json:"body,omitempty"`
	RemoteAddr string              `json:"remote_addr"`
	TLS        bool                `json:"tls,omitempty"`
}

// ForwardResponse is one part of the leader's answer to a ForwardRequest:
// the first carries the status and headers, each its share of the body
// (at most ForwardChunk bytes), the last has More false.
type ForwardResponse struct {
	Seq    int                 `json:"seq"`
	Status int                 `json:"status,omitempty"`
	Header map[string][]string `json:"header,omitempty"`
	Body   []byte              `json:"body,omitempty"`
	More   bool                `json:"more,omitempty"`
	// Working is a keep-alive sent while the leader's handler has not
	// answered yet (a lobby wait, a slow store): a forwarding replica that
	// hears nothing for a few of them knows the leader is gone.
	Working bool   `json:"working,omitempty"`
	Leader  string `json:"leader,omitempty"`
}

// ForwardChunk bounds the body bytes of one ForwardResponse, well inside
// NATS's default 1 MB message limit after base64.
const ForwardChunk = 256 << 10
