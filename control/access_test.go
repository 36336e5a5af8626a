package control

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/cluster"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/policy"
)

// Meeting access over HTTP: the join secret, lock, lobby, rejoin secrets,
// removal, host statements and who may read what.

// apiCode is err's API status and code ("" when err is not an API error).
func apiCode(err error) (int, string) {
	var ae *api.Error
	if !errors.As(err, &ae) {
		return 0, ""
	}
	return ae.Status, ae.Code
}

func (r *rig) expectRefused(err error, status int, code string) {
	r.t.Helper()
	if s, c := apiCode(err); s != status || c != code {
		r.t.Fatalf("got %v, want %d %s", err, status, code)
	}
}

func (r *rig) joinReq(id, name string) api.JoinRequest {
	return api.JoinRequest{Name: name, Location: api.Hint{Country: "DE"}, Secret: r.secret(id)}
}

func TestJoinNeedsTheMeetingSecret(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, _ := r.createHosted(api.CreateRequest{})
	other := r.createMeeting(policy.Policy{})
	ctx := context.Background()
	for _, secret := range []string{"", "wrong", other.JoinSecret, m.HostToken} {
		_, err := r.api.Join(ctx, m.ID, api.JoinRequest{Location: api.Hint{Country: "DE"}, Secret: secret})
		r.expectRefused(err, 403, api.CodeBadMeetingSecret)
	}
	if n := len(r.routing(m.ID).Participants); n != 0 {
		t.Fatalf("%d participants after refused joins", n)
	}
	if got := r.audit(m.ID, audit.KindPlacement); len(got) != 0 {
		t.Fatalf("refused joins placed: %q", got)
	}
	jr := r.join(m.ID, "DE", "")
	if jr.RejoinSecret == "" || !bytes.Equal(jr.Host.Key, m.HostKey) || jr.Host.PolicyHash != m.PolicyHash {
		t.Fatalf("join answer host %+v rejoin %q", jr.Host, jr.RejoinSecret)
	}
	if len(jr.Host.Statements) != 1 || jr.Host.Statements[0].Kind != hoststmt.KindPolicy ||
		jr.Host.Statements[0].Verify(m.HostKey) != nil || jr.Host.Statements[0].PolicyHash != m.PolicyHash {
		t.Fatalf("join answer statements %+v", jr.Host.Statements)
	}
	link, err := api.ParseLink(m.JoinURL)
	if err != nil || link.Secret != m.JoinSecret || link.Meeting != m.ID || hoststmt.CheckKey(m.HostKey, link.HostFingerprint) != nil || link.HostToken != "" {
		t.Fatalf("join url %q: %+v %v", m.JoinURL, link, err)
	}
	if hl, err := api.ParseLink(m.HostURL); err != nil || hl.HostToken != m.HostToken || hl.Secret != m.JoinSecret {
		t.Fatalf("host url %q: %+v %v", m.HostURL, hl, err)
	}
}

func TestLockRefusesNewJoinsUntilUnlocked(t *testing.T) {
	r := startRig(t, "de-fra:DE", "fr-par:FR")
	m, h := r.createHosted(api.CreateRequest{})
	ctx := context.Background()
	first := r.join(m.ID, "DE", "")
	v, err := h.SetSettings(ctx, true, false)
	if err != nil || !v.Locked || v.Lobby {
		t.Fatalf("lock: %+v %v", v, err)
	}
	// The node with a participant is handed the statement.
	r.expectCommands(ofKind(cluster.CommandHost), "host de-fra  ")
	_, err = r.api.Join(ctx, m.ID, r.joinReq(m.ID, "late"))
	r.expectRefused(err, 403, api.CodeMeetingLocked)
	// A participant already in moves on as before: a lock stops newcomers.
	r.join(m.ID, "DE", first.ParticipantID)
	if got, _ := r.api.Meeting(ctx, m.ID); !got.Locked {
		t.Fatal("the meeting does not show it is locked")
	}
	if _, err := h.SetSettings(ctx, false, false); err != nil {
		t.Fatal(err)
	}
	r.join(m.ID, "DE", "")
	r.expectAudit(m.ID, api.AuditHostSettings, []string{
		"host statement seq " + seqOf(t, r, m.ID, 0) + ": locked=true lobby=false",
		"host statement seq " + seqOf(t, r, m.ID, 1) + ": locked=false lobby=false",
	}...)
}

func TestHostJoinPassesLockAndLobby(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{})
	ctx := context.Background()
	if _, err := h.SetSettings(ctx, true, true); err != nil {
		t.Fatal(err)
	}
	req := r.joinReq(m.ID, "host")
	if _, wait, err := r.api.JoinOnce(ctx, m.ID, req); err == nil || wait != nil {
		t.Fatalf("a join without the host token got past the lock: %v %+v", err, wait)
	}
	if _, err := h.Join(ctx, req); err != nil {
		t.Fatalf("the host's own join: %v", err)
	}
	// The host token is not a join secret: without the secret it is refused.
	req.Secret = ""
	_, err := h.Join(ctx, req)
	r.expectRefused(err, 403, api.CodeBadMeetingSecret)
	// Another meeting's host token opens nothing here.
	_, other := r.createHosted(api.CreateRequest{})
	other.Meeting = m.ID
	req.Secret = r.joinReq(m.ID, "x").Secret
	_, err = other.Join(ctx, req)
	r.expectRefused(err, 403, api.CodeMeetingLocked)
}

// seqOf is the seq of the i-th host_settings entry in a meeting's chain.
func seqOf(t *testing.T, r *rig, id string, i int) string {
	t.Helper()
	got := r.audit(id, api.AuditHostSettings)
	if i >= len(got) {
		t.Fatalf("host_settings entries %q", got)
	}
	f := strings.Fields(got[i])
	return strings.TrimSuffix(f[3], ":")
}

func TestLobbyAdmitsOneAndDeniesAnother(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{Lobby: true})
	ctx := context.Background()
	_, annWait, err := r.api.JoinOnce(ctx, m.ID, r.joinReq(m.ID, "Ann"))
	if err != nil || annWait == nil || annWait.Code != api.CodeLobby || annWait.Wait != rigLobbyWait {
		t.Fatalf("Ann's join: %+v %v", annWait, err)
	}
	_, bobWait, err := r.api.JoinOnce(ctx, m.ID, r.joinReq(m.ID, "Bob"))
	if err != nil || bobWait == nil {
		t.Fatalf("Bob's join: %+v %v", bobWait, err)
	}
	lobby, err := h.Lobby(ctx)
	if err != nil || len(lobby.Waiting) != 2 {
		t.Fatalf("lobby %+v %v", lobby, err)
	}
	for i, name := range []string{"Ann", "Bob"} {
		e := lobby.Waiting[i]
		if e.Name != name || e.Location.Country != "DE" || e.Ticket == "" || e.Removed {
			t.Fatalf("lobby entry %d: %+v", i, e)
		}
	}
	// An ask with no decision is held open for the wait, then answered 202.
	start := time.Now()
	req := r.joinReq(m.ID, "Ann")
	req.LobbyTicket = annWait.Ticket
	if _, w, err := r.api.JoinOnce(ctx, m.ID, req); err != nil || w == nil || w.Ticket != annWait.Ticket || time.Since(start) < rigLobbyWait {
		t.Fatalf("ask without a decision: %+v %v after %s", w, err, time.Since(start))
	}
	// A held ask is answered as soon as the host decides.
	type answer struct {
		jr  api.JoinResponse
		err error
	}
	done := make(chan answer, 1)
	go func() {
		jr, err := r.api.Join(ctx, m.ID, req)
		done <- answer{jr, err}
	}()
	if err := h.Admit(ctx, annWait.Ticket, "Ann"); err != nil {
		t.Fatal(err)
	}
	ann := <-done
	if ann.err != nil || ann.jr.Token == "" {
		t.Fatalf("Ann admitted: %+v %v", ann.jr, ann.err)
	}
	if rt := r.routing(m.ID); len(rt.Participants) != 1 || rt.Participants[0].Name != "Ann" {
		t.Fatalf("routing %+v", rt.Participants)
	}
	_, err = r.api.Join(ctx, m.ID, req)
	r.expectRefused(err, 404, api.CodeLobbyExpired) // a ticket lets one join in

	if err := h.Deny(ctx, bobWait.Ticket, "Bob"); err != nil {
		t.Fatal(err)
	}
	bob := r.joinReq(m.ID, "Bob")
	bob.LobbyTicket = bobWait.Ticket
	_, err = r.api.Join(ctx, m.ID, bob)
	r.expectRefused(err, 403, api.CodeLobbyDenied)
	bob.LobbyTicket = "tnosuchticket"
	_, err = r.api.Join(ctx, m.ID, bob)
	r.expectRefused(err, 404, api.CodeLobbyExpired)
	if lobby, _ := h.Lobby(ctx); len(lobby.Waiting) != 0 {
		t.Fatalf("lobby after decisions: %+v", lobby)
	}
	if got := r.audit(m.ID, api.AuditHostAdmit); len(got) != 1 || !strings.Contains(got[0], `"Ann"`) {
		t.Fatalf("admit entries %q", got)
	}
	if got := r.audit(m.ID, api.AuditHostDeny); len(got) != 1 || !strings.Contains(got[0], `"Bob"`) {
		t.Fatalf("deny entries %q", got)
	}
}

func TestLobbyOffLetsWaitingJoinsIn(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{Lobby: true})
	ctx := context.Background()
	_, w, err := r.api.JoinOnce(ctx, m.ID, r.joinReq(m.ID, "Ann"))
	if err != nil || w == nil {
		t.Fatalf("join: %+v %v", w, err)
	}
	if _, err := h.SetSettings(ctx, false, false); err != nil {
		t.Fatal(err)
	}
	req := r.joinReq(m.ID, "Ann")
	req.LobbyTicket = w.Ticket
	if jr, _, err := r.api.JoinOnce(ctx, m.ID, req); err != nil || jr.Token == "" {
		t.Fatalf("ask after the lobby went off: %v", err)
	}
}

func TestReplacesNeedsTheRejoinSecret(t *testing.T) {
	r := startRig(t, "de-fra:DE", "fr-par:FR")
	m := r.createMeeting(policy.Policy{})
	ctx := context.Background()
	a := r.join(m.ID, "DE", "")
	b := r.join(m.ID, "DE", "")
	for _, secret := range []string{"", "wrong", b.RejoinSecret} {
		req := r.joinReq(m.ID, "thief")
		req.Replaces, req.RejoinSecret = a.ParticipantID, secret
		_, err := r.api.Join(ctx, m.ID, req)
		r.expectRefused(err, 403, api.CodeBadRejoinSecret)
	}
	if n := len(r.routing(m.ID).Participants); n != 2 {
		t.Fatalf("%d participants after refused replaces", n)
	}
	moved := r.join(m.ID, "DE", a.ParticipantID) // with a's own rejoin secret
	if moved.RejoinSecret == "" || moved.RejoinSecret == a.RejoinSecret {
		t.Fatalf("the replacement's rejoin secret %q", moved.RejoinSecret)
	}
}

func TestRemovalKicksRecordsAndSendsLaterJoinsToTheLobby(t *testing.T) {
	r := startRig(t, "de-fra:DE", "us-iad:US")
	m, h := r.createHosted(api.CreateRequest{})
	ctx := context.Background()
	pub, _, _ := ed25519.GenerateKey(nil)
	req := r.joinReq(m.ID, "Eve")
	req.Identity = pub
	eve, err := r.api.Join(ctx, m.ID, req)
	if err != nil {
		t.Fatal(err)
	}
	r.keepRejoin(eve)
	r.connect(m.ID, eve)
	bob := r.join(m.ID, "US", "")
	if err := h.Remove(ctx, eve.ParticipantID, nil); err != nil {
		t.Fatal(err)
	}
	r.expectCommands(ofKind(cluster.CommandKick), "kick de-fra "+eve.ParticipantID+" removed")
	r.waitFor("the removal at both nodes", func() bool { return len(r.commands(ofKind(cluster.CommandHost))) >= 2 })
	got := r.commands(ofKind(cluster.CommandHost))
	slices.Sort(got)
	if want := []string{"host de-fra " + eve.ParticipantID + " ", "host us-iad " + eve.ParticipantID + " "}; !slices.Equal(got, want) {
		t.Fatalf("host commands %q, want %q", got, want)
	}
	r.mu.Lock()
	for _, c := range r.cmds {
		if c.cmd.Kind == cluster.CommandHost {
			st, err := hoststmt.Parse(c.cmd.Statement)
			if err != nil || st.Verify(m.HostKey) != nil || st.Participant != eve.ParticipantID || c.cmd.Meeting != m.ID {
				t.Errorf("host command %+v: %v", c.cmd, err)
			}
		}
	}
	r.mu.Unlock()
	if rt := r.routing(m.ID); len(rt.Participants) != 1 || rt.Participants[0].ID != bob.ParticipantID {
		t.Fatalf("routing after removal %+v", rt.Participants)
	}
	r.expectAudit(m.ID, api.AuditHostRemove, eve.ParticipantID+"  host statement seq "+seqOfRemoval(t, r, m.ID)+": removed "+eve.ParticipantID)

	// Back with the same identity: the lobby, flagged, whatever the settings.
	_, w, err := r.api.JoinOnce(ctx, m.ID, req)
	if err != nil || w == nil {
		t.Fatalf("removed identity's join: %+v %v", w, err)
	}
	if lobby, _ := h.Lobby(ctx); len(lobby.Waiting) != 1 || !lobby.Waiting[0].Removed || lobby.Waiting[0].Name != "Eve" {
		t.Fatalf("lobby %+v", lobby)
	}
	// Nor may it come back as its old self.
	back := r.joinReq(m.ID, "Eve")
	back.Replaces, back.RejoinSecret = eve.ParticipantID, eve.RejoinSecret
	_, err = r.api.Join(ctx, m.ID, back)
	r.expectRefused(err, 403, api.CodeBadRejoinSecret)
	// Removing someone who is not in the meeting names the mistake.
	r.expectRefused(h.Remove(ctx, "pnosuchone", nil), 404, api.CodeNotParticipant)
	// Joiners get the removal to apply to their keys.
	carl := r.join(m.ID, "DE", "")
	kinds := []string{}
	for _, st := range carl.Host.Statements {
		kinds = append(kinds, st.Kind)
	}
	if !slices.Equal(kinds, []string{hoststmt.KindPolicy, hoststmt.KindRemove}) {
		t.Fatalf("a joiner's statements %q", kinds)
	}
}

func seqOfRemoval(t *testing.T, r *rig, id string) string {
	t.Helper()
	got := r.audit(id, api.AuditHostRemove)
	if len(got) != 1 {
		t.Fatalf("host_remove entries %q", got)
	}
	return strings.TrimSuffix(strings.Fields(got[0])[4], ":")
}

// forge signs st with key at seq.
func forge(t *testing.T, key ed25519.PrivateKey, seq uint64, st hoststmt.Statement) *hoststmt.Statement {
	t.Helper()
	st.Seq = seq
	if err := st.Sign(key); err != nil {
		t.Fatal(err)
	}
	return &st
}

func TestForgedHostStatementsChangeNothing(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{})
	ctx := context.Background()
	_, other, _ := ed25519.GenerateKey(nil)
	pid := r.join(m.ID, "DE", "").ParticipantID
	now := uint64(time.Now().UnixMilli()) + 1000
	open := effectiveOf(t, policy.Policy{})
	noCN := effectiveOf(t, policy.Policy{BlockedCountries: []string{"CN"}})
	otherPub := other.Public().(ed25519.PublicKey)
	if _, err := h.SetSettings(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	accepted := &hoststmt.Statement{}
	r.waitFor("the settings statement at the node", func() bool { return len(r.commands(ofKind(cluster.CommandHost))) == 1 })
	r.mu.Lock()
	for _, c := range r.cmds {
		if c.cmd.Kind == cluster.CommandHost {
			accepted, _ = hoststmt.Parse(c.cmd.Statement)
		}
	}
	r.mu.Unlock()
	settings := func(st *hoststmt.Statement, locked, lobby bool) error {
		return r.putSettings(m, api.Settings{Locked: locked, Lobby: lobby, Statement: st})
	}
	for name, err := range map[string]error{
		"another key":     settings(forge(t, other, now, hoststmt.Statement{Kind: hoststmt.KindSettings, Locked: true}), true, false),
		"no statement":    settings(nil, true, false),
		"replayed":        settings(accepted, false, true),
		"old seq":         settings(forge(t, h.Key, accepted.Seq-1, hoststmt.Statement{Kind: hoststmt.KindSettings, Locked: true}), true, false),
		"other values":    settings(forge(t, h.Key, now, hoststmt.Statement{Kind: hoststmt.KindSettings, Locked: false}), true, false),
		"another kind":    settings(forge(t, h.Key, now, hoststmt.NewPolicy(0, open, testEnrollmentPub())), true, false),
		"remove forged":   r.remove(m, pid, forge(t, other, now, hoststmt.Statement{Kind: hoststmt.KindRemove, Participant: pid})),
		"remove another":  r.remove(m, pid, forge(t, h.Key, now, hoststmt.Statement{Kind: hoststmt.KindRemove, Participant: "pother"})),
		"remove, no body": r.call(http.MethodDelete, api.MeetingPath(m.ID, "participants", pid), m.HostToken, nil, http.StatusNoContent),
		"policy hash": func() error {
			_, err := r.api.PutPolicy(ctx, m.ID, m.HostToken, api.PolicyRequest{Policy: policy.Policy{BlockedCountries: []string{"CN"}},
				Statement: forge(t, h.Key, now, hoststmt.NewPolicy(0, open, testEnrollmentPub()))})
			return err
		}(),
		"policy, another enrollment key": func() error {
			_, err := r.api.PutPolicy(ctx, m.ID, m.HostToken, api.PolicyRequest{Policy: policy.Policy{BlockedCountries: []string{"CN"}},
				Statement: forge(t, h.Key, now, hoststmt.NewPolicy(0, noCN, otherPub))})
			return err
		}(),
		"policy unsigned": func() error {
			_, err := r.api.SetPolicy(ctx, m.ID, m.HostToken, policy.Policy{BlockedCountries: []string{"CN"}})
			return err
		}(),
	} {
		if s, c := apiCode(err); s != 400 || c != api.CodeBadStatement {
			t.Errorf("%s: %v, want 400 %s", name, err, api.CodeBadStatement)
		}
	}
	got, err := r.api.Meeting(ctx, m.ID)
	if err != nil || got.Locked || !got.Lobby || len(got.Policy.BlockedCountries) != 0 {
		t.Fatalf("meeting after forged statements: %+v %v", got, err)
	}
	if n := len(r.audit(m.ID, api.AuditHostSettings)) + len(r.audit(m.ID, api.AuditHostPolicy)) + len(r.audit(m.ID, api.AuditHostRemove)); n != 1 {
		t.Fatalf("%d host entries, want the one accepted", n)
	}
	if rt := r.routing(m.ID); len(rt.Participants) != 1 || rt.Participants[0].ID != pid {
		t.Fatalf("routing after forged removals %+v", rt.Participants)
	}
	if got := r.commands(ofKind(cluster.CommandKick)); len(got) != 0 {
		t.Fatalf("kicks after forged removals %q", got)
	}
	// Created with a statement that does not hold: no meeting.
	for name, st := range map[string]*hoststmt.Statement{
		"another key":            forge(t, other, now, hoststmt.NewPolicy(0, open, testEnrollmentPub())),
		"other rules":            forge(t, h.Key, now, hoststmt.NewPolicy(0, noCN, testEnrollmentPub())),
		"another enrollment key": forge(t, h.Key, now, hoststmt.NewPolicy(0, open, otherPub)),
		"none":                   nil,
	} {
		_, err := r.api.Create(ctx, api.CreateRequest{HostKey: h.Key.Public().(ed25519.PublicKey), PolicyStatement: st})
		if s, c := apiCode(err); s != 400 || c != api.CodeBadStatement {
			t.Errorf("create, %s: %v", name, err)
		}
	}
	// Without a host key there is no meeting: members could not check
	// where their media goes.
	_, err = r.api.Create(ctx, api.CreateRequest{PolicyStatement: forge(t, h.Key, now, hoststmt.NewPolicy(0, open, testEnrollmentPub()))})
	if s, c := apiCode(err); s != 400 || c != api.CodeNoHostKey {
		t.Fatalf("create without a host key: %v", err)
	}
}

// effectiveOf is p combined with the rig's (empty) floor.
func effectiveOf(t *testing.T, p policy.Policy) policy.Effective {
	t.Helper()
	eff, err := policy.Combine(policy.Policy{}, p)
	if err != nil {
		t.Fatal(err)
	}
	return eff
}

func (r *rig) putSettings(m api.CreatedMeeting, s api.Settings) error {
	return r.call(http.MethodPut, api.MeetingPath(m.ID, "settings"), m.HostToken, s, http.StatusOK)
}

func (r *rig) remove(m api.CreatedMeeting, pid string, st *hoststmt.Statement) error {
	return r.call(http.MethodDelete, api.MeetingPath(m.ID, "participants", pid), m.HostToken, api.Removal{Statement: st}, http.StatusNoContent)
}

// call sends one request with the statement as the test made it.
func (r *rig) call(method, path, tok string, body any, want int) error {
	return apiclient.Raw(context.Background(), r.api, method, path, tok, body, want)
}

func TestOperatorAndMeetingReaders(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, _ := r.createHosted(api.CreateRequest{})
	other := r.createMeeting(policy.Policy{})
	r.join(m.ID, "DE", "")
	ctx := context.Background()
	anon := r.api.WithBearer("")
	for name, err := range map[string]error{
		"audit":                   errOf(anon.Audit(ctx, "")),
		"export":                  anon.AuditExport(ctx, "", &bytes.Buffer{}),
		"report":                  errOf(anon.Report(ctx)),
		"audit with a host token": errOf(anon.WithBearer(m.HostToken).Audit(ctx, "")),
		"report with a secret":    errOf(anon.WithBearer(m.JoinSecret).Report(ctx)),
	} {
		if s, c := apiCode(err); s != 401 || c != api.CodeUnauthorized {
			t.Errorf("%s: %v, want 401", name, err)
		}
	}
	if a, err := r.api.Audit(ctx, ""); err != nil || len(a.Entries) == 0 {
		t.Fatalf("operator's audit: %v", err)
	}
	if _, err := r.api.Report(ctx); err != nil {
		t.Fatalf("operator's report: %v", err)
	}
	if err := r.api.AuditExport(ctx, "", &bytes.Buffer{}); err != nil {
		t.Fatalf("operator's export: %v", err)
	}
	for _, tok := range []string{m.HostToken, m.JoinSecret} {
		c := anon.WithBearer(tok)
		if _, err := c.Routing(ctx, m.ID); err != nil {
			t.Errorf("routing: %v", err)
		}
		if _, err := c.MeetingReport(ctx, m.ID); err != nil {
			t.Errorf("report: %v", err)
		}
		if a, err := c.Audit(ctx, m.ID); err != nil || len(a.Entries) == 0 || slices.ContainsFunc(a.Entries, func(e audit.Entry) bool { return e.Meeting != m.ID }) {
			t.Errorf("audit: %v", err)
		}
		if err := c.AuditExport(ctx, m.ID, &bytes.Buffer{}); err != nil {
			t.Errorf("export: %v", err)
		}
	}
	if _, err := anon.Routing(ctx, m.ID); err == nil {
		t.Fatal("routing without a token")
	} else if s, _ := apiCode(err); s != 401 {
		t.Fatalf("routing without a token: %v", err)
	}
	for name, err := range map[string]error{
		"routing": errOf(anon.WithBearer(other.JoinSecret).Routing(ctx, m.ID)),
		"report":  errOf(anon.WithBearer(other.HostToken).MeetingReport(ctx, m.ID)),
		"audit":   errOf(anon.WithBearer(other.JoinSecret).Audit(ctx, m.ID)),
	} {
		if s, c := apiCode(err); s != 403 || c != api.CodeForbidden {
			t.Errorf("%s with another meeting's token: %v, want 403", name, err)
		}
	}
	for _, path := range []string{api.MeetingPath(m.ID, "report"), api.PathAudit + "?meeting=" + m.ID} {
		if err := apiclient.Raw(ctx, anon, http.MethodGet, path, "", nil, http.StatusOK); err == nil {
			t.Errorf("%s without a token", path)
		} else if s, _ := apiCode(err); s != 401 {
			t.Errorf("%s without a token: %v", path, err)
		}
	}
}

func errOf[T any](_ T, err error) error { return err }

// An admit names its lobby ticket, and the ticket is what lets its holder
// in: it must never reach the nodes (which hand host statements to every
// participant), or any participant could take the admitted guest's place,
// past a lock too. Lobby decisions are audited only.
func TestLobbyDecisionsStayOffTheNodes(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{})
	ctx := context.Background()
	r.join(m.ID, "DE", "")
	if _, err := h.SetSettings(ctx, false, true); err != nil {
		t.Fatal(err)
	}
	_, w, err := r.api.JoinOnce(ctx, m.ID, r.joinReq(m.ID, "Ann"))
	if err != nil || w == nil {
		t.Fatalf("Ann is not in the lobby: %+v %v", w, err)
	}
	if err := h.Admit(ctx, w.Ticket, "Ann"); err != nil {
		t.Fatal(err)
	}
	// A later statement is carried out after the admit: once it is at the
	// node, the admit would be too.
	if _, err := h.SetSettings(ctx, true, true); err != nil {
		t.Fatal(err)
	}
	locked := func(st *hoststmt.Statement) bool { return st.Kind == hoststmt.KindSettings && st.Locked }
	r.waitFor("the lock at the node", func() bool { return r.hostStatementAtNode(locked) })
	if r.hostStatementAtNode(func(st *hoststmt.Statement) bool { return st.Ticket != "" }) {
		t.Fatal("a lobby decision, with its ticket, was sent to a node")
	}
	r.expectAudit(m.ID, api.AuditHostAdmit, `host statement seq `+seqOfKind(t, r, m.ID, api.AuditHostAdmit)+`: admit lobby ticket of "Ann"`)
	// Ann, and only Ann, gets in with it.
	req := r.joinReq(m.ID, "Ann")
	req.LobbyTicket = w.Ticket
	if _, err := r.api.Join(ctx, m.ID, req); err != nil {
		t.Fatalf("Ann with her admitted ticket: %v", err)
	}
}

// A lobby ticket is a newcomer's: it cannot carry a replaces, which would
// otherwise skip the rejoin secret and have the named participant (the
// host, say) kicked as "moved" once the newcomer connects.
func TestTicketCannotCarryReplaces(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m, h := r.createHosted(api.CreateRequest{Lobby: true})
	ctx := context.Background()
	hostJoin, err := h.Join(ctx, r.joinReq(m.ID, "Host"))
	if err != nil {
		t.Fatal(err)
	}
	_, w, err := r.api.JoinOnce(ctx, m.ID, r.joinReq(m.ID, "Mallory"))
	if err != nil || w == nil {
		t.Fatalf("Mallory is not in the lobby: %+v %v", w, err)
	}
	if err := h.Admit(ctx, w.Ticket, "Mallory"); err != nil {
		t.Fatal(err)
	}
	req := r.joinReq(m.ID, "Mallory")
	req.LobbyTicket, req.Replaces = w.Ticket, hostJoin.ParticipantID
	_, err = r.api.Join(ctx, m.ID, req)
	r.expectRefused(err, 400, api.CodeBadRequest)
	for _, p := range r.routing(m.ID).Participants {
		if p.Replaces != "" {
			t.Fatalf("%s is recorded as replacing %s", p.ID, p.Replaces)
		}
	}
}

// hostStatementAtNode reports whether a host command with a statement
// matching ok has been sent to a node.
func (r *rig) hostStatementAtNode(ok func(*hoststmt.Statement) bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.cmds {
		if c.cmd.Kind != cluster.CommandHost || len(c.cmd.Statement) == 0 {
			continue
		}
		if st, err := hoststmt.Parse(c.cmd.Statement); err == nil && ok(st) {
			return true
		}
	}
	return false
}

// seqOfKind is the seq of the first audit entry of kind in a meeting's chain.
func seqOfKind(t *testing.T, r *rig, id, kind string) string {
	t.Helper()
	got := r.audit(id, kind)
	if len(got) == 0 {
		t.Fatalf("no %s entries", kind)
	}
	return strings.TrimSuffix(strings.Fields(got[0])[3], ":")
}

// TestRejoinLandsOnItsOldNodeWhenNoOtherCan: a participant whose
// connection was lost (a node or control-plane restart) joins again
// replacing itself; the node it left is avoided while another can take
// it, and taken again when none can, instead of a refusal.
func TestRejoinLandsOnItsOldNodeWhenNoOtherCan(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	m := r.createMeeting(policy.Policy{})
	first := r.join(m.ID, "DE", "")
	again := r.join(m.ID, "DE", first.ParticipantID)
	if again.Node.ID != "de-fra" {
		t.Fatalf("the rejoin was placed on %s, want de-fra again", again.Node.ID)
	}
}
