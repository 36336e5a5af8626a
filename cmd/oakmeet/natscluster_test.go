package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bus"
	"github.com/oakmeet/oakmeet/natsauth"
)

func TestReplicaInitCopiesTheSharedSecretsOnly(t *testing.T) {
	from, to := t.TempDir(), filepath.Join(t.TempDir(), "r2")
	// Each replica keeps its own id.
	if err := os.WriteFile(filepath.Join(from, "replica.id"), []byte("r1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// From has never been served: init makes its secrets as serve would,
	// and serve later keeps them.
	if code, out, errOut := runCmd("replica", "init", "--data", to, "--from", from); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
	for _, f := range sharedFiles {
		want, err := os.ReadFile(filepath.Join(from, f.path))
		if f.optional && os.IsNotExist(err) {
			if _, err := os.Stat(filepath.Join(to, f.path)); !os.IsNotExist(err) {
				t.Fatalf("%s copied though %s has none", f.path, from)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(to, f.path))
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%s: %v, differs %v", f.path, err, !bytes.Equal(got, want))
		}
		if fi, _ := os.Stat(filepath.Join(to, f.path)); fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v", f.path, fi.Mode().Perm())
		}
	}
	for _, d := range []string{to, filepath.Join(to, "nats")} {
		if fi, err := os.Stat(d); err != nil || fi.Mode().Perm() != 0o700 {
			t.Fatalf("%s: %v %v", d, err, fi.Mode().Perm())
		}
	}
	// Neither the enrollment key, which may stay offline, nor anything
	// of the JetStream store, nor the replica's id.
	for _, p := range []string{enrollmentKeyFile, "jetstream", "replica.id"} {
		if _, err := os.Stat(filepath.Join(to, p)); !os.IsNotExist(err) {
			t.Fatalf("%s copied: %v", p, err)
		}
	}
	// Both hold one deployment: the same account signs both replicas'
	// users.
	a1, _ := natsauth.LoadOrCreate(natsDir(from))
	a2, _ := natsauth.LoadOrCreate(natsDir(to))
	if a1.Account() != a2.Account() || a1.OperatorJWT() == "" {
		t.Fatal("the replicas hold different NATS accounts")
	}
	// Again is the same; onto another deployment's secrets it refuses and
	// changes nothing.
	if code, _, errOut := runCmd("replica", "init", "--data", to, "--from", from); code != 0 {
		t.Fatal(errOut)
	}
	other := t.TempDir()
	if code, _, errOut := runCmd("replica", "init", "--data", other, "--from", t.TempDir()); code != 0 {
		t.Fatal(errOut)
	}
	before, _ := os.ReadFile(filepath.Join(other, controlKeyFile))
	if code, _, errOut := runCmd("replica", "init", "--data", other, "--from", from); code != 1 || !strings.Contains(errOut, "different") {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if after, _ := os.ReadFile(filepath.Join(other, controlKeyFile)); !bytes.Equal(before, after) {
		t.Fatal("the refused init changed the control key")
	}
	if code, _, _ := runCmd("replica", "init", "--data", from, "--from", from); code != 1 {
		t.Fatal("init onto itself accepted")
	}
}

func TestReplicaCreds(t *testing.T) {
	data := t.TempDir()
	if _, err := natsauth.LoadOrCreate(natsDir(data)); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "r1.creds")
	if code, _, errOut := runCmd("replica", "creds", "--data", data, "--name", "r1", "--out", out); code != 0 {
		t.Fatal(errOut)
	}
	creds, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	u, err := natsauth.ParseCreds(creds)
	if err != nil || u.Name != "oakmeet-control-r1" {
		t.Fatalf("user %q, %v", u.Name, err)
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
	for _, args := range [][]string{
		{"replica", "creds", "--data", data, "--name", "r.1", "--out", out},
		{"replica", "creds", "--data", data, "--out", out},
		{"replica", "creds", "--data", t.TempDir() + "/none", "--name", "r1", "--out", out},
		{"replica", "bogus"},
		{"replica"},
	} {
		if code, _, _ := runCmd(args...); code == 0 {
			t.Fatalf("%v accepted", args)
		}
	}
}

func TestServeNATSClusterFlags(t *testing.T) {
	routes := "nats-route://127.0.0.1:6222,nats-route://127.0.0.1:6223,nats-route://127.0.0.1:6224"
	st, _, _, err := parseServe([]string{"--data", t.TempDir(), "--nats-cluster", "c", "--nats-routes", routes,
		"--nats-cluster-listen", "127.0.0.1:6223", "--nats-server-name", "r2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if st.natsCluster == nil || st.natsCluster.Name != "c" || st.natsCluster.ServerName != "r2" || len(st.natsCluster.Routes) != 3 || st.jsReplicas != 3 {
		t.Fatalf("settings %+v, replicas %d", st.natsCluster, st.jsReplicas)
	}
	st, _, _, err = parseServe([]string{"--data", t.TempDir(), "--nats-cluster", "c", "--nats-routes", routes}, io.Discard)
	if err != nil || !strings.HasSuffix(st.natsCluster.ServerName, "-6222") || natsauth.ValidReplicaName(st.natsCluster.ServerName) != nil {
		t.Fatalf("default server name %q, %v", st.natsCluster.ServerName, err)
	}
	if st, _, _, err = parseServe([]string{"--data", t.TempDir()}, io.Discard); err != nil || st.natsCluster != nil || st.jsReplicas != 1 {
		t.Fatalf("alone: %+v %d %v", st.natsCluster, st.jsReplicas, err)
	}
	if st, _, _, err = parseServe([]string{"--data", t.TempDir(), "--nats", "nats://n:4222", "--js-replicas", "3"}, io.Discard); err != nil || st.jsReplicas != 3 {
		t.Fatalf("external cluster: %d %v", st.jsReplicas, err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--js-replicas", "3"}, "--nats-cluster"},
		{[]string{"--js-replicas", "9", "--nats", "nats://n:4222"}, "1 to 5"},
		{[]string{"--nats-routes", routes}, "need --nats-cluster"},
		{[]string{"--nats-cluster", "c"}, "--nats-routes"},
		{[]string{"--nats-cluster", "c", "--nats-routes", routes, "--nats", "nats://n:4222"}, "embedded"},
		{[]string{"--nats-cluster", "c", "--nats-routes", routes, "--nats-server-name", "a.b"}, "--nats-server-name"},
	} {
		_, _, _, err := parseServe(append([]string{"--data", t.TempDir()}, tc.args...), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error about %q", tc.args, err, tc.want)
		}
	}
}

// Three serve processes' worth, each embedding one member of a 3-server
// NATS cluster on one deployment's secrets: all three come up on R3
// buckets, and a node enrolled from one connects through another's NATS.
func TestServeOnANATSCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts three control planes")
	}
	base := t.TempDir()
	var data, httpAddr, natsAddr, routeAddr, routes []string
	for i := range 3 {
		data = append(data, filepath.Join(base, string(rune('a'+i))))
		httpAddr, natsAddr, routeAddr = append(httpAddr, freeAddr(t)), append(natsAddr, freeAddr(t)), append(routeAddr, freeAddr(t))
		routes = append(routes, "nats-route://"+routeAddr[i])
	}
	for i := 1; i < 3; i++ {
		if code, _, errOut := runCmd("replica", "init", "--data", data[i], "--from", data[0]); code != 0 {
			t.Fatal(errOut)
		}
	}
	var outs []*syncBuffer
	for i := range 3 {
		outs = append(outs, start(t, "serve", "--data", data[i], "--listen", httpAddr[i], "--nats-listen", natsAddr[i],
			"--nats-cluster", "oakmeet", "--nats-cluster-listen", routeAddr[i], "--nats-routes", strings.Join(routes, ","),
			"--nats-server-name", "r"+string(rune('1'+i)), "--nodes", "0", "--log-level", "warn"))
	}
	for i := range 3 {
		c := apiclient.New("http://"+httpAddr[i], nil)
		deadline := time.Now().Add(60 * time.Second)
		for {
			if _, err := c.Health(context.Background()); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("serve %d never answered:\n%s", i, outs[i].String())
			}
			time.Sleep(50 * time.Millisecond) // polling interval, not synchronisation
		}
	}
	enrollment := filepath.Join(t.TempDir(), "de")
	if code, _, errOut := runCmd("enroll", "--data", data[0], "--id", "de-1", "--country", "DE", "--out", enrollment); code != 0 {
		t.Fatal(errOut)
	}
	nodeOut := start(t, "node", "--enrollment", enrollment, "--nats", "nats://"+natsAddr[2]+",nats://"+natsAddr[1],
		"--loopback", "--turn-port", "-1", "--log-level", "warn")
	c := apiclient.New("http://"+httpAddr[1], nil)
	waitNode(t, c, nodeOut, "de-1 certified on another replica", func(n api.Node) bool { return n.ID == "de-1" && n.Healthy && n.Certified })
}

// Routes that stay on this machine go plain; any that leave it get a
// certificate of the deployment's CA that both ends of a route verify.
func TestRouteTLSBeyondLoopbackOnly(t *testing.T) {
	data := t.TempDir()
	plain, err := routeTLS(data, &bus.ClusterConfig{Listen: "127.0.0.1:6222", Routes: []string{"nats-route://127.0.0.1:6223", "nats-route://localhost:6224"}})
	if err != nil || plain != nil {
		t.Fatalf("loopback routes: %v, %v", plain, err)
	}
	for _, cc := range []*bus.ClusterConfig{
		{Listen: "0.0.0.0:6222", Routes: []string{"nats-route://127.0.0.1:6223"}},
		{Listen: "127.0.0.1:6222", Routes: []string{"nats-route://10.0.0.2:6222"}},
	} {
		cfg, err := routeTLS(data, cc)
		if err != nil || cfg == nil || cfg.ClientAuth != tls.RequireAndVerifyClientCert || cfg.RootCAs == nil || len(cfg.Certificates) != 1 {
			t.Fatalf("%+v: %+v, %v", cc, cfg, err)
		}
	}
	// The CA is the deployment's, which replica init hands on.
	if _, err := os.Stat(filepath.Join(natsDir(data), "ca.key")); err != nil {
		t.Fatal(err)
	}
}
