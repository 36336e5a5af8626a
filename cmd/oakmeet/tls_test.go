package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

func TestTLSFlagErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--data", dir, "--tls-cert", "c.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "--data", dir, "--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"serve", "--data", dir, "--acme-domain", "meet.example"}, "--acme-domain needs --acme-cache"},
		{[]string{"serve", "--data", dir, "--acme-domain", "meet.example", "--acme-cache", dir, "--tls-cert", "c", "--tls-key", "k"}, "give one"},
		{[]string{"serve", "--data", dir, "--acme-http", ":80"}, "are for --acme-domain"},
		{[]string{"serve", "--data", dir, "--demo", "--tls-cert", "c", "--tls-key", "k"}, "--demo serves plain HTTP on loopback"},
		{[]string{"serve", "--data", dir, "--demo", "--listen", "0.0.0.0:8080"}, "serves loopback only"},
		{[]string{"serve", "--data", dir, "--http-read-timeout", "0s"}, "--http-read-timeout 0s: must be positive"},
		{[]string{"serve", "--data", dir, "--tls-cert", filepath.Join(dir, "none.pem"), "--tls-key", filepath.Join(dir, "none.key"), "--listen", "127.0.0.1:0"}, "none.pem"},
		{[]string{"node", "--tls-key", "k.pem"}, "--tls-cert and --tls-key go together"},
		{[]string{"node", "--peer-ca", filepath.Join(dir, "none.pem")}, "--peer-ca"},
		{[]string{"node", "--acme-domain", "x"}, "flag provided but not defined"},
		{[]string{"bot", "--link", "https://127.0.0.1:1/m/abc#s=1&h=x", "--ca", filepath.Join(dir, "none.pem")}, "--ca"},
	} {
		if code, _, errOut := runCmd(tc.args...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: %d %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
}

// serve and node with --tls-cert: the API is HTTPS (HTTP/2), the node
// registers a wss:// URL, and a client trusting the CA sees both.
func TestServeAndNodeOverTLS(t *testing.T) {
	ca := httpservetest.NewCA(t)
	certFile, keyFile, err := ca.Issue().WriteFiles(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	httpAddr, natsAddr := freeAddr(t), freeAddr(t)
	serveOut := start(t, "serve", "--data", data, "--listen", httpAddr, "--nats-listen", natsAddr, "--log-level", "warn",
		"--tls-cert", certFile, "--tls-key", keyFile, "--http-idle-timeout", "5s")
	testcluster.WaitFor(t, 15*time.Second, "serve's banner", func() bool {
		return strings.Contains(serveOut.String(), "Press Ctrl-C to stop.")
	})
	enrolled := filepath.Join(t.TempDir(), "de")
	if code, _, errOut := runCmd("enroll", "--data", data, "--id", "de-1", "--country", "DE", "--out", enrolled); code != 0 {
		t.Fatal(errOut)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	nodeOut := start(t, "node", "--enrollment", enrolled, "--nats", "nats://"+natsAddr, "--loopback", "--turn-port", "-1", "--log-level", "warn",
		"--tls-cert", certFile, "--tls-key", keyFile, "--peer-ca", caFile)
	c := apiclient.New("https://"+httpAddr, ca.Client())
	waitNode(t, c, nodeOut, "de-1 certified on wss://", func(n api.Node) bool {
		return n.ID == "de-1" && n.Healthy && n.Certified && strings.HasPrefix(n.URL, "wss://")
	})
	if !strings.Contains(serveOut.String(), "is running at https://"+httpAddr) {
		t.Errorf("banner: %s", serveOut.String())
	}
	resp, err := ca.Client().Get("https://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.Header.Get("Strict-Transport-Security") == "" {
		t.Errorf("served over %s, HSTS %q", resp.Proto, resp.Header.Get("Strict-Transport-Security"))
	}
}

// bot --ca joins a meeting whose control plane and node speak TLS with a
// certificate from that CA; without it the bot is refused the connection.
func TestBotTrustsItsCA(t *testing.T) {
	ca := httpservetest.NewCA(t)
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1], testcluster.WithTLS(ca))
	m := c.CreateMeeting(policy.Policy{})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, ca.PEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := runCmd("bot", "--link", m.JoinURL, "--duration", "1s"); code == 0 || !strings.Contains(errOut, "certificate") {
		t.Errorf("bot without --ca: %d %q", code, errOut)
	}
	code, out, errOut := runCmd("bot", "--link", m.JoinURL, "--ca", caFile, "--duration", "1s", "--json")
	if code != 0 {
		t.Fatalf("bot --ca: %d %q", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var rep struct {
		ParticipantID string `json:"participant_id"`
		Node          struct{ ID string }
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &rep); err != nil || rep.ParticipantID == "" || rep.Node.ID != "de-fra" {
		t.Fatalf("bot report %q: %v", out, err)
	}
}

// serve's --http-read-timeout and --http-idle-timeout reach its server: a
// dripped meeting creation is answered 408 in the API's error shape once
// the read timeout passes, and an idle connection is closed.
func TestServeTimeouts(t *testing.T) {
	const limit = 300 * time.Millisecond
	httpAddr := freeAddr(t)
	out := start(t, "serve", "--demo", "--nodes", "0", "--data", t.TempDir(), "--listen", httpAddr, "--log-level", "warn",
		"--http-read-timeout", limit.String(), "--http-idle-timeout", limit.String())
	testcluster.WaitFor(t, 15*time.Second, "serve's banner", func() bool { return strings.Contains(out.String(), "Press Ctrl-C to stop.") })

	conn, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	body := `{"title":"slow"}`
	fmt.Fprintf(conn, "POST /api/meetings HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body)+100, body)
	// The last 100 bytes never come: the server stops waiting.
	_ = conn.SetReadDeadline(time.Now().Add(20 * limit))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("after %s: %v", time.Since(began), err)
	}
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if took := time.Since(began); resp.StatusCode != http.StatusRequestTimeout || e.Code == "" || took > 5*limit {
		t.Fatalf("slow body: %d %+v after %s", resp.StatusCode, e, took)
	}

	idle, err := net.Dial("tcp", httpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer idle.Close()
	fmt.Fprint(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(idle)
	if resp, err = http.ReadResponse(br, nil); err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	answered := time.Now()
	_ = idle.SetReadDeadline(time.Now().Add(20 * limit))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) || time.Since(answered) > 5*limit {
		t.Fatalf("idle connection: %v after %s", err, time.Since(answered))
	}
}
