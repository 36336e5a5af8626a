package nodecert

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"
)

// fuzzCerts are real certificates of several shapes that seed FuzzParse.
func fuzzCerts(t testing.TB) [][]byte {
	var out [][]byte
	for i, edit := range []func(*Cert){
		func(*Cert) {},
		func(c *Cert) { c.Region = "" },
		func(c *Cert) { c.NodeID, c.Country, c.Region = "jp_tyo_1", "JP", "ap-northeast-1" },
		func(c *Cert) { c.NotAfter = c.NotBefore },
		func(c *Cert) { c.NodeID = "N" },
	} {
		c := testCert()
		edit(&c)
		c.Serial = c.Serial[:30] + string("0123456789"[i]) + "f"
		out = append(out, mustIssue(t, enrollKey, c))
	}
	return append(out, mustIssue(t, otherKey, testCert()))
}

// FuzzParse: Parse never panics; what it accepts survives being issued
// again; and nothing but a certificate the enrollment key issued, byte for
// byte, verifies, since every certificate has exactly one encoding.
func FuzzParse(f *testing.F) {
	issued := fuzzCerts(f)
	for _, c := range issued {
		f.Add(c)
		f.Add(c[:len(c)-1])
	}
	f.Add([]byte(certTag + ".."))
	f.Add([]byte(certTag + ".e30." + b64.EncodeToString(make([]byte, 64))))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("Parse error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if _, err := Issue(otherKey, Cert{
			Serial: c.Serial, NodeID: c.NodeID, Country: c.Country, Region: c.Region,
			IdentityKey: c.IdentityKey, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		}); err != nil {
			t.Fatalf("Parse accepted %+v that Issue refuses: %v", c, err)
		}
		v, err := Verify(pubOf(enrollKey), data, c.NotBefore)
		if err != nil {
			return
		}
		if !reflect.DeepEqual(v, c) {
			t.Fatalf("Verify %+v, Parse %+v", v, c)
		}
		for _, known := range issued {
			if bytes.Equal(known, data) {
				return
			}
		}
		t.Fatalf("verified a certificate that was never issued: %q", data)
	})
}

// FuzzVerifyRevocation: the revocation list parser never panics, its
// errors are the documented ones, and nothing but an issued list verifies.
func FuzzVerifyRevocation(f *testing.F) {
	serial := testCert().Serial
	lists := [][]byte{
		mustIssueRevocation(f, testRevocations(1)),
		mustIssueRevocation(f, testRevocations(2, Revocation{NodeID: "de-fra-1", Serial: serial, At: t0})),
		mustIssueRevocation(f, testRevocations(3,
			Revocation{NodeID: "de-fra-1", At: t0}, Revocation{NodeID: "de-fra-1", Serial: serial, At: t0},
			Revocation{NodeID: "jp-tyo-1", At: t0.Add(time.Hour)})),
	}
	for _, l := range lists {
		f.Add(l, uint64(0))
		f.Add(l, uint64(2))
	}
	f.Add([]byte(revocationsTag+".."), uint64(0))
	f.Fuzz(func(t *testing.T, data []byte, heldSeq uint64) {
		parsed, perr := ParseRevocation(data)
		if perr != nil && !errors.Is(perr, ErrMalformed) {
			t.Fatalf("ParseRevocation error %v does not wrap ErrMalformed", perr)
		}
		held := Revocations{Seq: heldSeq}
		r, err := VerifyRevocation(pubOf(enrollKey), data, held)
		if err != nil {
			for _, want := range []error{ErrMalformed, ErrWrongKey, ErrBadSignature, ErrStale} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("VerifyRevocation error %v is none of the documented ones", err)
		}
		if perr != nil || !reflect.DeepEqual(r, parsed) || r.Seq < heldSeq {
			t.Fatalf("accepted %+v over seq %d; Parse gave %+v, %v", r, heldSeq, parsed, perr)
		}
		for _, known := range lists {
			if bytes.Equal(known, data) {
				return
			}
		}
		t.Fatalf("verified a revocation list that was never issued: %q", data)
	})
}
