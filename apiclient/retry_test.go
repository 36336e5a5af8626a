package apiclient

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
)

// flaky answers 503 with code for the first n requests, then 200 with the
// body it was sent.
type flaky struct {
	mu         sync.Mutex
	n          int
	code       string
	retryAfter string
	bodies     []string
	at         []time.Time
}

func (f *flaky) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.bodies = append(f.bodies, string(b))
	f.at = append(f.at, time.Now())
	fail := len(f.bodies) <= f.n
	f.mu.Unlock()
	if fail {
		if f.retryAfter != "" {
			w.Header().Set("Retry-After", f.retryAfter)
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(api.Errorf(http.StatusServiceUnavailable, f.code, "no control-plane leader (election in progress)"))
		return
	}
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(api.CreatedMeeting{})
}

func TestRetriesUnavailableWithTheSameBody(t *testing.T) {
	f := &flaky{n: 3, code: api.CodeUnavailable}
	srv := httptest.NewServer(f)
	defer srv.Close()
	start := time.Now()
	if _, err := New(srv.URL, nil).Create(context.Background(), api.CreateRequest{Title: "retried"}); err != nil {
		t.Fatal(err)
	}
	if len(f.bodies) != 4 || f.bodies[0] == "" || f.bodies[3] != f.bodies[0] {
		t.Fatalf("requests %q", f.bodies)
	}
	// Back-off: 200, 400, 800 ms.
	if d := time.Since(start); d < 1400*time.Millisecond {
		t.Fatalf("three retries in %s: no back-off", d)
	}
	if g := f.at[3].Sub(f.at[2]); g < 800*time.Millisecond {
		t.Fatalf("third pause %s", g)
	}
}

func TestRetryHonoursRetryAfterAndGivesUp(t *testing.T) {
	f := &flaky{n: 100, code: api.CodeUnavailable, retryAfter: "1"}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := New(srv.URL, nil).WithRetry(2500*time.Millisecond).Create(context.Background(), api.CreateRequest{Title: "x"})
	var e *api.Error
	if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || e.Code != api.CodeUnavailable {
		t.Fatalf("after giving up: %v", err)
	}
	// One second apart, as Retry-After says, within the 2.5 s allowed.
	if len(f.at) != 3 {
		t.Fatalf("%d requests", len(f.at))
	}
	for i := 1; i < len(f.at); i++ {
		if g := f.at[i].Sub(f.at[i-1]); g < time.Second {
			t.Fatalf("pause %s despite Retry-After: 1", g)
		}
	}
}

func TestOtherRefusalsAreNotRetried(t *testing.T) {
	f := &flaky{n: 1, code: api.CodeLobbyFull}
	srv := httptest.NewServer(f)
	defer srv.Close()
	_, err := New(srv.URL, nil).Create(context.Background(), api.CreateRequest{Title: "x"})
	var e *api.Error
	if !errors.As(err, &e) || e.Code != api.CodeLobbyFull || len(f.bodies) != 1 {
		t.Fatalf("%v after %d requests", err, len(f.bodies))
	}
	f = &flaky{n: 1, code: api.CodeUnavailable}
	srv2 := httptest.NewServer(f)
	defer srv2.Close()
	if _, err := New(srv2.URL, nil).WithRetry(0).Create(context.Background(), api.CreateRequest{Title: "x"}); err == nil || len(f.bodies) != 1 {
		t.Fatalf("WithRetry(0): %v after %d requests", err, len(f.bodies))
	}
	// A context that ends stops the retries.
	f = &flaky{n: 100, code: api.CodeUnavailable}
	srv3 := httptest.NewServer(f)
	defer srv3.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := New(srv3.URL, nil).Create(ctx, api.CreateRequest{Title: "x"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("ended context: %v", err)
	}
}
