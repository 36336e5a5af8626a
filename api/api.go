// Package api is the contract of the control plane's HTTP API: every
// request and response body and every error code, in one place. The server
// (package control), the Go API client (package apiclient), the command
// line, the bot, the load generator and the tests all import it, so none of
// them declares a wire type of its own. docs/API.md documents it, and this
// package's docs test keeps the two in step.
package api

import (
	"fmt"
	"net/url"
	"time"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/signal"
)

// Paths of the API. A meeting id is one path segment.
const (
	PathHealth      = "/healthz"
	PathConfig      = "/api/config"
	PathGeo         = "/api/geo"
	PathNodes       = "/api/nodes"
	PathPreview     = "/api/policy/preview"
	PathMeetings    = "/api/meetings"
	PathReport      = "/api/report"
	PathAudit       = "/api/audit"
	PathAuditExport = "/api/audit/export"
)

// Stable error codes. Placement refusals (placement.Code*) and unknown
// geography codes ("unknown_country", "unknown_region", "unknown_group")
// are answered with their own codes; docs/API.md lists every one.
const (
	CodeBadJSON      = "bad_json"
	CodeBadRequest   = "bad_request"
	CodeNotFound     = "not_found"
	CodeUnauthorized = "unauthorized"
	CodeForbidden    = "forbidden"
	CodeInternal     = "internal"
	CodeUnavailable  = "unavailable"
)

// Error is an error answer: an HTTP status and a stable machine code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *Error) Error() string {
	return fmt.Sprintf("control plane: %d %s: %s", e.Status, e.Code, e.Message)
}

// Errorf builds an Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Config is GET /api/config: what a client needs to know of the
// deployment.
type Config struct {
	Floor               policy.Policy `json:"floor"`
	TrustClientLocation bool          `json:"trust_client_location"`
	// PublicKey verifies join tokens and audit entries (raw Ed25519, base64
	// in JSON).
	PublicKey []byte `json:"public_key"`
}

// Geo is GET /api/geo: the catalogue of countries, regions and groups.
type Geo struct {
	Countries []geo.Country       `json:"countries"`
	Regions   []geo.Region        `json:"regions"`
	Groups    map[string][]string `json:"groups"`
}

// Health is GET /healthz.
type Health struct {
	Status       string `json:"status"`
	HealthyNodes int    `json:"healthy_nodes"`
}

// Node is a node as GET /api/nodes lists it.
type Node struct {
	ID       string     `json:"id"`
	Country  string     `json:"country"`
	Region   string     `json:"region,omitempty"`
	URL      string     `json:"url"`
	Healthy  bool       `json:"healthy"`
	Draining bool       `json:"draining"`
	Load     Load       `json:"load"`
	Capacity Capacity   `json:"capacity"`
	LastSeen *time.Time `json:"last_seen,omitempty"`
	// Certified: the node's certificate verifies against the enrollment
	// key, is valid and unrevoked, and matches its registration. Only a
	// certified node is given participants, relay links or TURN;
	// CertError says why one is not.
	Certified bool   `json:"certified"`
	CertError string `json:"cert_error,omitempty"`
}

// Load is a node's current load: what it reports, and the participants the
// control plane has placed on it.
type Load struct {
	cluster.Load
	Assigned int `json:"assigned"`
}

// Capacity is a node's configured limits (0 = unlimited).
type Capacity struct {
	MaxParticipants int   `json:"max_participants"`
	MaxBitrateBps   int64 `json:"max_bitrate_bps"`
}

// Preview is POST /api/policy/preview's answer: what a policy would mean
// here before a meeting is created with it.
type Preview struct {
	Policy          policy.Policy `json:"policy"`
	Floor           policy.Policy `json:"floor"`
	EffectivePolicy policy.Policy `json:"effective_policy"`
	PolicyHash      string        `json:"policy_hash"`
	AllowedNodes    []string      `json:"allowed_nodes"`
	Warnings        []string      `json:"warnings"`
}

// CreateRequest is POST /api/meetings.
type CreateRequest struct {
	Title  string        `json:"title"`
	Policy policy.Policy `json:"policy"`
}

// Meeting is a meeting as anyone with its id may see it: no secrets.
type Meeting struct {
	ID              string        `json:"id"`
	Title           string        `json:"title"`
	Created         time.Time     `json:"created"`
	Policy          policy.Policy `json:"policy"`
	Floor           policy.Policy `json:"floor"`
	EffectivePolicy policy.Policy `json:"effective_policy"`
	PolicyHash      string        `json:"policy_hash"`
	Participants    int           `json:"participants"`
	AllowedNodes    []string      `json:"allowed_nodes"`
	Warnings        []string      `json:"warnings"`
}

// CreatedMeeting is the answer to POST /api/meetings: the meeting and the
// host token, which is shown this once.
type CreatedMeeting struct {
	Meeting
	HostToken string `json:"host_token"`
}

// Hint is where a client says it is; the control plane honours it only
// where the deployment trusts client locations.
type Hint struct {
	Country string `json:"country,omitempty"`
	Region  string `json:"region,omitempty"`
}

// JoinRequest is POST /api/meetings/{id}/join.
type JoinRequest struct {
	Name     string `json:"name"`
	Location Hint   `json:"location"`
	// Replaces names this client's previous participant when it moves
	// (asked by a move message, or after its node was lost).
	Replaces string `json:"replaces,omitempty"`
}

// JoinNode is the node a participant was placed on.
type JoinNode struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
	URL     string `json:"url"`
}

// JoinResponse is the answer to a successful join.
type JoinResponse struct {
	ParticipantID string    `json:"participant_id"`
	Node          JoinNode  `json:"node"`
	Token         string    `json:"token"`
	Expires       time.Time `json:"expires"`
	// ICEServers are the placed node's own TURN server and nothing else,
	// so a relayed participant is relayed in the node's country.
	ICEServers []ICEServer  `json:"ice_servers"`
	Location   JoinLocation `json:"location"`
}

// JoinLocation is where the control plane placed the client from, and how
// it knew.
type JoinLocation struct {
	Country string `json:"country,omitempty"`
	Source  string `json:"source"`
}

// ICEServer is a STUN or TURN server, shaped like the browser's
// RTCIceServer; the node's signaling welcome uses the same type.
type ICEServer = signal.ICEServer

// PlacedNode names a node and where it is.
type PlacedNode struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
}

// Routing is GET /api/meetings/{id}/routing: where a meeting's
// participants are placed.
type Routing struct {
	Meeting         string         `json:"meeting"`
	PolicyHash      string         `json:"policy_hash"`
	EffectivePolicy policy.Policy  `json:"effective_policy"`
	Participants    []RoutingEntry `json:"participants"`
	Nodes           []RoutingNode  `json:"nodes"`
	// Relays are the relay links the meeting's nodes report.
	Relays []RoutingRelay `json:"relays"`
}

// RoutingRelay is one relay link between two of the meeting's nodes.
type RoutingRelay struct {
	From      PlacedNode `json:"from"`
	To        PlacedNode `json:"to"`
	Connected bool       `json:"connected"`
	// Since is when the dialling node started the link.
	Since time.Time `json:"since"`
	// Closing is set when the control plane has ordered the link closed
	// and the nodes have not reported it gone yet (about two heartbeats).
	Closing bool `json:"closing,omitempty"`
}

// RoutingEntry is one participant's placement.
type RoutingEntry struct {
	ID     string     `json:"id"`
	Name   string     `json:"name"`
	Node   PlacedNode `json:"node"`
	Joined time.Time  `json:"joined"`
	// Moving is set while the participant has been asked to leave its
	// node (why, e.g. policy_change); it is gone within seconds.
	Moving   string `json:"moving,omitempty"`
	Replaces string `json:"replaces,omitempty"`
}

// RoutingNode is one node the meeting uses.
type RoutingNode struct {
	PlacedNode
	Participants int  `json:"participants"`
	Healthy      bool `json:"healthy"`
}

// Reasons a participant is moved or disconnected, sent to participants
// and written to the audit log.
const (
	ReasonPolicyChange       = "policy_change"
	ReasonPolicyNoAllowed    = "policy_no_allowed_node"
	ReasonNodeDraining       = "node_draining"
	ReasonDrainNoAllowedNode = "node_draining_no_allowed_node"
	ReasonNodeDown           = "node_down"
	// A node whose certificate no longer holds (revoked, expired, not
	// matching its registration) is left as one the policy forbids.
	ReasonNodeUncertified          = "node_uncertified"
	ReasonUncertifiedNoAllowedNode = "node_uncertified_no_allowed_node"
	ReasonMoved                    = "moved"
)

// AuditEntries is GET /api/audit.
type AuditEntries struct {
	PublicKey []byte        `json:"public_key"`
	Entries   []audit.Entry `json:"entries"`
}

// PolicyChange is one policy a meeting had, from a time on.
type PolicyChange struct {
	At        time.Time     `json:"at"`
	Policy    policy.Policy `json:"policy"`    // the meeting's own rules
	Effective policy.Policy `json:"effective"` // with the deployment floor
	Hash      string        `json:"hash"`
}

// NodeUsage is what one node did for a meeting.
type NodeUsage struct {
	Node               string     `json:"node"`
	Country            string     `json:"country"`
	Region             string     `json:"region,omitempty"`
	Participants       int        `json:"participants"`
	ParticipantMinutes float64    `json:"participant_minutes"`
	Bytes              uint64     `json:"bytes"`
	From               *time.Time `json:"from,omitempty"`
	Until              *time.Time `json:"until,omitempty"` // nil while in use
	LastTraffic        *time.Time `json:"last_traffic,omitempty"`
}

// CountryUsage sums NodeUsage per country.
type CountryUsage struct {
	Country            string     `json:"country"`
	Nodes              []string   `json:"nodes"`
	ParticipantMinutes float64    `json:"participant_minutes"`
	Bytes              uint64     `json:"bytes"`
	Share              float64    `json:"share"` // of all bytes in the report
	LastTraffic        *time.Time `json:"last_traffic,omitempty"`
}

// MeetingReport is GET /api/meetings/{id}/report: the evidence of where one
// meeting's traffic went.
type MeetingReport struct {
	Meeting      string         `json:"meeting"`
	Title        string         `json:"title"`
	Created      time.Time      `json:"created"`
	Policies     []PolicyChange `json:"policies"`
	Nodes        []NodeUsage    `json:"nodes"`
	Countries    []CountryUsage `json:"countries"`
	Refusals     []audit.Entry  `json:"refusals"`
	Migrations   []audit.Entry  `json:"migrations"`
	Participants int            `json:"participants"`
}

// DeploymentReport is GET /api/report: the share of all meetings' traffic
// each country carried.
type DeploymentReport struct {
	Meetings  int            `json:"meetings"`
	Countries []CountryUsage `json:"countries"`
}

// MeetingPath is the path of a meeting's resource, e.g. MeetingPath(id,
// "join"); the id is escaped.
func MeetingPath(id string, sub ...string) string {
	p := PathMeetings + "/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}
