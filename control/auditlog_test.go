package control_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"io"
	"net/http"
	"slices"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/audit"
	"github.com/oakmeet/oakmeet/policy"
	"github.com/oakmeet/oakmeet/testcluster"
)

// logVerifier is the deployment's checkpoint verifier, from GET /api/config.
func logVerifier(t *testing.T, c *testcluster.Cluster) note.Verifier {
	v, _ := logKey(t, c)
	return v
}

// logKey is the deployment's checkpoint verifier and its verifier string.
func logKey(t *testing.T, c *testcluster.Cluster) (note.Verifier, string) {
	t.Helper()
	cfg, err := c.API.Config(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	v, err := audit.NewVerifier(cfg.AuditVerifierKey)
	if err != nil {
		t.Fatalf("audit_verifier_key %q: %v", cfg.AuditVerifierKey, err)
	}
	return v, cfg.AuditVerifierKey
}

// checkpoint fetches and opens the newest checkpoint.
func checkpoint(t *testing.T, c *testcluster.Cluster, v note.Verifier) audit.Checkpoint {
	t.Helper()
	signed, err := c.API.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint(signed, v)
	if err != nil {
		t.Fatalf("checkpoint %q: %v", signed, err)
	}
	return cp
}

// waitCheckpoint waits for a checkpoint of at least size entries.
func waitCheckpoint(t *testing.T, c *testcluster.Cluster, v note.Verifier, size int64) audit.Checkpoint {
	t.Helper()
	var cp audit.Checkpoint
	testcluster.WaitFor(t, 5*time.Second, "a checkpoint of the new entries", func() bool {
		cp = checkpoint(t, c, v)
		return cp.Size >= size
	})
	return cp
}

// checkConsistent checks with the server's proof that next extends old.
func checkConsistent(t *testing.T, c *testcluster.Cluster, old, next audit.Checkpoint) {
	t.Helper()
	p, err := c.API.ConsistencyProof(context.Background(), old.Size, next.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckConsistency(old, next, p.Proof); err != nil {
		t.Fatalf("checkpoint of %d after %d: %v", next.Size, old.Size, err)
	}
}

// checkIncluded checks with the server's proof that e is in cp's tree.
func checkIncluded(t *testing.T, c *testcluster.Cluster, cp audit.Checkpoint, e audit.Entry) {
	t.Helper()
	p, err := c.API.InclusionProof(context.Background(), e.Index, cp.Size)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := audit.LeafData(&e)
	if err != nil {
		t.Fatal(err)
	}
	if err := audit.CheckInclusion(cp, e.Index, leaf, p.Proof); err != nil {
		t.Fatalf("entry %d: %v", e.Index, err)
	}
	// The proof is for this leaf alone.
	e.NodeCountry += "X"
	other, _ := audit.LeafData(&e)
	if err := audit.CheckInclusion(cp, e.Index, other, p.Proof); !errors.Is(err, audit.ErrNotIncluded) {
		t.Fatalf("an edited entry %d proved included: %v", e.Index, err)
	}
}

// meetingEntries reads a meeting's whole chain page by page.
func meetingEntries(t *testing.T, cl *apiclient.Client, meeting string, limit int) []audit.Entry {
	t.Helper()
	var out []audit.Entry
	for start := int64(0); ; {
		p, err := cl.AuditEntries(context.Background(), meeting, start, limit)
		if err != nil {
			t.Fatal(err)
		}
		if limit > 0 && len(p.Entries) > limit {
			t.Fatalf("page of %d entries, limit %d", len(p.Entries), limit)
		}
		for _, e := range p.Entries {
			if e.Index >= p.Size || e.Index < start {
				t.Fatalf("entry %d on a page from %d of a log of %d", e.Index, start, p.Size)
			}
		}
		out = append(out, p.Entries...)
		if !p.More {
			return out
		}
		if p.Next <= start {
			t.Fatalf("page from %d says more from %d", start, p.Next)
		}
		start = p.Next
	}
}

func TestCheckpointsProveJoins(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:3])
	v, vkey := logKey(t, c)
	first := checkpoint(t, c, v)

	m := c.CreateMeeting(policy.Policy{})
	var joins []api.JoinResponse
	for _, from := range []string{"DE", "JP", "US"} {
		jr, ae, code := c.Join(m.ID, from)
		if code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
		if jr.Audit.VerifierKey != vkey || jr.Audit.EveryMS != c.Timing.CheckpointEvery.Milliseconds() {
			t.Fatalf("join audit %+v", jr.Audit)
		}
		held, err := audit.OpenCheckpoint([]byte(jr.Audit.Checkpoint), v)
		if err != nil {
			t.Fatalf("join's checkpoint: %v", err)
		}
		if held.Size > jr.Audit.Index+5 {
			t.Fatalf("a join's checkpoint of %d entries is newer than its entry %d and what followed", held.Size, jr.Audit.Index)
		}
		joins = append(joins, jr)
	}
	// Checkpoints grow while entries arrive, each consistent with the last.
	last := first
	for _, jr := range joins {
		cp := waitCheckpoint(t, c, v, jr.Audit.Index+1)
		checkConsistent(t, c, last, cp)
		last = cp
	}

	// Each join's index names its own placement entry, included.
	entries := meetingEntries(t, apiclient.New(c.URL, nil).WithBearer(c.Secret(m.ID)), m.ID, 0)
	byIndex := map[int64]audit.Entry{}
	for _, e := range entries {
		byIndex[e.Index] = e
	}
	newest := waitCheckpoint(t, c, v, entries[len(entries)-1].Index+1)
	checkConsistent(t, c, last, newest)
	last = newest
	for _, jr := range joins {
		e, ok := byIndex[jr.Audit.Index]
		if !ok || e.Kind != audit.KindPlacement || e.Participant != jr.ParticipantID || e.Node != jr.Node.ID || e.NodeCountry != jr.Node.Country {
			t.Fatalf("entry %d is %+v, not the placement of %s on %s", jr.Audit.Index, e, jr.ParticipantID, jr.Node.ID)
		}
		checkIncluded(t, c, last, e)
	}
	// Every entry proves against the newest checkpoint, and against no
	// other size's root.
	for _, e := range entries {
		checkIncluded(t, c, last, e)
	}
	if last.Size > 1 {
		p, err := c.API.InclusionProof(context.Background(), 0, last.Size-1)
		if err != nil {
			t.Fatal(err)
		}
		leaf, _ := audit.LeafData(&entries[0])
		if entries[0].Index == 0 && audit.CheckInclusion(last, 0, leaf, p.Proof) == nil {
			t.Fatal("a proof for another tree size checked")
		}
	}
}

func TestAuditProofsAnswerBadNumbers(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	m := c.CreateMeeting(policy.Policy{})
	if _, ae, code := c.Join(m.ID, "DE"); code != 200 {
		t.Fatalf("join: %d %+v", code, ae)
	}
	v := logVerifier(t, c)
	cp := waitCheckpoint(t, c, v, 2)

	resp, err := http.Get(c.URL + api.PathAuditCheckpoint)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/plain; charset=utf-8" {
		t.Fatalf("checkpoint: %d %q", resp.StatusCode, ct)
	}
	if _, err := audit.OpenCheckpoint(body, v); err != nil {
		t.Fatal(err)
	}

	beyond := "999999"
	for _, tc := range []struct{ path, code string }{
		{"/api/audit/proof?size=2", "bad_number"},
		{"/api/audit/proof?index=0", "bad_number"},
		{"/api/audit/proof?index=x&size=2", "bad_number"},
		{"/api/audit/proof?index=-1&size=2", "bad_number"},
		{"/api/audit/proof?index=0&size=99999999999999999999", "bad_number"},
		{"/api/audit/proof?index=2&size=2", "bad_range"},
		{"/api/audit/proof?index=0&size=0", "bad_range"},
		{"/api/audit/proof?index=0&size=" + beyond, "beyond_log"},
		{"/api/audit/consistency?from=1", "bad_number"},
		{"/api/audit/consistency?from=2&to=1", "bad_range"},
		{"/api/audit/consistency?from=1&to=" + beyond, "beyond_log"},
		{"/api/audit/entries?limit=0", "bad_number"},
		{"/api/audit/entries?start=1.5", "bad_number"},
	} {
		var ae testcluster.APIError
		if code := c.Get(tc.path, &ae); code != 400 || ae.Code != tc.code {
			t.Errorf("GET %s: %d %+v, want 400 %s", tc.path, code, ae, tc.code)
		}
	}
	// Sizes that need no hashes answer an empty proof.
	for _, q := range [][2]int64{{0, cp.Size}, {cp.Size, cp.Size}} {
		p, err := c.API.ConsistencyProof(context.Background(), q[0], q[1])
		if err != nil || p.Proof == nil || len(p.Proof) != 0 {
			t.Fatalf("consistency %v: %+v, %v", q, p, err)
		}
	}
}

func TestAuditEntriesPageAndNeedTheirToken(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:3])
	m1 := c.CreateMeeting(policy.Policy{})
	m2 := c.CreateMeeting(policy.Policy{BlockedCountries: []string{"US"}})
	for _, from := range []string{"DE", "JP"} {
		for _, m := range []string{m1.ID, m2.ID} {
			if _, ae, code := c.Join(m, from); code != 200 {
				t.Fatalf("join: %d %+v", code, ae)
			}
		}
	}
	if _, err := c.Host(m2.ID).SetPolicy(context.Background(), policy.Policy{BlockedCountries: []string{"US", "BR"}}); err != nil {
		t.Fatal(err)
	}

	full, err := c.API.Audit(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	// Entries may still arrive (enforcement audits on its own clock): a
	// later read has an earlier one as its prefix.
	all := meetingEntries(t, c.API, "", 2)
	if len(full.Entries) < 8 || len(all) < len(full.Entries) {
		t.Fatalf("paged %d entries, GET /api/audit %d", len(all), len(full.Entries))
	}
	for i, e := range all[:len(full.Entries)] {
		if e.Index != int64(i) || e.Hash != full.Entries[i].Hash {
			t.Fatalf("entry %d of the log: index %d, hash %s, GET /api/audit's %s", i, e.Index, e.Hash, full.Entries[i].Hash)
		}
	}
	for _, m := range []api.CreatedMeeting{m1, m2} {
		want := slices.DeleteFunc(slices.Clone(all), func(e audit.Entry) bool { return e.Meeting != m.ID })
		for _, tok := range []string{m.JoinSecret, m.HostToken, c.OperatorToken()} {
			got := meetingEntries(t, apiclient.New(c.URL, nil).WithBearer(tok), m.ID, 1)
			if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
				t.Fatalf("meeting %s: paged %d entries, want %d", m.ID, len(got), len(want))
			}
			for _, e := range got[len(want):] {
				if e.Meeting != m.ID || e.Index < int64(len(all)) {
					t.Fatalf("meeting %s: entry %d of %q is not a newer one of the meeting", m.ID, e.Index, e.Meeting)
				}
			}
		}
		// A page from past the meeting's newest entry is empty and
		// points at the log's end; entries the meeting got meanwhile
		// (enforcement audits on its own clock) are newer ones of it.
		start := want[len(want)-1].Index + 1
		testcluster.WaitFor(t, 5*time.Second, "an empty page past the meeting's newest entry", func() bool {
			p, err := c.API.AuditEntries(context.Background(), m.ID, start, 0)
			if err != nil {
				t.Fatalf("page from %d: %v", start, err)
			}
			for _, e := range p.Entries {
				if e.Meeting != m.ID || e.Index < start {
					t.Fatalf("page from %d: entry %d of %q", start, e.Index, e.Meeting)
				}
				start = e.Index + 1
			}
			if len(p.Entries) > 0 {
				return false
			}
			if p.More || p.Next != p.Size {
				t.Fatalf("page past the end: %+v", p)
			}
			return true
		})
	}

	for _, tc := range []struct {
		query, token string
		status       int
		code         string
	}{
		{"?meeting=" + m1.ID, "", 401, "unauthorized"},
		{"?meeting=" + m1.ID, m2.JoinSecret, 403, "forbidden"},
		{"", m1.JoinSecret, 401, "unauthorized"},
		{"", m1.HostToken, 401, "unauthorized"},
		{"?meeting=nosuchmeeting", c.OperatorToken(), 404, "not_found"},
	} {
		var ae testcluster.APIError
		if code := c.Do("GET", api.PathAuditEntries+tc.query, tc.token, nil, &ae); code != tc.status || ae.Code != tc.code {
			t.Errorf("entries%s: %d %+v, want %d %s", tc.query, code, ae, tc.status, tc.code)
		}
	}
}

func TestAuditLogSurvivesRestart(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	m := c.CreateMeeting(policy.Policy{})
	if _, ae, code := c.Join(m.ID, "DE"); code != 200 {
		t.Fatalf("join: %d %+v", code, ae)
	}
	v := logVerifier(t, c)
	before := waitCheckpoint(t, c, v, 2)
	c.RestartControl()

	// The rebuilt tree of the same entries has the same root, and the
	// checkpoint signed at start extends the one held.
	after := checkpoint(t, c, v)
	checkConsistent(t, c, before, after)
	p, err := c.API.ConsistencyProof(context.Background(), before.Size, after.Size)
	if err != nil {
		t.Fatal(err)
	}
	forged := before
	forged.Root[0] ^= 1
	if err := audit.CheckConsistency(forged, after, p.Proof); err == nil {
		t.Fatal("a checkpoint of another root was consistent with the rebuilt log")
	}

	for _, n := range testcluster.World()[:2] {
		c.StartNode(n)
	}
	c.WaitHealthy(2)
	jr, ae, code := c.Join(m.ID, "DE")
	if code != 200 {
		t.Fatalf("join after restart: %d %+v", code, ae)
	}
	if jr.Audit.Index < after.Size {
		t.Fatalf("join after restart has index %d, in a log of %d before it", jr.Audit.Index, after.Size)
	}
	next := waitCheckpoint(t, c, v, jr.Audit.Index+1)
	checkConsistent(t, c, before, next)
	checkConsistent(t, c, after, next)
}

func TestExportsProveAgainstHeldCheckpoints(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:2])
	v, vkey := logKey(t, c)
	m := c.CreateMeeting(policy.Policy{})
	other := c.CreateMeeting(policy.Policy{})
	var held [][]byte
	for _, id := range []string{m.ID, other.ID, m.ID} {
		jr, ae, code := c.Join(id, "DE")
		if code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
		held = append(held, []byte(jr.Audit.Checkpoint))
	}
	waitCheckpoint(t, c, v, 1)
	signed, err := c.API.Checkpoint(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	held = append(held, signed)

	full := getWith(t, c.URL+api.PathAuditExport, c.OperatorToken())
	sum, err := audit.VerifyExport(bytes.NewReader(full), audit.VerifyOptions{Log: v, Checkpoints: held})
	if err != nil {
		t.Fatalf("full export: %v", err)
	}
	if sum.Checkpoints != len(held) || sum.VerifierKey != vkey || int64(sum.Entries) != sum.Checkpoint.Size || sum.Meeting != "" {
		t.Fatalf("full export: %+v", sum)
	}

	pack := getWith(t, c.URL+api.PathAuditExport+"?meeting="+m.ID, c.Secret(m.ID))
	x, err := audit.ReadExport(bytes.NewReader(pack))
	if err != nil {
		t.Fatal(err)
	}
	cp, err := audit.OpenCheckpoint([]byte(x.Header.Checkpoint), v)
	if err != nil {
		t.Fatal(err)
	}
	if x.Header.Meeting != m.ID || len(x.Entries) < 3 || len(x.Proofs) != len(x.Entries) {
		t.Fatalf("pack of %s: meeting %q, %d entries, %d proofs", m.ID, x.Header.Meeting, len(x.Entries), len(x.Proofs))
	}
	for i, e := range x.Entries {
		leaf, _ := audit.LeafData(&e)
		if e.Meeting != m.ID || audit.CheckInclusion(cp, e.Index, leaf, x.Proofs[i]) != nil {
			t.Fatalf("pack entry %d (%s of %q) not proved in the tree of %d", e.Index, e.Kind, e.Meeting, cp.Size)
		}
	}
	if sum, err := audit.VerifyExport(bytes.NewReader(pack), audit.VerifyOptions{Log: v}); err != nil || sum.Meeting != m.ID || sum.Entries != len(x.Entries) {
		t.Fatalf("pack: %+v, %v", sum, err)
	}
	// Another key's log is not this one.
	_, otherKey, _ := ed25519.GenerateKey(nil)
	ov, _ := audit.VerifierKey(v.Name(), otherKey.Public().(ed25519.PublicKey))
	ovv, _ := audit.NewVerifier(ov)
	if _, err := audit.VerifyExport(bytes.NewReader(pack), audit.VerifyOptions{Log: ovv}); err == nil {
		t.Fatal("a pack verified with another key")
	}
}

// A pack cut short and given the trailer of an earlier pack of the same
// entries does not verify: the trailer signs the checkpoint and the
// meeting the pack was made for, not only the heads.
func TestPackTrailerBindsItsCheckpoint(t *testing.T) {
	c := testcluster.Start(t, policy.Policy{}, testcluster.World()[:1])
	v, _ := logKey(t, c)
	m := c.CreateMeeting(policy.Policy{})
	other := c.CreateMeeting(policy.Policy{})
	pack := func() audit.Export {
		t.Helper()
		x, err := audit.ReadExport(bytes.NewReader(getWith(t, c.URL+api.PathAuditExport+"?meeting="+m.ID, c.Secret(m.ID))))
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	if _, ae, code := c.Join(m.ID, "DE"); code != 200 {
		t.Fatalf("join: %d %+v", code, ae)
	}
	early := pack()
	for _, id := range []string{other.ID, m.ID} {
		if _, ae, code := c.Join(id, "DE"); code != 200 {
			t.Fatalf("join: %d %+v", code, ae)
		}
	}
	later := pack()
	n := len(early.Entries)
	if len(later.Entries) <= n || later.Entries[n-1] != early.Entries[n-1] {
		t.Fatalf("packs of %d and %d entries", n, len(later.Entries))
	}
	spliced := later
	spliced.Entries, spliced.Proofs, spliced.Trailer = later.Entries[:n], later.Proofs[:n], early.Trailer
	var buf bytes.Buffer
	if err := audit.WriteExport(&buf, spliced); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(&buf, audit.VerifyOptions{Log: v}); !errors.Is(err, audit.ErrTrailer) {
		t.Fatalf("a later pack cut to an earlier one's entries, with its trailer: %v", err)
	}
	// The pack as served verifies.
	buf.Reset()
	if err := audit.WriteExport(&buf, later); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.VerifyExport(&buf, audit.VerifyOptions{Log: v}); err != nil {
		t.Fatalf("the later pack: %v", err)
	}
}
