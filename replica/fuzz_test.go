package replica

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/cluster"
)

// What a forwarding replica sends and what the leader answers are parsed
// from the bus: neither may panic on any input, and what they accept is
// well formed.
func FuzzDecodeForward(f *testing.F) {
	good, _ := json.Marshal(cluster.ForwardRequest{From: "r1", Method: "POST", URL: "/api/meetings?x=1", Host: "meet.example.org",
		Header: map[string][]string{"Content-Type": {"application/json"}}, Body: []byte(`{}`), RemoteAddr: "192.0.2.1:5000", TLS: true})
	f.Add(good)
	f.Add([]byte(`{"method":"GET","url":"//evil","host":"a"}`))
	f.Add([]byte(`{"method":"G E T","url":"/","host":"a"}`))
	f.Add([]byte(`{"method":"GET","url":"/","host":"a","header":{"X\r\nY":["1"]}}`))
	f.Add([]byte(`{"seq":0,"status":200,"body":"aGk=","more":true}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		req, fr, err := decodeForward(context.Background(), data)
		if err == nil {
			if req.Method != fr.Method || req.URL == nil || req.URL.Path == "" || req.URL.Path[0] != '/' || req.ContentLength != int64(len(fr.Body)) {
				t.Fatalf("accepted %q as %s %v", data, req.Method, req.URL)
			}
			for k, vs := range req.Header {
				if !isToken(k) {
					t.Fatalf("header name %q", k)
				}
				for _, v := range vs {
					if !plainText(v) {
						t.Fatalf("header value %q", v)
					}
				}
			}
		}
		resp, err := parseResponse(data)
		if err == nil && (resp.Seq < 0 || len(resp.Body) > cluster.ForwardChunk) {
			t.Fatalf("accepted answer part %+v", resp)
		}
	})
}

// A sealed request and a sealed answer part are parsed from the bus before
// any cryptography: no input may panic the leader or the follower, a
// request accepted re-encodes to the same bytes, and none opens without
// the control key's signature.
func FuzzSealedEnvelope(f *testing.F) {
	_, key, _ := ed25519.GenerateKey(nil)
	tk, err := newTermKey(3)
	if err != nil {
		f.Fatal(err)
	}
	l := signLease(key, cluster.Lease{Replica: "r1", Term: 3}, tk)
	tg := leaseTarget(key.Public().(ed25519.PublicKey), l)
	plain, _ := json.Marshal(cluster.ForwardRequest{From: "r2", Method: "GET", URL: "/api/config", Host: "x"})
	good, ak, err := sealRequest(key, "r2", tg, time.Now(), plain)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add(ak.seal(0, []byte(`{"seq":0,"status":200}`)))
	f.Add([]byte("OMQ1"))
	f.Add([]byte("OMA1\x00\x00\x00\x00"))
	_, other, _ := ed25519.GenerateKey(nil)
	f.Fuzz(func(t *testing.T, data []byte) {
		if sr, err := cluster.ParseSealedRequest(data); err == nil {
			if !bytes.Equal(sr.Marshal(), data) {
				t.Fatalf("%q re-encodes as %q", data, sr.Marshal())
			}
		}
		op := newOpener("r1", tk, other.Public().(ed25519.PublicKey), time.Minute, time.Now)
		if _, _, _, err := op.open(data); err == nil {
			t.Fatalf("opened %q without the signing key", data)
		}
		if p, err := cluster.ParseSealedPart(data); err == nil && !bytes.Equal(p.Marshal(), data) {
			t.Fatalf("part %q re-encodes as %q", data, p.Marshal())
		}
		if plain, err := ak.open(data, 0); err == nil {
			_, _ = parseResponse(plain)
		}
	})
}
