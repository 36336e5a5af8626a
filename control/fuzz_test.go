package control

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/policy"
)

// bodyKinds are the request bodies the control plane's handlers decode,
// each followed by the checks its handler makes before any work that needs
// the deployment (NATS, nodes): what a client's bytes can reach cheaply.
var bodyKinds = []struct {
	name  string
	check func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error
}{
	{"create", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		var req api.CreateRequest
		if e := decodeBody(w, r, &req); e != nil {
			return e
		}
		if _, e := cleanText(req.Title, "title", 200, "Meeting"); e != nil {
			return e
		}
		return effectiveErr(s, req.Policy)
	}},
	{"preview", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		var req policy.Policy
		if e := decodeBody(w, r, &req); e != nil {
			return e
		}
		return effectiveErr(s, req)
	}},
	{"policy", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		req, e := decodePolicyRequest(w, r)
		if e != nil {
			return e
		}
		return effectiveErr(s, req.Policy)
	}},
	{"join", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		var req api.JoinRequest
		if e := decodeBody(w, r, &req); e != nil {
			return e
		}
		_, e := cleanText(req.Name, "name", 64, "Guest")
		return e
	}},
	{"settings", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		return decodeBody(w, r, &api.Settings{})
	}},
	{"removal", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		return decodeBody(w, r, &api.Removal{})
	}},
	{"lobby", func(s *Server, w http.ResponseWriter, r *http.Request) *api.Error {
		return decodeBody(w, r, &api.LobbyDecision{})
	}},
}

func effectiveErr(s *Server, p policy.Policy) *api.Error {
	if _, _, err := s.effective(p); err != nil {
		return toAPIError(err)
	}
	return nil
}

// FuzzRequestBody feeds any bytes as each kind of request body through the
// handlers' decoder and their first checks: the answer is success or an
// api.Error with a 4xx status and a code, never a panic or a 5xx. Seeds:
// testdata/fuzz/FuzzRequestBody (bodies the web app and apiclient send).
// Running the whole handler per input would need NATS round trips (about a
// millisecond each); these checks are the part that reads client bytes.
//
// Rate: hundreds to a couple of thousand inputs per second. The body
// is cheap (~15 µs of CPU uninstrumented), but this package's test binary
// links the NATS server, pion and the rest of the deployment, all of it
// coverage-instrumented, and the fuzzer scans that whole coverage map
// after every input.
func FuzzRequestBody(f *testing.F) {
	f.Add(uint8(0), []byte(`{"title":"Standup","policy":{"allow":["DE","FR"]}}`))
	f.Add(uint8(3), []byte(`{"name":"Ada","location":"GB"}`))
	f.Add(uint8(2), []byte(`{"policy":{"deny":["US"]},"statement":null}`))
	s := &Server{}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		k := bodyKinds[int(kind)%len(bodyKinds)]
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
		e := k.check(s, w, r)
		if e == nil {
			return
		}
		if e.Status < 400 || e.Status >= 500 || e.Code == "" {
			t.Fatalf("%s %q: answered %d %q: %s", k.name, body, e.Status, e.Code, e.Message)
		}
		if _, err := json.Marshal(e); err != nil || strings.TrimSpace(e.Message) == "" {
			t.Fatalf("%s %q: error does not encode: %v", k.name, body, err)
		}
	})
}
