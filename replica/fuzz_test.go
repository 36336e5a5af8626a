package replica

import (
	"context"
	"encoding/json"
	"testing"

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
