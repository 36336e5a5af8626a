package client

import (
	"errors"
	"fmt"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/geo"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
)

// RefusalError is this client's own refusal of the node a join placed it
// on: Code is api.CodeNoHostPolicy, api.CodeNodeCertInvalid,
// api.CodeNodeNotAllowed or api.CodeNodeProofInvalid, Node the node's id
// (as the join answer names it), Country the certified country when the
// certificate verified, and Message says why in words. A Call reports
// each refusal in its next join (api.JoinRequest.Refused) and gives up with
// the last one after MaxRefusals in a row.
type RefusalError struct {
	Code    string
	Node    string
	Country string
	Message string
}

func (e *RefusalError) Error() string {
	if e.Node == "" { // refused before any placement
		return e.Code + ": " + e.Message
	}
	return "refused node " + e.Node + ": " + e.Code + ": " + e.Message
}

// Is matches on the code alone, so callers can test
// errors.Is(err, &client.RefusalError{Code: api.CodeNodeNotAllowed}).
func (e *RefusalError) Is(target error) bool {
	t, ok := target.(*RefusalError)
	return ok && t.Code == e.Code
}

// AsRefusal returns the client's refusal err wraps, if any.
func AsRefusal(err error) (*RefusalError, bool) {
	var r *RefusalError
	ok := errors.As(err, &r)
	return r, ok
}

// GaveUpError ends a call that refused MaxRefusals nodes in a row:
// Refusals are every refusal the call made, the last one (which it
// unwraps to) last.
type GaveUpError struct {
	Refusals []Refusal
	Last     *RefusalError
}

func (e *GaveUpError) Error() string {
	return fmt.Sprintf("gave up after %d refused nodes in a row: %v", MaxRefusals, e.Last)
}

// Unwrap is the last refusal.
func (e *GaveUpError) Unwrap() error { return e.Last }

// refusal is the form a join reports the refusal in.
func (e *RefusalError) refusal() *api.NodeRefusal {
	return &api.NodeRefusal{Code: e.Code, Message: e.Message}
}

// VerifiedNode is what a client checked of the node it connects to: the
// certificate, verified with the enrollment key of the host-signed policy,
// valid at the time of the check, naming the node the join answer names,
// in a place the host's rules allow.
type VerifiedNode struct {
	Cert nodecert.Cert
	// Text is the certificate as the join answer carried it, for the
	// end-to-end node message.
	Text string
}

// CheckNode checks the node of a join answer against policy, the newest
// host-signed policy statement the client verified (nil: none), at now.
// Every refusal is a *RefusalError; the checks run in the order
// no_host_policy, node_cert_invalid, node_not_allowed_by_policy, so that a
// certificate nobody vouches for never has its country believed.
func CheckNode(node NodeInfo, policy *hoststmt.Statement, now time.Time) (VerifiedNode, error) {
	refuse := func(code, format string, args ...any) (VerifiedNode, error) {
		return VerifiedNode{}, &RefusalError{Code: code, Node: node.ID, Message: fmt.Sprintf(format, args...)}
	}
	if policy == nil {
		return refuse(api.CodeNoHostPolicy, "no host-signed policy to check node %s against", node.ID)
	}
	eff, err := policy.Effective()
	if err != nil {
		return refuse(api.CodeNoHostPolicy, "the host-signed policy cannot be read: %v", err)
	}
	if node.Cert == "" {
		return refuse(api.CodeNodeCertInvalid, "the join answer carries no certificate for node %s", node.ID)
	}
	c, err := nodecert.Verify(policy.EnrollmentKey, []byte(node.Cert), now)
	if err != nil {
		return refuse(api.CodeNodeCertInvalid, "node %s's certificate does not verify with the enrollment key the host signed: %v", node.ID, err)
	}
	if err := nodecert.Matches(c, node.ID, node.Country, node.Region, c.IdentityKey); err != nil {
		var me *nodecert.MismatchError
		if errors.As(err, &me) {
			return refuse(api.CodeNodeCertInvalid, "the join answer's %s %q differs from node %s's certificate, which says %q", me.Field, me.Claimed, node.ID, me.Cert)
		}
		return refuse(api.CodeNodeCertInvalid, "%v", err)
	}
	if !eff.Allows(c.Country, c.Region) {
		return VerifiedNode{}, &RefusalError{Code: api.CodeNodeNotAllowed, Node: node.ID, Country: c.Country,
			Message: fmt.Sprintf("node %s is certified in %s, which the host's policy does not allow", node.ID, place(c.Country, c.Region))}
	}
	return VerifiedNode{Cert: c, Text: node.Cert}, nil
}

// place names a country, and a region if there is one, for people.
func place(country, region string) string {
	s := country
	if c, ok := geo.LookupCountry(country); ok {
		s = c.Name + " (" + country + ")"
	}
	if region != "" {
		s += ", region " + region
	}
	return s
}

// Node statuses of another member's node, as NodeStatusOf judges the
// certificate its signed node message names.
const (
	// NodeVerified: the certificate verifies with the enrollment key of the
	// host-signed policy, is valid now, and names a place the policy allows.
	NodeVerified = "verified"
	// NodeNotAllowed: the certificate verifies, but names a place the
	// host-signed policy does not allow: the member's media goes where the
	// host said it must not.
	NodeNotAllowed = "not_allowed"
	// NodeInvalid: the certificate does not verify (another key, expired,
	// malformed), or there is no host-signed policy to check it with.
	NodeInvalid = "invalid"
	// NodeUnknown: the member has sent no node message (yet).
	NodeUnknown = "unknown"
)

// NodeStatus is what a client makes of a member's node certificate.
type NodeStatus struct {
	Status string
	// Cert is what the certificate says, once it verified (verified or
	// not_allowed).
	Cert nodecert.Cert
	// Reason says why it is invalid or not allowed.
	Reason string
}

// NodeStatusOf judges certText, the certificate a member's node message
// names ("" for none), against policy, the newest host-signed policy
// statement the client verified (nil: none), at now.
func NodeStatusOf(certText string, policy *hoststmt.Statement, now time.Time) NodeStatus {
	if certText == "" {
		return NodeStatus{Status: NodeUnknown}
	}
	if policy == nil {
		return NodeStatus{Status: NodeInvalid, Reason: "no host-signed policy to check the node's certificate with"}
	}
	eff, err := policy.Effective()
	if err != nil {
		return NodeStatus{Status: NodeInvalid, Reason: err.Error()}
	}
	c, err := nodecert.Verify(policy.EnrollmentKey, []byte(certText), now)
	if err != nil {
		return NodeStatus{Status: NodeInvalid, Reason: err.Error()}
	}
	if !eff.Allows(c.Country, c.Region) {
		return NodeStatus{Status: NodeNotAllowed, Cert: c,
			Reason: fmt.Sprintf("node %s is certified in %s, which the host's policy does not allow", c.NodeID, place(c.Country, c.Region))}
	}
	return NodeStatus{Status: NodeVerified, Cert: c}
}
