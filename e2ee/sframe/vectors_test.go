package sframe

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

// vectors mirrors testdata/sframe-rfc9605-vectors.json: the SFrame working
// group's test vectors (RFC 9605 Appendix C) plus the AES-256-CTR-HMAC suites
// registered after it, which this package implements too.
type vectors struct {
	Header []struct {
		KID     uint64 `json:"kid"`
		CTR     uint64 `json:"ctr"`
		Encoded hexBytes
	} `json:"header"`
	AESCTRHMAC    []aeadVector `json:"aes_ctr_hmac"`
	AES256CTRHMAC []aeadVector `json:"aes_256_ctr_hmac"`
	SFrame        []struct {
		Suite     Suite    `json:"cipher_suite"`
		KID       uint64   `json:"kid"`
		CTR       uint64   `json:"ctr"`
		BaseKey   hexBytes `json:"base_key"`
		KeyLabel  hexBytes `json:"sframe_key_label"`
		SaltLabel hexBytes `json:"sframe_salt_label"`
		Secret    hexBytes `json:"sframe_secret"`
		Key       hexBytes `json:"sframe_key"`
		Salt      hexBytes `json:"sframe_salt"`
		Metadata  hexBytes `json:"metadata"`
		Nonce     hexBytes `json:"nonce"`
		AAD       hexBytes `json:"aad"`
		PT        hexBytes `json:"pt"`
		CT        hexBytes `json:"ct"`
	} `json:"sframe"`
}

type aeadVector struct {
	Suite Suite    `json:"cipher_suite"`
	Key   hexBytes `json:"key"`
	Nonce hexBytes `json:"nonce"`
	AAD   hexBytes `json:"aad"`
	PT    hexBytes `json:"pt"`
	CT    hexBytes `json:"ct"`
}

type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

func loadVectors(t *testing.T) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/sframe-rfc9605-vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.Header) == 0 || len(v.AESCTRHMAC) == 0 || len(v.AES256CTRHMAC) == 0 || len(v.SFrame) == 0 {
		t.Fatal("vector file lacks a section")
	}
	return v
}

func TestHeaderVectors(t *testing.T) {
	for _, tc := range loadVectors(t).Header {
		h := Header{KID: tc.KID, CTR: tc.CTR}
		if got := h.Append(nil); !bytes.Equal(got, tc.Encoded) {
			t.Errorf("Append(%+v) = %x, want %x", h, got, tc.Encoded)
		}
		if h.Len() != len(tc.Encoded) {
			t.Errorf("Len(%+v) = %d, want %d", h, h.Len(), len(tc.Encoded))
		}
		// Trailing bytes belong to the ciphertext and must be left alone.
		got, n, err := ParseHeader(append(bytes.Clone(tc.Encoded), 0xaa, 0xbb))
		if err != nil || got != h || n != len(tc.Encoded) {
			t.Errorf("ParseHeader(%x) = %+v, %d, %v; want %+v, %d", tc.Encoded, got, n, err, h, len(tc.Encoded))
		}
	}
}

func testAEADVectors(t *testing.T, vs []aeadVector) {
	for _, tc := range vs {
		t.Run(tc.Suite.String(), func(t *testing.T) {
			p, err := tc.Suite.params()
			if err != nil {
				t.Fatal(err)
			}
			// With CTR 0 the nonce is the salt, so the AEAD is driven directly
			// by the vector's key and nonce.
			k, err := newKeyFromMaterial(p, tc.Key, tc.Nonce)
			if err != nil {
				t.Fatal(err)
			}
			ct := k.seal(nil, 0, tc.AAD, nil, tc.PT)
			if !bytes.Equal(ct, tc.CT) {
				t.Fatalf("seal = %x, want %x", ct, tc.CT)
			}
			pt, err := k.open(nil, 0, tc.AAD, nil, tc.CT)
			if err != nil || !bytes.Equal(pt, tc.PT) {
				t.Fatalf("open = %x, %v; want %x", pt, err, tc.PT)
			}
		})
	}
}

func TestAESCTRHMACVectors(t *testing.T) { testAEADVectors(t, loadVectors(t).AESCTRHMAC) }

func TestAES256CTRHMACVectors(t *testing.T) { testAEADVectors(t, loadVectors(t).AES256CTRHMAC) }

func TestSFrameVectors(t *testing.T) {
	for _, tc := range loadVectors(t).SFrame {
		t.Run(tc.Suite.String(), func(t *testing.T) {
			p, err := tc.Suite.params()
			if err != nil {
				t.Fatal(err)
			}
			if got := label(keyLabel, tc.KID, tc.Suite); got != string(tc.KeyLabel) {
				t.Errorf("key label = %x, want %x", got, tc.KeyLabel)
			}
			if got := label(saltLabel, tc.KID, tc.Suite); got != string(tc.SaltLabel) {
				t.Errorf("salt label = %x, want %x", got, tc.SaltLabel)
			}
			m, err := deriveMaterial(tc.Suite, p, tc.KID, tc.BaseKey)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(m.secret, tc.Secret) || !bytes.Equal(m.key, tc.Key) || !bytes.Equal(m.salt, tc.Salt) {
				t.Fatalf("derived secret/key/salt = %x/%x/%x, want %x/%x/%x", m.secret, m.key, m.salt, tc.Secret, tc.Key, tc.Salt)
			}

			s, err := NewSender(tc.Suite, tc.KID, tc.BaseKey)
			if err != nil {
				t.Fatal(err)
			}
			s.next = tc.CTR
			ct, err := s.Encrypt(nil, tc.Metadata, tc.PT)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ct, tc.CT) {
				t.Fatalf("Encrypt = %x, want %x", ct, tc.CT)
			}
			if !bytes.Equal(s.k.nonce[:], tc.Nonce) {
				t.Errorf("nonce = %x, want %x", s.k.nonce, tc.Nonce)
			}
			hdrLen := Header{KID: tc.KID, CTR: tc.CTR}.Len()
			if aad := append(bytes.Clone(ct[:hdrLen]), tc.Metadata...); !bytes.Equal(aad, tc.AAD) {
				t.Errorf("aad = %x, want %x", aad, tc.AAD)
			}

			r, err := NewReceiver(tc.Suite)
			if err != nil {
				t.Fatal(err)
			}
			if err := r.AddKey(tc.KID, tc.BaseKey); err != nil {
				t.Fatal(err)
			}
			pt, err := r.Decrypt(nil, tc.Metadata, tc.CT)
			if err != nil || !bytes.Equal(pt, tc.PT) {
				t.Fatalf("Decrypt = %x, %v; want %x", pt, err, tc.PT)
			}
		})
	}
}
