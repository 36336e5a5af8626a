package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// createWithCLI runs `meeting create` against c and returns the links it
// printed and the key file it wrote.
func createWithCLI(t *testing.T, c *testcluster.Cluster, extra ...string) (join, host api.Link, keyFile string) {
	t.Helper()
	keyFile = filepath.Join(t.TempDir(), "host.key")
	args := append([]string{"meeting", "create", "--server", c.URL, "--title", "Board", "--host-key", keyFile}, extra...)
	code, out, errOut := runCmd(args...)
	if code != 0 {
		t.Fatalf("meeting create: %d %q %q", code, out, errOut)
	}
	links := map[string]api.Link{}
	for _, name := range []string{"join_url", "host_url"} {
		m := regexp.MustCompile(name + ` (\S+)`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("no %s in %q", name, out)
		}
		l, err := api.ParseLink(m[1])
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		links[name] = l
	}
	return links["join_url"], links["host_url"], keyFile
}

// meeting create makes the host key here, saves it (0600, never over
// another file) and prints both links; the key is the one the links'
// fingerprint names, and the policy and lobby are in force.
func TestMeetingCreate(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	join, host, keyFile := createWithCLI(t, c, "--lobby", "--block", "CN,RU")
	if join.HostToken != "" || host.HostToken == "" || join.Meeting != host.Meeting || join.Secret == "" || join.HostFingerprint != host.HostFingerprint {
		t.Fatalf("links: join %+v host %+v", join, host)
	}
	text, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("host key file mode %v", fi.Mode().Perm())
	}
	key, err := hoststmt.ParseKey(text)
	if err != nil {
		t.Fatal(err)
	}
	if hoststmt.Fingerprint(key.Public().(ed25519.PublicKey)) != join.HostFingerprint {
		t.Fatal("the saved key is not the link's")
	}
	m, err := c.API.Meeting(context.Background(), join.Meeting)
	if err != nil || !m.Lobby || m.Locked || !strings.Contains(strings.Join(m.EffectivePolicy.BlockedCountries, ","), "CN") {
		t.Fatalf("meeting %+v %v", m, err)
	}
	code, _, errOut := runCmd("meeting", "create", "--server", c.URL, "--host-key", keyFile)
	if code != 1 || !strings.Contains(errOut, "exists") {
		t.Fatalf("create over an existing key file: %d %q", code, errOut)
	}
	if again, _ := os.ReadFile(keyFile); string(again) != string(text) {
		t.Fatal("the key file was overwritten")
	}
	if code, _, errOut := runCmd("meeting", "create", "--server", c.URL); code != 1 || !strings.Contains(errOut, "--host-key") {
		t.Fatalf("create without a key file: %d %q", code, errOut)
	}
}

// host locks and unlocks, turns the lobby on, lists who waits, admits one
// and denies another, and removes a participant, each signed with the
// host key; the control plane enforces each.
func TestHostCommands(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithLobbyWait(200*time.Millisecond))
	join, host, keyFile := createWithCLI(t, c)
	ctx := context.Background()
	hostCmd := func(args ...string) (int, string, string) {
		return runCmd(append([]string{"host", "--link", host.String(), "--host-key", keyFile}, args...)...)
	}
	ask := func(name, ticket string) (api.JoinResponse, *api.LobbyWait, error) {
		return c.API.JoinOnce(ctx, join.Meeting, api.JoinRequest{Name: name, Location: api.Hint{Country: "DE"}, Secret: join.Secret, LobbyTicket: ticket})
	}
	refused := func(err error, code string) bool {
		var ae *api.Error
		return errors.As(err, &ae) && ae.Code == code
	}

	if code, out, errOut := hostCmd("lock"); code != 0 || !strings.Contains(out, "locked true, lobby false") {
		t.Fatalf("lock: %d %q %q", code, out, errOut)
	}
	if _, _, err := ask("Ann", ""); !refused(err, api.CodeMeetingLocked) {
		t.Fatalf("join a locked meeting: %v", err)
	}
	if code, out, _ := hostCmd("unlock"); code != 0 || !strings.Contains(out, "locked false") {
		t.Fatalf("unlock: %d %q", code, out)
	}
	if code, out, errOut := hostCmd("lobby", "on"); code != 0 || !strings.Contains(out, "lobby true") {
		t.Fatalf("lobby on: %d %q %q", code, out, errOut)
	}
	_, annWait, err := ask("Ann", "")
	if err != nil || annWait == nil {
		t.Fatalf("Ann's join: %v %v", annWait, err)
	}
	_, bobWait, err := ask("Bob", "")
	if err != nil || bobWait == nil {
		t.Fatalf("Bob's join: %v %v", bobWait, err)
	}
	code, out, _ := hostCmd("lobby", "list")
	if code != 0 || !strings.Contains(out, annWait.Ticket) || !strings.Contains(out, `"Bob"`) {
		t.Fatalf("lobby list: %d %q", code, out)
	}
	code, out, _ = hostCmd("--json", "list")
	var l api.Lobby
	if code != 0 || json.Unmarshal([]byte(out), &l) != nil || len(l.Waiting) != 2 {
		t.Fatalf("lobby list --json: %d %q", code, out)
	}
	if code, out, errOut := hostCmd("admit", annWait.Ticket); code != 0 || !strings.Contains(out, `admitted "Ann"`) {
		t.Fatalf("admit: %d %q %q", code, out, errOut)
	}
	if code, out, _ := hostCmd("deny", bobWait.Ticket); code != 0 || !strings.Contains(out, `denied "Bob"`) {
		t.Fatalf("deny: %d %q", code, out)
	}
	jr, wait, err := ask("Ann", annWait.Ticket)
	if err != nil || wait != nil || jr.ParticipantID == "" {
		t.Fatalf("Ann after admission: %+v %v %v", jr, wait, err)
	}
	if _, _, err := ask("Bob", bobWait.Ticket); !refused(err, api.CodeLobbyDenied) {
		t.Fatalf("Bob after denial: %v", err)
	}
	if code, _, errOut := hostCmd("admit", "no-such-ticket"); code != 1 || !strings.Contains(errOut, "nobody waits") {
		t.Fatalf("admit an unknown ticket: %d %q", code, errOut)
	}

	if code, out, errOut := hostCmd("remove", jr.ParticipantID); code != 0 || !strings.Contains(out, "removed "+jr.ParticipantID) {
		t.Fatalf("remove: %d %q %q", code, out, errOut)
	}
	// Removed: its rejoin secret no longer brings it back.
	_, _, err = c.API.JoinOnce(ctx, join.Meeting, api.JoinRequest{Name: "Ann", Secret: join.Secret, Replaces: jr.ParticipantID, RejoinSecret: jr.RejoinSecret})
	var ae *api.Error
	if !errors.As(err, &ae) || ae.Status != http.StatusForbidden {
		t.Fatalf("replacing a removed participant: %v", err)
	}
}

// host refuses a join link, a key of another meeting, and unknown actions,
// before anything is signed.
func TestHostRefusesWrongLinkOrKey(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	join, host, keyFile := createWithCLI(t, c)
	_, _, otherKey := createWithCLI(t, c)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--link", join.String(), "--host-key", keyFile, "lock"}, "this is a join link"},
		{[]string{"--link", host.String(), "--host-key", otherKey, "lock"}, "not this meeting's host key"},
		{[]string{"--link", host.String(), "--host-key", keyFile, "frobnicate"}, `unknown host action "frobnicate"`},
		{[]string{"--link", host.String(), "--host-key", keyFile, "lobby", "maybe"}, `want on, off or list`},
		{[]string{"--link", host.String(), "--host-key", keyFile, "remove"}, "remove needs one argument"},
		{[]string{"--host-key", keyFile, "lock"}, "--link HOST_URL and --host-key FILE are required"},
	} {
		if code, _, errOut := runCmd(append([]string{"host"}, tc.args...)...); code != 1 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if m, _ := c.API.Meeting(context.Background(), join.Meeting); m.Locked {
		t.Fatal("a refused command locked the meeting")
	}
}

// `host … policy` signs the new policy from a new process: it takes the
// meeting's enrollment key from the meeting's policy statement, verified
// with the host key, and refuses to sign when the control plane's preview
// names another enrollment key, saying which keys; nothing changes then.
func TestHostPolicyKeepsTheMeetingsEnrollmentKey(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, nil)
	_, host, keyFile := createWithCLI(t, c, "--block", "CN")
	code, out, errOut := runCmd("host", "--link", host.String(), "--host-key", keyFile, "--block", "CN,RU", "policy")
	if code != 0 || !strings.Contains(out, "in force") {
		t.Fatalf("host policy: %d %q %q", code, out, errOut)
	}
	m, err := c.API.Meeting(context.Background(), host.Meeting)
	if err != nil || !strings.Contains(strings.Join(m.EffectivePolicy.BlockedCountries, ","), "RU") || m.PolicyStatement == nil {
		t.Fatalf("meeting %+v %v", m, err)
	}
	enroll := m.PolicyStatement.EnrollmentKey

	_, rogue, _ := ed25519.GenerateKey(nil)
	rogueKey := rogue.Public().(ed25519.PublicKey)
	target, _ := url.Parse(c.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.ModifyResponse = func(res *http.Response) error {
		if res.Request.URL.Path != "/api/policy/preview" || res.StatusCode != http.StatusOK {
			return nil
		}
		var pv map[string]any
		if err := json.NewDecoder(res.Body).Decode(&pv); err != nil {
			return err
		}
		pv["enrollment_key"] = rogueKey
		body, _ := json.Marshal(pv)
		res.Body, res.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	proxy := httptest.NewServer(rp)
	t.Cleanup(proxy.Close)
	swapped := host
	swapped.Server = proxy.URL
	code, _, errOut = runCmd("host", "--link", swapped.String(), "--host-key", keyFile, "policy")
	if code != 1 || !strings.Contains(errOut, "refusing to sign") || !strings.Contains(errOut, nodecert.KeyID(rogueKey)) || !strings.Contains(errOut, nodecert.KeyID(enroll)) {
		t.Fatalf("host policy under a swapped enrollment key: %d %q", code, errOut)
	}
	if m2, _ := c.API.Meeting(context.Background(), host.Meeting); m2.PolicyHash != m.PolicyHash {
		t.Fatal("the policy changed")
	}
}
