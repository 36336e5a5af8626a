package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
)

// report asks the API for the meeting (its id escaped), prints its tables
// or the answer as JSON, and says why a refused request was refused.
func TestReportCommand(t *testing.T) {
	rep := api.MeetingReport{
		Meeting: "m 1", Title: "Board", Created: time.Date(2026, 11, 27, 8, 0, 0, 0, time.UTC), Participants: 2,
		Countries: []api.CountryUsage{{Country: "DE", Nodes: []string{"de-fra"}, Bytes: 1234, Share: 1}},
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.EscapedPath() {
		case "/api/meetings/m%201/report":
			_ = json.NewEncoder(w).Encode(rep)
		case "/api/report":
			_ = json.NewEncoder(w).Encode(api.DeploymentReport{Meetings: 3, Countries: rep.Countries, Computed: rep.Created})
		default:
			w.WriteHeader(http.StatusNotFound)
			_ = json.NewEncoder(w).Encode(api.Errorf(http.StatusNotFound, api.CodeNotFound, "no meeting %q", "m2"))
		}
	}))
	defer srv.Close()

	code, out, errOut := runCmd("report", "--server", srv.URL, "--meeting", "m 1")
	if code != 0 || !strings.Contains(out, `Meeting m 1 "Board", created 2026-11-27T08:00:00Z, 2 participants`) || !strings.Contains(out, "DE       100.0%  1234") {
		t.Fatalf("meeting table: %d %q %q", code, out, errOut)
	}
	code, out, _ = runCmd("report", "--server", srv.URL, "--meeting", "m 1", "--json")
	var back api.MeetingReport
	if err := json.Unmarshal([]byte(out), &back); code != 0 || err != nil || back.Title != "Board" || back.Countries[0].Bytes != 1234 {
		t.Fatalf("meeting JSON: %d %q %v", code, out, err)
	}
	if code, out, _ := runCmd("report", "--server", srv.URL); code != 0 || !strings.Contains(out, "Traffic of 3 meetings by the country of the node that carried it, as of 2026-11-27T08:00:00Z") {
		t.Fatalf("deployment table: %d %q", code, out)
	}
	if code, _, errOut := runCmd("report", "--server", srv.URL, "--meeting", "m2"); code != 1 || !strings.Contains(errOut, `no meeting "m2" (not_found)`) {
		t.Fatalf("refused: %d %q", code, errOut)
	}
	if code, _, errOut := runCmd("report", "--server", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "reach the control plane") {
		t.Fatalf("unreachable: %d %q", code, errOut)
	}
}
