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

	"golang.org/x/mod/sumdb/tlog"

	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
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
	// The transparency log (docs/API.md "Audit log"). Checkpoint and
	// proofs hold only hashes and need no token; entries need the same
	// token as PathAudit.
	PathAuditCheckpoint  = "/api/audit/checkpoint"  // text/plain: the newest signed checkpoint
	PathAuditProof       = "/api/audit/proof"       // ?index=I&size=N: InclusionProof
	PathAuditConsistency = "/api/audit/consistency" // ?from=N&to=M: ConsistencyProof
	PathAuditEntries     = "/api/audit/entries"     // ?meeting=ID&start=I&limit=L: AuditPage
)

// Operator token: GET /api/audit, /api/audit/export and /api/report for
// the whole deployment need "Authorization: Bearer <operator token>"; one
// meeting's routing, report and audit need its host token or its join
// secret in the same header.
const AuthHeader = "Authorization"

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
	// CodeRateLimited (429, with Retry-After): this client address is
	// over a limit (requests a minute, or seats of joins not yet
	// connected).
	CodeRateLimited = "rate_limited"

	// Meeting access (docs/API.md "Who may join").
	CodeBadMeetingSecret = "bad_meeting_secret" // 403: the join link's secret is missing or wrong
	CodeMeetingLocked    = "meeting_locked"     // 403: the host locked the meeting
	CodeBadRejoinSecret  = "bad_rejoin_secret"  // 403: replaces without its rejoin secret
	CodeLobbyDenied      = "lobby_denied"       // 403: the host turned this join away
	CodeLobbyExpired     = "lobby_expired"      // 404: the lobby ticket is unknown or timed out
	CodeLobbyFull        = "lobby_full"         // 503: the meeting's lobby holds as many waiting joins as it may
	CodeBadStatement     = "bad_host_statement" // 400/403: a host statement that does not verify or match
	CodeNoHostKey        = "no_host_key"        // 409: the meeting was made without a host key
	CodeNotParticipant   = "not_participant"    // 404: no such participant in the meeting
)

// Client-verified routing: the codes with which a participant's own client
// refuses the node it was placed on, before sending any media there. The
// client reports them in its next join (JoinRequest.Refused); the control
// plane audits them (audit.KindNodeRefused) and places elsewhere.
const (
	// CodeNodeNotAllowed: the node's certified country or region is one
	// the host-signed policy does not allow.
	CodeNodeNotAllowed = "node_not_allowed_by_policy"
	// CodeNodeCertInvalid: the node's certificate is missing, malformed,
	// not signed by the enrollment key of the host-signed policy, outside
	// its validity, or for another node than the join answer names.
	CodeNodeCertInvalid = "node_cert_invalid"
	// CodeNodeProofInvalid: the node did not prove it holds the
	// certified identity key (its SDP signature is missing or wrong).
	CodeNodeProofInvalid = "node_proof_invalid"
	// CodeNoHostPolicy: the client has no host-signed policy to check the
	// node against (the link names no host key, or no policy statement
	// verifies): it refuses to connect rather than trust the server.
	CodeNoHostPolicy = "no_host_policy"
)

// Error is an error answer: an HTTP status and a stable machine code.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"error"`
	// RetryAfter is, on a 429 (CodeRateLimited), the whole seconds to
	// wait before asking again, also sent as the Retry-After header.
	RetryAfter int `json:"retry_after_seconds,omitempty"`
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
	// AuditVerifierKey verifies the log's checkpoints: the standard note
	// verifier string (name+hash+key), the name being the log's origin.
	// `oakmeet audit verify --public-key` takes it.
	AuditVerifierKey string `json:"audit_verifier_key"`
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
	// Replica is the control-plane replica that answered, Leader the one
	// whose control plane did (another when Replica forwarded it).
	Replica string `json:"replica,omitempty"`
	Leader  string `json:"leader,omitempty"`
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
	// Rules and EnrollmentKey are what the host signs in its policy
	// statement (hoststmt.NewPolicy): the effective policy reduced to what
	// it allows, and the deployment's enrollment public key. The host's
	// client checks the rules allow nothing its own policy blocks before
	// signing.
	Rules         policy.Rules `json:"rules"`
	EnrollmentKey []byte       `json:"enrollment_key"`
}

// CreateRequest is POST /api/meetings. HostKey is the raw Ed25519 public
// key the creating client made for this meeting (hoststmt); with it comes
// PolicyStatement, the host's signature on the policy's effective hash (as
// POST /api/policy/preview answers it). A meeting made without a host key
// has no host actions that members can verify: the browser and the CLI
// always make one.
type CreateRequest struct {
	Title           string              `json:"title"`
	Policy          policy.Policy       `json:"policy"`
	HostKey         []byte              `json:"host_key,omitempty"`
	PolicyStatement *hoststmt.Statement `json:"policy_statement,omitempty"`
	// Lobby starts the meeting with its lobby on.
	Lobby bool `json:"lobby,omitempty"`
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
	// Locked and Lobby are the host's settings (the latest settings
	// statement); HostKey is the meeting's host public key, if it has one.
	Locked  bool   `json:"locked"`
	Lobby   bool   `json:"lobby"`
	HostKey []byte `json:"host_key,omitempty"`
	// PolicyStatement is the newest host-signed policy statement the
	// control plane accepted. A host acting from a new process verifies it
	// with its own host key and keeps its enrollment key: every later
	// policy statement of the meeting must carry that same key.
	PolicyStatement *hoststmt.Statement `json:"policy_statement,omitempty"`
}

// CreatedMeeting is the answer to POST /api/meetings: the meeting, the
// host token and the join secret, which are shown this once (the control
// plane keeps only their hashes). JoinURL is the link to share: the join
// secret and the host key's fingerprint travel in its fragment
// (#s=SECRET&h=FINGERPRINT), which browsers never send to a server. HostURL
// is the host's own link: the join link's fragment plus &host=HOST_TOKEN.
type CreatedMeeting struct {
	Meeting
	HostToken  string `json:"host_token"`
	JoinSecret string `json:"join_secret"`
	JoinURL    string `json:"join_url"`
	HostURL    string `json:"host_url"`
}

// Settings is PUT /api/meetings/{id}/settings, with the host token. On a
// meeting with a host key, Statement is the host's settings statement with
// the same values.
type Settings struct {
	Locked    bool                `json:"locked"`
	Lobby     bool                `json:"lobby"`
	Statement *hoststmt.Statement `json:"statement,omitempty"`
}

// PolicyRequest is PUT /api/meetings/{id}/policy, with the host token: the
// new policy and, on a meeting with a host key, the host's statement of its
// effective hash.
type PolicyRequest struct {
	Policy    policy.Policy       `json:"policy"`
	Statement *hoststmt.Statement `json:"statement,omitempty"`
}

// Removal is the body of DELETE /api/meetings/{id}/participants/{pid},
// with the host token: the host's removal statement naming that
// participant (and its identity key when the host's client knows it).
type Removal struct {
	Statement *hoststmt.Statement `json:"statement,omitempty"`
}

// LobbyEntry is one join waiting in the lobby, as the host sees it.
type LobbyEntry struct {
	Ticket   string       `json:"ticket"`
	Name     string       `json:"name"`
	Location JoinLocation `json:"location"`
	Since    time.Time    `json:"since"`
	// Removed: this client's identity key was removed from the meeting
	// before; it is back in the lobby whatever the settings say.
	Removed bool `json:"removed,omitempty"`
}

// Lobby is GET /api/meetings/{id}/lobby, with the host token.
type Lobby struct {
	Waiting []LobbyEntry `json:"waiting"`
	// More says that more joins wait after this page: ask again with
	// ?after= the last ticket listed. ?limit= sets the page's size
	// (default and maximum LobbyPageMax).
	More bool `json:"more,omitempty"`
}

// LobbyPageMax is the most lobby entries one GET .../lobby lists.
const LobbyPageMax = 100

// NodesPageMax is the most nodes one GET /api/nodes lists. The list is in
// id order; ?after=ID starts after a node, ?limit= makes a page smaller,
// and a page with more after it carries a Link header (rel="next").
const NodesPageMax = 500

// LobbyDecision is POST /api/meetings/{id}/lobby/{ticket}, with the host
// token: admit or deny, and the host's statement of it.
type LobbyDecision struct {
	Admit     bool                `json:"admit"`
	Statement *hoststmt.Statement `json:"statement,omitempty"`
}

// LobbyWait is the 202 answer to a join that waits in the lobby. The
// client asks again with JoinRequest.LobbyTicket; each ask is held open
// for up to Wait while no decision is made.
type LobbyWait struct {
	Code   string        `json:"code"` // always "lobby"
	Ticket string        `json:"ticket"`
	Wait   time.Duration `json:"wait_ns"`
	// Message says, for people, why the join waits.
	Message string `json:"message"`
}

// CodeLobby is LobbyWait's code.
const CodeLobby = "lobby"

// Audit kinds of host actions (docs/API.md).
const (
	AuditHostSettings = "host_settings"
	AuditHostRemove   = "host_remove"
	AuditHostAdmit    = "host_admit"
	AuditHostDeny     = "host_deny"
	AuditHostPolicy   = "host_policy"
)

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
	// Secret is the join secret from the link's fragment.
	Secret string `json:"secret"`
	// Identity is the client's Ed25519 identity public key (the one its
	// key messages are signed with): a removed identity goes to the lobby.
	Identity []byte `json:"identity,omitempty"`
	// Replaces names this client's previous participant when it moves
	// (asked by a move message, or after its node was lost), proven by
	// RejoinSecret, which that participant's join answer handed out.
	Replaces     string `json:"replaces,omitempty"`
	RejoinSecret string `json:"rejoin_secret,omitempty"`
	// LobbyTicket asks again after a 202 lobby answer.
	LobbyTicket string `json:"lobby_ticket,omitempty"`
	// Refused says this client refused the node its previous placement
	// (Replaces, proven by RejoinSecret) put it on, and why: the control
	// plane audits it and does not place this join there again.
	Refused *NodeRefusal `json:"refused,omitempty"`
}

// NodeRefusal is a client's refusal of the node it was placed on.
type NodeRefusal struct {
	Code    string `json:"code"`    // CodeNodeNotAllowed, CodeNodeCertInvalid, CodeNodeProofInvalid
	Message string `json:"message"` // for people: names the node and, for a policy refusal, its country
}

// JoinNode is the node a participant was placed on.
type JoinNode struct {
	ID      string `json:"id"`
	Country string `json:"country"`
	Region  string `json:"region,omitempty"`
	URL     string `json:"url"`
	// Cert is the node's enrollment certificate (package nodecert): the
	// client checks it against the enrollment key and rules of the
	// host-signed policy, and the node's SDP signatures against its
	// identity key, before sending media (docs/SECURITY.md).
	Cert string `json:"cert"`
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
	// RejoinSecret lets this participant be replaced by the same client's
	// next join (JoinRequest.Replaces); nobody else gets it.
	RejoinSecret string `json:"rejoin_secret"`
	// Host is what a member needs to check the host's statements.
	Host HostState `json:"host"`
	// Audit is the transparency log's state at the join.
	Audit JoinAudit `json:"audit"`
}

// HostState is the host key and the statements in force: the newest
// policy and settings statements and every removal. A client checks the key
// against its link's fingerprint and each statement against the key, and
// ignores what fails; the node sends later statements as "host" messages
// (docs/PROTOCOL.md).
type HostState struct {
	Key        []byte               `json:"key,omitempty"`
	PolicyHash string               `json:"policy_hash"`
	Statements []hoststmt.Statement `json:"statements"`
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
	// ReasonRemoved: the host removed the participant (a signed removal).
	ReasonRemoved = "removed"
	// ReasonPendingExpired: the participant connected after its seat's
	// hold for a connection had passed; it must join again.
	ReasonPendingExpired = "pending_expired"
	// ReasonJoinInterrupted is the recorded departure of a participant
	// whose join was stored but never answered (the control plane died,
	// stopped, or its store or log failed before the answer): no join
	// token names it, so no media can have flowed.
	ReasonJoinInterrupted = "join interrupted"
)

// InclusionProof is GET /api/audit/proof: the hashes proving entry Index
// is in the tree of Size entries (tlog.RecordProof; each hash base64).
type InclusionProof struct {
	Index int64       `json:"index"`
	Size  int64       `json:"size"`
	Proof []tlog.Hash `json:"proof"`
}

// ConsistencyProof is GET /api/audit/consistency: the hashes proving the
// tree of From entries is a prefix of the tree of To (tlog.TreeProof).
type ConsistencyProof struct {
	From  int64       `json:"from"`
	To    int64       `json:"to"`
	Proof []tlog.Hash `json:"proof"`
}

// AuditPage is GET /api/audit/entries: entries in log order (Index
// ascending) from start, of one meeting or (operator token, no meeting)
// of all, at most limit of them (default and maximum AuditPageMax).
// More says whether entries past the page exist; Next is the start of
// the next page. Size is the log's size when the page was read: every
// entry in it has Index < Size.
type AuditPage struct {
	Entries []audit.Entry `json:"entries"`
	More    bool          `json:"more"`
	Next    int64         `json:"next"`
	Size    int64         `json:"size"`
}

// AuditPageMax is the largest page GET /api/audit/entries answers.
const AuditPageMax = 1000

// JoinAudit is what a joining client needs to hold the log to account:
// the newest checkpoint, the index of this join's own entry (placement
// or migration, which a later checkpoint includes) and how often the
// control plane signs a checkpoint while entries arrive (how often a
// client looks for a new one).
type JoinAudit struct {
	Checkpoint  string `json:"checkpoint"`
	VerifierKey string `json:"verifier_key"`
	Index       int64  `json:"index"`
	EveryMS     int64  `json:"every_ms"`
}

// AuditEntries is GET /api/audit: one page of entries in log order from
// ?start= (default 0), at most ?limit= of them (default and maximum
// AuditPageMax), with the control plane's public key. More, Next and Size
// are as in AuditPage: a client reading the whole log asks again from Next
// while More is set.
type AuditEntries struct {
	PublicKey []byte        `json:"public_key"`
	Entries   []audit.Entry `json:"entries"`
	More      bool          `json:"more"`
	Next      int64         `json:"next"`
	Size      int64         `json:"size"`
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
	// Computed is when the figures were read. Every request within
	// ReportMaxAge of it gets the same figures: the report reads every
	// meeting, so it is read at most that often, however often it is asked.
	Computed time.Time `json:"computed"`
}

// ReportMaxAge is how old the deployment report's figures may be.
const ReportMaxAge = 10 * time.Second

// MeetingPath is the path of a meeting's resource, e.g. MeetingPath(id,
// "join"); the id is escaped.
func MeetingPath(id string, sub ...string) string {
	p := PathMeetings + "/" + url.PathEscape(id)
	for _, s := range sub {
		p += "/" + s
	}
	return p
}
