package keymsg

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/example.json")

// example is testdata/example.json: real messages with the private keys
// needed to check them, for other implementations (the browser's) to test
// against. HPKE sealing is randomised, so the file is made once (-update)
// and then only checked.
type example struct {
	Comment      string          `json:"comment"`
	Meeting      string          `json:"meeting"`
	Secret       string          `json:"epoch_secret"`
	Members      []exampleMember `json:"members"`
	Announcement json.RawMessage `json:"announcement"`
	Epoch        json.RawMessage `json:"epoch"`
	Digest       string          `json:"epoch_digest"`
	Ack          json.RawMessage `json:"ack"`
	Commit       json.RawMessage `json:"commit"`
}

type exampleMember struct {
	Participant  string `json:"participant"`
	Name         string `json:"name"`
	IdentitySeed string `json:"identity_seed"`
	HPKEPrivate  string `json:"hpke_private"`
}

func TestExampleFile(t *testing.T) {
	const path = "testdata/example.json"
	if *update {
		m, ms, secret := newTestEpoch(t)
		ex := example{
			Comment: "Epoch 7 of meeting m1 made by alice. identity_seed is the Ed25519 seed (RFC 8032), " +
				"hpke_private the X25519 private key; sealed[i] opens with members[i]'s key to epoch_secret. " +
				"epoch_digest is SHA-256 of the epoch's signed bytes; ack is bob's ack of it, commit alice's commit.",
			Meeting: "m1",
			Secret:  hex.EncodeToString(secret),
		}
		for _, tm := range ms {
			priv, _ := tm.priv.Bytes()
			ex.Members = append(ex.Members, exampleMember{tm.ann.Participant, tm.ann.Name, hex.EncodeToString(tm.id.Seed()), hex.EncodeToString(priv)})
		}
		var err error
		if ex.Announcement, err = Encode(ms[0].ann); err != nil {
			t.Fatal(err)
		}
		if ex.Epoch, err = Encode(m); err != nil {
			t.Fatal(err)
		}
		d := m.Digest()
		ex.Digest = hex.EncodeToString(d[:])
		a, c := newTestAckCommit(t, m, ms)
		if ex.Ack, err = Encode(a); err != nil {
			t.Fatal(err)
		}
		if ex.Commit, err = Encode(c); err != nil {
			t.Fatal(err)
		}
		b, _ := json.MarshalIndent(ex, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ex example
	if err := json.Unmarshal(b, &ex); err != nil {
		t.Fatal(err)
	}
	a, err := Decode(ex.Announcement)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.(*Announcement).Verify(); err != nil {
		t.Fatal(err)
	}
	msg, err := Decode(ex.Epoch)
	if err != nil {
		t.Fatal(err)
	}
	e := msg.(*Epoch)
	if err := e.Verify(); err != nil {
		t.Fatal(err)
	}
	secret, _ := hex.DecodeString(ex.Secret)
	for i, mem := range ex.Members {
		raw, _ := hex.DecodeString(mem.HPKEPrivate)
		priv, err := KEM().NewPrivateKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(priv.PublicKey().Bytes(), e.Roster[i].HPKE) || e.Roster[i].Name != mem.Name {
			t.Fatalf("member %d's key or name is not roster entry %d's", i, i)
		}
		got, err := e.Open(i, priv)
		if err != nil || !bytes.Equal(got, secret) {
			t.Fatalf("member %d opens %x, %v", i, got, err)
		}
	}
	d := e.Digest()
	if hex.EncodeToString(d[:]) != ex.Digest {
		t.Fatalf("epoch digest %x, file says %s", d, ex.Digest)
	}
	msg, err = Decode(ex.Ack)
	if err != nil {
		t.Fatal(err)
	}
	ack := msg.(*Ack)
	if err := ack.Verify(e.Roster[e.Index(ack.Participant)].Identity); err != nil || !bytes.Equal(ack.Digest, d[:]) {
		t.Fatalf("ack: %v, digest %x", err, ack.Digest)
	}
	msg, err = Decode(ex.Commit)
	if err != nil {
		t.Fatal(err)
	}
	commit := msg.(*Commit)
	if err := commit.Verify(e.Leader().Identity); err != nil || !bytes.Equal(commit.Digest, d[:]) {
		t.Fatalf("commit: %v, digest %x", err, commit.Digest)
	}
}
