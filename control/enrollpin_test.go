package control

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
	"strconv"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/hoststmt"
	"github.com/oakmeet/oakmeet/nodecert"
	"github.com/oakmeet/oakmeet/policy"
)

// swappingProxy stands in front of the control plane as a compromised
// one would: every policy preview it passes on names enrollment key rogue
// instead of the deployment's.
func swappingProxy(t *testing.T, target string, rogue ed25519.PublicKey) string {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.ModifyResponse = func(res *http.Response) error {
		if res.Request.URL.Path != "/api/policy/preview" || res.StatusCode != http.StatusOK {
			return nil
		}
		body, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		var pv map[string]any
		if err := json.Unmarshal(body, &pv); err != nil {
			return err
		}
		pv["enrollment_key"] = rogue
		body, _ = json.Marshal(pv)
		res.Body = io.NopCloser(bytes.NewReader(body))
		res.ContentLength = int64(len(body))
		res.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	hs := httptest.NewServer(rp)
	t.Cleanup(hs.Close)
	return hs.URL
}

// The meeting's first policy statement fixes its enrollment key: a host
// signs no later policy whose preview names another key (the error names
// both), whether it created the meeting in this process or acts from a new
// one, which takes the key from the meeting's policy_statement after
// verifying it with its own host key; a host key the statement does not
// verify with signs no policy at all.
func TestHostSignsNoPolicyUnderAnotherEnrollmentKey(t *testing.T) {
	r := startRig(t, "de-fra:DE")
	ctx := context.Background()
	m, h := r.createHosted(api.CreateRequest{Policy: policy.Policy{BlockedCountries: []string{"CN"}}})
	got, err := r.api.Meeting(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st := got.PolicyStatement; st == nil || st.Verify(h.Key.Public().(ed25519.PublicKey)) != nil || !bytes.Equal(st.EnrollmentKey, testEnrollmentPub()) {
		t.Fatalf("the meeting's policy statement: %+v", got.PolicyStatement)
	}

	_, rogue, _ := ed25519.GenerateKey(nil)
	rogueKey := rogue.Public().(ed25519.PublicKey)
	proxied := apiclient.New(swappingProxy(t, r.url, rogueKey), nil)
	refuses := func(who string, h *apiclient.Host) {
		t.Helper()
		_, err := h.SetPolicy(ctx, policy.Policy{})
		if !errors.Is(err, apiclient.ErrEnrollmentKeyChanged) ||
			!strings.Contains(err.Error(), nodecert.KeyID(rogueKey)) || !strings.Contains(err.Error(), nodecert.KeyID(testEnrollmentPub())) {
			t.Fatalf("%s signed a policy under the swapped enrollment key, or did not say which keys: %v", who, err)
		}
	}
	honest := h.Client
	h.Client = proxied
	refuses("the creating host", h)
	h.Client = honest
	refuses("a host in a new process", apiclient.NewHost(proxied, m.ID, m.HostToken, h.Key))

	// The honest preview still gets the host's signature, from a new
	// process too; the meeting's statement then still names the key.
	fresh := apiclient.NewHost(r.api, m.ID, m.HostToken, h.Key)
	if _, err := fresh.SetPolicy(ctx, policy.Policy{}); err != nil {
		t.Fatalf("a host in a new process: %v", err)
	}
	if _, err := h.SetPolicy(ctx, policy.Policy{BlockedCountries: []string{"RU"}}); err != nil {
		t.Fatalf("the creating host: %v", err)
	}
	fresh.Client = proxied
	refuses("a host in a new process that pinned the key", fresh)

	// A host key the meeting's statement does not verify with has no
	// enrollment key to sign under.
	otherKey, _ := hoststmt.GenerateKey()
	if _, err := apiclient.NewHost(r.api, m.ID, m.HostToken, otherKey).SetPolicy(ctx, policy.Policy{}); err == nil || !strings.Contains(err.Error(), "refusing to sign") {
		t.Fatalf("a host key the meeting's statement does not verify with: %v", err)
	}
}
