package securitycode

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"testing"

	"github.com/oakmeet/oakmeet/e2ee/identity"
	"github.com/oakmeet/oakmeet/e2ee/keymsg"
)

// entry makes a deterministic roster entry: identity seed n repeated, HPKE
// private key n+100 repeated.
func entry(t *testing.T, meeting, pid, name string, n byte) keymsg.Entry {
	t.Helper()
	id, err := identity.FromSeed(bytes.Repeat([]byte{n}, 32))
	if err != nil {
		t.Fatal(err)
	}
	priv, err := keymsg.KEM().NewPrivateKey(bytes.Repeat([]byte{n + 100}, 32))
	if err != nil {
		t.Fatal(err)
	}
	a, err := keymsg.NewAnnouncement(meeting, pid, name, id, priv.PublicKey().Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return a.Entry
}

// TestWorkedExample is the example in docs/E2EE.md; if it changes, the
// document and every other implementation must change with it.
func TestWorkedExample(t *testing.T) {
	roster := []keymsg.Entry{entry(t, "demo", "carol", "Carol", 3), entry(t, "demo", "alice", "Alice", 1), entry(t, "demo", "bob", "Bob", 2)}
	for _, e := range roster {
		t.Logf("%s identity %x hpke %x", e.Participant, e.Identity, e.HPKE)
	}
	in := Input("demo", workedExamplePolicy, roster)
	t.Logf("input %x", in)
	const wantInput = "6f616b6d6565742d653265652d763220736563757269747920636f646500" + // label, 0x00
		"000464656d6f" + // lp16("demo")
		"0040" + "30303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030303030" + // lp16(policy hash)
		"0003" + // 3 entries
		"0005616c696365" + "0005416c696365" + "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c" + "fb41b1fcf75c1227fa08876056a5ed07ac44fe0c116ec2de80b8e523959d7824" +
		"0003626f62" + "0003426f62" + "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394" + "219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf424" +
		"00056361726f6c" + "00054361726f6c" + "ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1" + "6ca3bf39d976ab36a808531bd7ec2e4b4f8aae3a90134534d50f411d377a2c05"
	if got := hex.EncodeToString(in); got != wantInput {
		t.Fatalf("input\n%s\nwant\n%s", got, wantInput)
	}
	h := sha256.Sum256(in)
	t.Logf("h %x", h)
	code := Compute("demo", workedExamplePolicy, roster)
	t.Logf("code %s", code)
	if got, want := code.String(), workedExampleCode; got != want {
		t.Fatalf("code %s, want %s", got, want)
	}
}

const workedExampleCode = "42688 83323 55770 99121 67783 82360 49570 38199"

// workedExamplePolicy is the policy hash of the worked example: 64 zeros,
// in the hex form policy hashes have.
const workedExamplePolicy = "0000000000000000000000000000000000000000000000000000000000000000"

func TestProperties(t *testing.T) {
	a, b, c := entry(t, "m", "alice", "Alice", 1), entry(t, "m", "bob", "Bob", 2), entry(t, "m", "carol", "Carol", 3)
	const pol = "policy-1"
	base := Compute("m", pol, []keymsg.Entry{a, b, c})
	if got := Compute("m", pol, []keymsg.Entry{c, a, b}); got != base {
		t.Error("roster order changes the code")
	}
	if !regexp.MustCompile(`^(\d{5} ){7}\d{5}$`).MatchString(base.String()) {
		t.Errorf("format %q", base)
	}
	swapped := b
	swapped.HPKE = c.HPKE
	otherID := b
	otherID.Identity = c.Identity
	renamed := b
	renamed.Participant = "bobby"
	otherName := b
	otherName.Name = "Robert"
	noName := b
	noName.Name = ""
	for name, roster := range map[string][]keymsg.Entry{
		"hpke key swapped":       {a, swapped, c},
		"identity swapped":       {a, otherID, c},
		"participant id changed": {a, renamed, c},
		"display name changed":   {a, otherName, c},
		"display name emptied":   {a, noName, c},
		"member left":            {a, c},
		"member joined":          {a, b, c, entry(t, "m", "dave", "Dave", 4)},
	} {
		if Compute("m", pol, roster) == base {
			t.Errorf("%s: code unchanged", name)
		}
	}
	if Compute("m2", pol, []keymsg.Entry{a, b, c}) == base {
		t.Error("meeting id does not change the code")
	}
	if Compute("m", "policy-2", []keymsg.Entry{a, b, c}) == base {
		t.Error("policy hash does not change the code")
	}
	if Compute("m", "", []keymsg.Entry{a, b, c}) == base {
		t.Error("no policy hash gives the code of one")
	}
	// The name is length-prefixed apart from the id: moving bytes between
	// them changes the code.
	n1, n2 := b, b
	n1.Participant, n1.Name = "bo", "bX"
	n2.Participant, n2.Name = "bob", "X"
	if Compute("m", pol, []keymsg.Entry{a, n1}) == Compute("m", pol, []keymsg.Entry{a, n2}) {
		t.Error("ambiguous encoding of id and name")
	}
	// Length prefixes keep ids from running into each other.
	x, y := a, b
	x.Participant, y.Participant = "ab", "c"
	x2, y2 := a, b
	x2.Participant, y2.Participant = "a", "bc"
	if Compute("m", pol, []keymsg.Entry{x, y}) == Compute("m", pol, []keymsg.Entry{x2, y2}) {
		t.Error("ambiguous encoding of participant ids")
	}
}

func TestStringPads(t *testing.T) {
	if got := (Code{0, 1, 99999, 12, 345, 6789, 10000, 5}).String(); got != "00000 00001 99999 00012 00345 06789 10000 00005" {
		t.Errorf("String = %q", got)
	}
}
