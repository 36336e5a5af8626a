package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/web"
)

// TestJSUnit runs the browser's end-to-end encryption unit tests
// (testdata/jsunit/unit.js) inside Chromium against the app's own modules:
// SFrame and HPKE vectors, the Go side's example key messages, the worked
// examples of docs/E2EE.md, the member state machine and move handling.
func TestJSUnit(t *testing.T) {
	b := newBrowser(t, "unit", browserOpts{})
	mux := http.NewServeMux()
	mux.Handle("/", web.Handler())
	mux.Handle("/test/", http.StripPrefix("/test/", http.FileServer(http.Dir("testdata/jsunit"))))
	mux.HandleFunc("/vectors/sframe.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/sframe/testdata/sframe-rfc9605-vectors.json")
	})
	mux.HandleFunc("/vectors/keymsg.json", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, "../e2ee/keymsg/testdata/example.json")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	b.navigate(srv.URL + "/test/unit.html")
	b.waitJS(30*time.Second, "unit tests to load", `window.__unit`, `document.body.textContent`)
	raw := evalJS[string](b, `window.__unit`)
	var results []struct {
		Name  string `json:"name"`
		OK    bool   `json:"ok"`
		Error string `json:"error"`
		Ms    int    `json:"ms"`
	}
	if err := json.Unmarshal([]byte(raw), &results); err != nil {
		t.Fatalf("results %q: %v", raw, err)
	}
	if len(results) < 10 {
		t.Errorf("only %d JS tests ran", len(results))
	}
	for _, r := range results {
		if r.OK {
			t.Logf("ok   %s (%d ms)", r.Name, r.Ms)
		} else {
			t.Errorf("FAIL %s: %s", r.Name, r.Error)
		}
	}
	b.checkConsole()
}
