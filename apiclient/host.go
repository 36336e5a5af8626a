package apiclient

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
)

// CreateHosted creates a meeting with a host key of its own: it makes the
// key, asks the control plane for the policy's effective hash (POST
// /api/policy/preview), signs the host's policy statement and creates the
// meeting with both. req.HostKey and req.PolicyStatement are set by it.
// The Host it returns signs every later host action with that key; keep
// Host.Key (hoststmt.MarshalKey) to act as host later.
func (c *Client) CreateHosted(ctx context.Context, req api.CreateRequest) (api.CreatedMeeting, *Host, error) {
	key, err := hoststmt.GenerateKey()
	if err != nil {
		return api.CreatedMeeting{}, nil, fmt.Errorf("host key: %w", err)
	}
	// The create's statement fixes the meeting's enrollment key: the host
	// trusts the key the control plane's preview names this once (trust
	// on first use) and signs no later policy statement with another.
	h := &Host{Client: c, Key: key, firstPolicy: true}
	st, err := h.policyStatement(ctx, req.Policy)
	if err != nil {
		return api.CreatedMeeting{}, nil, err
	}
	req.HostKey = key.Public().(ed25519.PublicKey)
	req.PolicyStatement = st
	m, err := c.Create(ctx, req)
	if err != nil {
		return api.CreatedMeeting{}, nil, err
	}
	h.Meeting, h.Token = m.ID, m.HostToken
	return m, h, nil
}

// Host acts as a meeting's host: the host token authorises each request
// and the host key signs its statement. Safe for concurrent use.
type Host struct {
	Client  *Client
	Meeting string
	Token   string
	Key     ed25519.PrivateKey

	mu      sync.Mutex
	lastSeq uint64
	// enrollmentKey is the meeting's enrollment key, pinned by the host's
	// first policy statement: nil until the create's statement, or the
	// meeting's current statement verified with Key, names it.
	enrollmentKey ed25519.PublicKey
	// firstPolicy: the next policy statement is the create's, which pins
	// the enrollment key the preview names.
	firstPolicy bool
}

// ErrEnrollmentKeyChanged is why a host refuses to sign a policy
// statement: the control plane names another enrollment key than the one
// the meeting's first policy statement fixed. Signing it would let the
// control plane's own key certify nodes in any country.
var ErrEnrollmentKeyChanged = errors.New("the control plane names another enrollment key than the meeting's")

// pinnedEnrollmentKey is the meeting's enrollment key: the one held, else
// the one of the meeting's current policy statement (GET the meeting),
// which must verify with the host's own key, for a host acting from a new
// process. Without one the host signs no policy statement.
func (h *Host) pinnedEnrollmentKey(ctx context.Context) (ed25519.PublicKey, error) {
	h.mu.Lock()
	k := h.enrollmentKey
	h.mu.Unlock()
	if k != nil {
		return k, nil
	}
	m, err := h.Client.Meeting(ctx, h.Meeting)
	if err != nil {
		return nil, fmt.Errorf("the meeting's policy statement: %w", err)
	}
	st := m.PolicyStatement
	if st == nil || st.Kind != hoststmt.KindPolicy {
		return nil, fmt.Errorf("meeting %s: the control plane shows no policy statement, so the meeting's enrollment key is unknown: refusing to sign a policy", h.Meeting)
	}
	if err := st.Verify(h.Key.Public().(ed25519.PublicKey)); err != nil {
		return nil, fmt.Errorf("meeting %s: its policy statement does not verify with this host key (%v), so the meeting's enrollment key is unknown: refusing to sign a policy", h.Meeting, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.enrollmentKey == nil {
		h.enrollmentKey = bytes.Clone(st.EnrollmentKey)
		h.lastSeq = max(h.lastSeq, st.Seq)
	}
	return h.enrollmentKey, nil
}

// NewHost is the host of meeting id, from its host token and host key.
func NewHost(c *Client, id, hostToken string, key ed25519.PrivateKey) *Host {
	return &Host{Client: c, Meeting: id, Token: hostToken, Key: key}
}

// nextSeq is the seq of a new statement: the clock in Unix milliseconds,
// kept strictly growing (the control plane and every member refuse a seq
// that is not after the last of its kind).
func (h *Host) nextSeq() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastSeq = max(h.lastSeq+1, uint64(time.Now().UnixMilli()))
	return h.lastSeq
}

// sign fills in st's seq and signs it.
func (h *Host) sign(st hoststmt.Statement) (*hoststmt.Statement, error) {
	st.Seq = h.nextSeq()
	if err := st.Sign(h.Key); err != nil {
		return nil, err
	}
	return &st, nil
}

func (h *Host) policyStatement(ctx context.Context, p policy.Policy) (*hoststmt.Statement, error) {
	pv, err := h.Client.Preview(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("policy preview: %w", err)
	}
	// The server says what the effective policy allows; the host signs it
	// only if it allows nothing the host's own policy blocks.
	asked, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		return nil, err
	}
	rules, err := pv.Rules.Effective()
	if err != nil {
		return nil, fmt.Errorf("policy preview: %w", err)
	}
	if rules.Hash() != pv.PolicyHash {
		return nil, fmt.Errorf("policy preview: its rules hash to %s, not to its policy hash %s", rules.Hash(), pv.PolicyHash)
	}
	if err := rules.Within(asked); err != nil {
		return nil, fmt.Errorf("policy preview: the server's rules are wider than the policy asked for: %w", err)
	}
	h.mu.Lock()
	first := h.firstPolicy
	h.mu.Unlock()
	if !first {
		pinned, err := h.pinnedEnrollmentKey(ctx)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pinned, pv.EnrollmentKey) {
			return nil, fmt.Errorf("%w: the preview names enrollment key %s, the meeting's is %s: refusing to sign",
				ErrEnrollmentKeyChanged, nodecert.KeyID(pv.EnrollmentKey), nodecert.KeyID(pinned))
		}
	}
	st, err := h.sign(hoststmt.NewPolicy(0, rules, pv.EnrollmentKey))
	if err != nil {
		return nil, err
	}
	if first {
		h.mu.Lock()
		h.enrollmentKey, h.firstPolicy = bytes.Clone(pv.EnrollmentKey), false
		h.mu.Unlock()
	}
	return st, nil
}

// SetSettings is PUT /api/meetings/{id}/settings: lock the meeting, or
// hold joins in the lobby.
func (h *Host) SetSettings(ctx context.Context, locked, lobby bool) (api.Meeting, error) {
	st, err := h.sign(hoststmt.Statement{Kind: hoststmt.KindSettings, Locked: locked, Lobby: lobby})
	if err != nil {
		return api.Meeting{}, err
	}
	return call[api.Meeting](ctx, h.Client, http.MethodPut, api.MeetingPath(h.Meeting, "settings"), h.Token,
		api.Settings{Locked: locked, Lobby: lobby, Statement: st}, http.StatusOK)
}

// SetPolicy is PUT /api/meetings/{id}/policy with the host's statement of
// the new effective hash.
func (h *Host) SetPolicy(ctx context.Context, p policy.Policy) (api.Meeting, error) {
	st, err := h.policyStatement(ctx, p)
	if err != nil {
		return api.Meeting{}, err
	}
	return h.Client.PutPolicy(ctx, h.Meeting, h.Token, api.PolicyRequest{Policy: p, Statement: st})
}

// Remove is DELETE /api/meetings/{id}/participants/{pid}: the participant
// is disconnected, and every member cuts it (and identity, its Ed25519
// identity key, when known) from the keys.
func (h *Host) Remove(ctx context.Context, pid string, identity []byte) error {
	st, err := h.sign(hoststmt.Statement{Kind: hoststmt.KindRemove, Participant: pid, Identity: identity})
	if err != nil {
		return err
	}
	_, err = call[struct{}](ctx, h.Client, http.MethodDelete, api.MeetingPath(h.Meeting, "participants", url.PathEscape(pid)), h.Token,
		api.Removal{Statement: st}, http.StatusNoContent)
	return err
}

// Lobby is GET /api/meetings/{id}/lobby: the joins waiting for the host.
func (h *Host) Lobby(ctx context.Context) (api.Lobby, error) {
	return call[api.Lobby](ctx, h.Client, http.MethodGet, api.MeetingPath(h.Meeting, "lobby"), h.Token, nil, http.StatusOK)
}

// Admit lets a lobby entry in; name is the name the lobby shows for it.
func (h *Host) Admit(ctx context.Context, ticket, name string) error {
	return h.decide(ctx, true, ticket, name)
}

// Deny turns a lobby entry away.
func (h *Host) Deny(ctx context.Context, ticket, name string) error {
	return h.decide(ctx, false, ticket, name)
}

func (h *Host) decide(ctx context.Context, admit bool, ticket, name string) error {
	kind := hoststmt.KindDeny
	if admit {
		kind = hoststmt.KindAdmit
	}
	st, err := h.sign(hoststmt.Statement{Kind: kind, Ticket: ticket, Name: name})
	if err != nil {
		return err
	}
	_, err = call[struct{}](ctx, h.Client, http.MethodPost, api.MeetingPath(h.Meeting, "lobby", url.PathEscape(ticket)), h.Token,
		api.LobbyDecision{Admit: admit, Statement: st}, http.StatusNoContent)
	return err
}

// Join is the host's own join: it carries the host token, so the host's
// lock and lobby do not hold it back. It still needs the join secret.
func (h *Host) Join(ctx context.Context, req api.JoinRequest) (api.JoinResponse, error) {
	jr, wait, err := h.Client.joinOnce(ctx, h.Meeting, h.Token, req)
	if err == nil && wait != nil {
		return api.JoinResponse{}, fmt.Errorf("join meeting %s as its host: held in the lobby", h.Meeting)
	}
	return jr, err
}
