package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
)

// JoinConfig describes a join-load run: joins offered at a fixed rate,
// open loop, spread over Meetings meetings that the run creates first.
type JoinConfig struct {
	Server         string
	JoinsPerSecond float64
	Duration       time.Duration
	// Meetings is how many meetings the joins are spread over, in turn;
	// zero means DefaultJoinMeetings.
	Meetings int
	// Concurrency bounds the joins in flight at once; zero means
	// DefaultJoinConcurrencyLimit. A join due while all are busy waits
	// for one, and the run then reports it behind its schedule.
	Concurrency int
	// Country is the location hint every join gives.
	Country string
	// HTTPClient, if nil, is one whose connection pool holds Concurrency
	// keep-alive connections to the server.
	HTTPClient *http.Client
	Progress   func(string)
}

// Defaults of JoinConfig.
const (
	DefaultJoinMeetings         = 20
	DefaultJoinConcurrencyLimit = 256
	// lateAfter is how far behind its scheduled time a join may be sent
	// and still count as on schedule.
	lateAfter = 10 * time.Millisecond
	// maxErrorSamples is how many distinct error texts a result keeps.
	maxErrorSamples = 5
)

// JoinLatency is a join latency distribution in milliseconds.
type JoinLatency struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// JoinResult is a join-load run's summary. Field names are part of
// `oakmeet bench --joins-per-second … --json`.
type JoinResult struct {
	// TargetJoinsPerSecond is the rate asked for; Offered is how many
	// joins were sent in the window (every scheduled one is sent).
	TargetJoinsPerSecond float64 `json:"target_joins_per_second"`
	Offered              int     `json:"offered"`
	// Succeeded joins were answered 200 with a token and a node;
	// JoinsPerSecond is Succeeded over DurationS.
	Succeeded      int     `json:"succeeded"`
	JoinsPerSecond float64 `json:"joins_per_second"`
	// DurationS runs from the first scheduled join to the last answer.
	DurationS float64 `json:"duration_s"`
	// JoinLatencyMs is measured over the successful joins from each
	// join's scheduled time (not the time it was sent, so a generator
	// that falls behind shows it) to its answer.
	JoinLatencyMs JoinLatency `json:"join_latency_ms"`
	// Refusals counts answers in the API's error shape by code (a lobby
	// answer counts as "lobby"); Errors counts everything else: transport
	// failures, answers without a code, bad 200 answers.
	Refusals     map[string]int `json:"refusals"`
	Errors       int            `json:"errors"`
	ErrorSamples []string       `json:"error_samples,omitempty"`
	// Late counts joins sent more than 10 ms after their scheduled time
	// (the generator could not keep the schedule); MaxLagMs is the
	// largest such delay.
	Late     int     `json:"late"`
	MaxLagMs float64 `json:"max_lag_ms"`
	Meetings int     `json:"meetings"`
	// ServerCPUS is the CPU time of the process listening on the server's
	// port during the window, when it runs on this machine.
	ServerCPUS *float64 `json:"server_cpu_s,omitempty"`
}

// ScheduleKept says whether every join was sent on time.
func (r *JoinResult) ScheduleKept() bool { return r.Late == 0 }

type joinMeeting struct{ id, secret string }

// joinOutcome is one join's result.
type joinOutcome struct {
	latency time.Duration
	lag     time.Duration
	code    string // refusal code, "" for success or error
	err     error
}

// RunJoins creates the meetings, then offers JoinsPerSecond joins for
// Duration, each a real POST /api/meetings/{id}/join with the meeting's
// secret, on schedule whatever the answers' latency, and summarises the
// answers. The joins' participants never connect to their nodes.
func RunJoins(ctx context.Context, cfg JoinConfig) (*JoinResult, error) {
	switch {
	case cfg.JoinsPerSecond <= 0 || math.IsInf(cfg.JoinsPerSecond, 0) || math.IsNaN(cfg.JoinsPerSecond):
		return nil, fmt.Errorf("%v joins per second: must be a positive number", cfg.JoinsPerSecond)
	case cfg.Duration <= 0:
		return nil, fmt.Errorf("duration %s: must be positive", cfg.Duration)
	case cfg.Meetings < 0:
		return nil, fmt.Errorf("%d meetings: cannot be negative", cfg.Meetings)
	case cfg.Concurrency < 0:
		return nil, fmt.Errorf("concurrency %d: cannot be negative", cfg.Concurrency)
	}
	if cfg.Meetings == 0 {
		cfg.Meetings = DefaultJoinMeetings
	}
	if cfg.Concurrency == 0 {
		cfg.Concurrency = DefaultJoinConcurrencyLimit
	}
	offered := int(math.Round(cfg.JoinsPerSecond * cfg.Duration.Seconds()))
	if offered < 1 {
		return nil, fmt.Errorf("%v joins per second for %s: not one join", cfg.JoinsPerSecond, cfg.Duration)
	}
	if cfg.HTTPClient == nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.MaxIdleConns = cfg.Concurrency
		tr.MaxIdleConnsPerHost = cfg.Concurrency
		cfg.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
		defer tr.CloseIdleConnections()
	}
	progress := cfg.Progress
	if progress == nil {
		progress = func(string) {}
	}
	client := apiclient.New(cfg.Server, cfg.HTTPClient)
	meetings := make([]joinMeeting, cfg.Meetings)
	for i := range meetings {
		m, _, err := client.CreateHosted(ctx, api.CreateRequest{Title: fmt.Sprintf("join bench %d", i)})
		if err != nil {
			return nil, fmt.Errorf("create meeting %d of %d: %w", i+1, cfg.Meetings, err)
		}
		meetings[i] = joinMeeting{m.ID, m.JoinSecret}
	}
	progress(fmt.Sprintf("%d meetings created; offering %d joins at %v/s for %s", cfg.Meetings, offered, cfg.JoinsPerSecond, cfg.Duration))

	cpu := serverCPU(cfg.Server)
	outcomes := make([]joinOutcome, offered)
	slots := make(chan struct{}, cfg.Concurrency)
	var wg sync.WaitGroup
	interval := time.Duration(float64(time.Second) / cfg.JoinsPerSecond)
	cpuStart, cpuOK := cpu()
	start := time.Now()
	for i := range offered {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		m := meetings[i%len(meetings)]
		wg.Go(func() {
			defer func() { <-slots }()
			outcomes[i] = joinOnce(ctx, cfg.HTTPClient, cfg.Server, m, fmt.Sprintf("bench-join-%d", i), cfg.Country, due)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	cpuEnd, cpuEndOK := cpu()
	res := summariseJoins(outcomes, elapsed)
	res.TargetJoinsPerSecond, res.Meetings = cfg.JoinsPerSecond, cfg.Meetings
	if cpuOK && cpuEndOK {
		s := (cpuEnd - cpuStart).Seconds()
		res.ServerCPUS = &s
	}
	return res, nil
}

// joinAnswer is what the load generator reads of a join's answer: it
// checks that a participant was placed and handed a token, not the host
// statements a real client verifies, so that its own decoding does not
// take the CPU the control plane is measured on.
type joinAnswer struct {
	ParticipantID string `json:"participant_id"`
	Token         string `json:"token"`
	Node          struct {
		ID  string `json:"id"`
		URL string `json:"url"`
	} `json:"node"`
}

// joinOnce sends one join, as POST /api/meetings/{id}/join, and reads its
// answer.
func joinOnce(ctx context.Context, hc *http.Client, server string, m joinMeeting, name, country string, due time.Time) joinOutcome {
	sent := time.Now()
	code, err := postJoin(ctx, hc, server, m, name, country)
	return joinOutcome{latency: time.Since(due), lag: sent.Sub(due), code: code, err: err}
}

// postJoin returns the refusal code of a refused join, or an error for
// any answer that is neither a placement nor a refusal.
func postJoin(ctx context.Context, hc *http.Client, server string, m joinMeeting, name, country string) (string, error) {
	body, err := json.Marshal(api.JoinRequest{Name: name, Secret: m.secret, Location: api.Hint{Country: country}})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+api.MeetingPath(m.id, "join"), bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("join meeting %s: read answer: %w", m.id, err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
		var a joinAnswer
		if err := json.Unmarshal(data, &a); err != nil {
			return "", fmt.Errorf("join meeting %s: answer: %w", m.id, err)
		}
		if a.ParticipantID == "" || a.Token == "" || a.Node.ID == "" || a.Node.URL == "" {
			return "", fmt.Errorf("join meeting %s: answer without participant, token or node", m.id)
		}
		return "", nil
	case http.StatusAccepted:
		return api.CodeLobby, nil
	}
	var e api.Error
	if json.Unmarshal(data, &e) != nil || e.Code == "" {
		return "", fmt.Errorf("join meeting %s: %d answer not in the API's error shape: %.200q", m.id, resp.StatusCode, data)
	}
	return e.Code, nil
}

func summariseJoins(outcomes []joinOutcome, elapsed time.Duration) *JoinResult {
	res := &JoinResult{Offered: len(outcomes), Refusals: map[string]int{}, DurationS: elapsed.Seconds()}
	var ms []float64
	for _, o := range outcomes {
		if o.lag > lateAfter {
			res.Late++
		}
		res.MaxLagMs = max(res.MaxLagMs, durationMs(o.lag))
		switch {
		case o.err != nil:
			res.Errors++
			if s := o.err.Error(); len(res.ErrorSamples) < maxErrorSamples && !slices.Contains(res.ErrorSamples, s) {
				res.ErrorSamples = append(res.ErrorSamples, s)
			}
		case o.code != "":
			res.Refusals[o.code]++
		default:
			res.Succeeded++
			ms = append(ms, durationMs(o.latency))
		}
	}
	res.JoinsPerSecond = float64(res.Succeeded) / elapsed.Seconds()
	slices.Sort(ms)
	if len(ms) > 0 {
		res.JoinLatencyMs = JoinLatency{P50: quantile(ms, 0.50), P95: quantile(ms, 0.95), P99: quantile(ms, 0.99), Max: ms[len(ms)-1]}
	}
	return res
}

func durationMs(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile is the nearest-rank q-quantile of sorted samples.
func quantile(sorted []float64, q float64) float64 {
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}
