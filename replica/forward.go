package replica

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/cluster"
)

// maxForwarded bounds the forwarded requests the leader handles at once;
// beyond it they are refused with 503 unavailable.
const maxForwarded = 512

// maxBody is the API's own bound on a request body.
const maxBody = 64 << 10

// Messages of the forwarding replica's 503 unavailable answers.
const (
	msgNoLeader = "no control-plane leader (election in progress)"
	msgSilent   = "the control-plane leader stopped answering; the request may or may not have been carried out"
	msgBusy     = "the control-plane leader is handling as many forwarded requests as it may; try again"
	msgBroken   = "the control-plane leader's answer failed authentication (altered, reordered or not the leader's)"
	msgStale    = "the control-plane leader refused the forwarded request as issued outside its replay window (are the replicas' clocks apart?)"
)

// decodeForward turns a forwarded request into the request the leader's
// handler serves, on ctx. Anything a real HTTP server would not have
// accepted is an error.
func decodeForward(ctx context.Context, data []byte) (*http.Request, cluster.ForwardRequest, error) {
	var fr cluster.ForwardRequest
	if err := json.Unmarshal(data, &fr); err != nil {
		return nil, fr, fmt.Errorf("forwarded request: %w", err)
	}
	if !isToken(fr.Method) || !plainText(fr.Host) || strings.ContainsAny(fr.Host, " /") {
		return nil, fr, fmt.Errorf("forwarded request: bad method %q or host %q", fr.Method, fr.Host)
	}
	if !strings.HasPrefix(fr.URL, "/") {
		return nil, fr, fmt.Errorf("forwarded request: URL %q is not a path", fr.URL)
	}
	u, err := url.ParseRequestURI(fr.URL)
	if err != nil {
		return nil, fr, fmt.Errorf("forwarded request: %w", err)
	}
	if len(fr.Body) > maxBody {
		return nil, fr, fmt.Errorf("forwarded request: body larger than %d bytes", maxBody)
	}
	h := make(http.Header, len(fr.Header))
	for k, vs := range fr.Header {
		if !isToken(k) {
			return nil, fr, fmt.Errorf("forwarded request: bad header name %q", k)
		}
		for _, v := range vs {
			if !plainText(v) {
				return nil, fr, fmt.Errorf("forwarded request: bad value of header %q", k)
			}
		}
		h[http.CanonicalHeaderKey(k)] = vs
	}
	req, err := http.NewRequestWithContext(ctx, fr.Method, "http://localhost/", bytes.NewReader(fr.Body))
	if err != nil {
		return nil, fr, fmt.Errorf("forwarded request: %w", err)
	}
	req.URL, req.RequestURI, req.Host, req.Header, req.RemoteAddr = u, fr.URL, fr.Host, h, fr.RemoteAddr
	req.ContentLength = int64(len(fr.Body))
	if fr.TLS {
		// The client reached the forwarding replica over TLS; handlers
		// only ask whether it did.
		req.TLS = &tls.ConnectionState{HandshakeComplete: true, ServerName: req.Host}
	}
	return req, fr, nil
}

// isToken says whether s is an HTTP token (a method, a header name).
func isToken(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// plainText says whether s may be a header value: no control characters
// but tab.
func plainText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// serveForwarded is the leader's handler of forwarded requests: each is
// opened by op (sizes, signature, term and replay window checked first),
// then runs through h on its own goroutine, on the leadership's context (a
// client hanging up at the forwarding replica cancels nothing here).
func (r *Replica) serveForwarded(ctx context.Context, h http.Handler, op *opener) nats.MsgHandler {
	sem := make(chan struct{}, maxForwarded)
	return func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		plain, ak, sr, err := op.open(m.Data)
		if err != nil {
			rf, _ := isRefusal(err)
			r.metrics.refused.WithLabelValues(rf.reason).Inc()
			if !rf.answer {
				r.log.Debug("dropping a forwarded request", "err", err)
				return
			}
			r.log.Warn("refusing a forwarded request", "from", sr.From, "err", err)
			msg := nats.NewMsg(m.Reply)
			msg.Header.Set(cluster.HeaderForwardRefused, rf.reason)
			_ = r.cfg.NATS.PublishMsg(msg)
			return
		}
		out := &forwardWriter{publish: r.publish, key: ak, reply: m.Reply, leader: r.cfg.ID, header: http.Header{}, keepAlive: r.cfg.KeepAlive}
		req, fr, err := decodeForward(ctx, plain)
		if err == nil && fr.From != sr.From {
			err = fmt.Errorf("forwarded request: from %q inside, %q outside", fr.From, sr.From)
		}
		if err != nil {
			r.log.Warn("refusing a forwarded request", "from", sr.From, "err", err)
			out.fail(api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "%s", err))
			return
		}
		select {
		case sem <- struct{}{}:
		default:
			out.fail(api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, msgBusy))
			return
		}
		r.metrics.served.Inc()
		go func() {
			defer func() { <-sem }()
			out.serve(h, req)
		}()
	}
}

// forwardWriter is the ResponseWriter of a forwarded request: it sends
// the status and headers, the body in chunks of at most
// cluster.ForwardChunk, and keep-alives while it has nothing else to send,
// each part sealed under the request's answer key.
type forwardWriter struct {
	publish   func(subject string, data []byte) error
	key       *answerKey
	reply     string
	leader    string
	keepAlive time.Duration
	header    http.Header

	mu       sync.Mutex // guards what follows against the keep-alive goroutine
	status   int
	sentHead bool
	seq      int
	buf      []byte
	lastSend time.Time
	done     bool
}

func (f *forwardWriter) Header() http.Header { return f.header }

func (f *forwardWriter) WriteHeader(code int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == 0 && code >= 200 {
		f.status = code
	}
}

func (f *forwardWriter) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == 0 {
		f.status = http.StatusOK
	}
	f.buf = append(f.buf, p...)
	for len(f.buf) >= cluster.ForwardChunk {
		if err := f.sendLocked(cluster.ForwardResponse{Body: f.buf[:cluster.ForwardChunk], More: true}); err != nil {
			return 0, err
		}
		f.buf = f.buf[cluster.ForwardChunk:]
	}
	return len(p), nil
}

// Flush sends what is buffered, so a streamed answer moves on.
func (f *forwardWriter) Flush() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == 0 {
		f.status = http.StatusOK
	}
	if len(f.buf) > 0 || !f.sentHead {
		_ = f.sendLocked(cluster.ForwardResponse{Body: f.buf, More: true})
		f.buf = nil
	}
}

// sendLocked seals and publishes one part of the answer; f.mu is held.
func (f *forwardWriter) sendLocked(resp cluster.ForwardResponse) error {
	resp.Seq, resp.Leader = f.seq, f.leader
	if !resp.Working && !f.sentHead {
		resp.Status, resp.Header = f.status, f.header.Clone()
		f.sentHead = true
	}
	data, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	part := f.key.seal(uint32(f.seq), data)
	f.seq++
	f.lastSend = time.Now()
	return f.publish(f.reply, part)
}

// serve runs req through h and sends the answer, with keep-alives while
// nothing is sent.
func (f *forwardWriter) serve(h http.Handler, req *http.Request) {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(f.keepAlive / 2)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			f.mu.Lock()
			if !f.done && time.Since(f.lastSend) >= f.keepAlive/2 {
				_ = f.sendLocked(cluster.ForwardResponse{More: true, Working: true})
			}
			f.mu.Unlock()
		}
	})
	aborted := false
	func() {
		defer func() {
			// A handler that aborts (http.ErrAbortHandler) ends the
			// answer; the forwarding replica then aborts its own.
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					panic(p)
				}
				aborted = true
			}
		}()
		h.ServeHTTP(f, req)
	}()
	close(stop)
	wg.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.status == 0 {
		f.status = http.StatusOK
	}
	if aborted {
		// What is buffered is not sent: the answer is not whole.
		_ = f.sendLocked(cluster.ForwardResponse{Aborted: true})
	} else {
		_ = f.sendLocked(cluster.ForwardResponse{Body: f.buf})
	}
	f.buf, f.done = nil, true
}

// fail sends a whole error answer.
func (f *forwardWriter) fail(e *api.Error) {
	f.header.Set("Content-Type", "application/json")
	data, _ := json.Marshal(e)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.status = e.Status
	_ = f.sendLocked(cluster.ForwardResponse{Body: append(data, '\n')})
	f.done = true
}

// sealedOverhead bounds what sealing adds to a forwarded request's JSON.
const sealedOverhead = 512

// forward seals req to the leader, sends it and copies its answer to w.
func (r *Replica) forward(w http.ResponseWriter, req *http.Request) {
	body, berr := readBody(w, req)
	if berr != nil {
		writeError(w, berr)
		return
	}
	fr := cluster.ForwardRequest{From: r.cfg.ID, Method: req.Method, URL: req.URL.RequestURI(), Host: req.Host,
		Header: req.Header, Body: body, RemoteAddr: req.RemoteAddr, TLS: req.TLS != nil}
	plain, err := json.Marshal(fr)
	if err != nil {
		writeError(w, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "request: %s", err))
		return
	}
	if int64(len(plain)+sealedOverhead) > r.cfg.NATS.MaxPayload() || len(plain) > cluster.MaxSealed-sealedOverhead {
		writeError(w, api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBadRequest, "request headers and body too large to forward"))
		return
	}
	ch := make(chan *nats.Msg, 64)
	inbox := r.cfg.NATS.NewRespInbox()
	sub, err := r.cfg.NATS.ChanSubscribe(inbox, ch)
	if err != nil {
		r.metrics.failed.WithLabelValues("nats").Inc()
		writeError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "cannot reach the control-plane leader: %s", err))
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	_ = sub.SetPendingLimits(-1, -1)

	give := time.NewTimer(r.cfg.ForwardWait)
	defer give.Stop()
	pause := 20 * time.Millisecond
	var (
		sealed    []byte
		key       *answerKey
		sealedFor target
		sealedAt  time.Time
	)
	for {
		h, tg, changed := r.forwardTo()
		if h != nil {
			// We became the leader while waiting.
			req.Body = http.NoBody
			if len(body) > 0 {
				req.Body = readCloser{bytes.NewReader(body)}
			}
			w.Header().Set(HeaderLeader, r.cfg.ID)
			h.ServeHTTP(w, req)
			return
		}
		why := api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, msgNoLeader)
		switch {
		case tg.present && tg.err != nil:
			why = api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "%s", tg.err)
		case tg.present:
			// The same bytes go again while the lease stands: a leader
			// that took them once drops the copy as a replay, and its
			// answer comes here.
			if sealed == nil || !tg.same(sealedFor) || time.Since(sealedAt) > r.cfg.ReplayWindow/2 {
				sealedAt = time.Now()
				if sealed, key, err = sealRequest(r.cfg.Key, r.cfg.ID, tg, sealedAt, plain); err != nil {
					writeError(w, api.Errorf(http.StatusInternalServerError, api.CodeInternal, "seal the request: %s", err))
					return
				}
				sealedFor = tg
			}
			if err := r.cfg.NATS.PublishMsg(&nats.Msg{Subject: cluster.SubjectForward, Reply: inbox, Data: sealed}); err != nil {
				r.metrics.failed.WithLabelValues("nats").Inc()
				writeError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, "cannot reach the control-plane leader: %s", err))
				return
			}
			first, got := r.next(ch, key, tg.leader, -1)
			switch got {
			case partGot:
				r.metrics.forwarded.Inc()
				r.copyAnswer(w, ch, key, first)
				return
			case partSilent:
				r.metrics.failed.WithLabelValues("silent").Inc()
				writeError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, msgSilent))
				return
			case partBroken:
				r.metrics.failed.WithLabelValues("broken").Inc()
				writeError(w, api.Errorf(http.StatusBadGateway, api.CodeInternal, msgBroken))
				return
			case partStale:
				r.metrics.failed.WithLabelValues("stale").Inc()
				writeError(w, api.Errorf(http.StatusServiceUnavailable, api.CodeUnavailable, msgStale))
				return
			}
			// Nobody took it, or its term is over: wait for a leader,
			// then send it again.
		}
		select {
		case <-give.C:
			r.metrics.failed.WithLabelValues("no_leader").Inc()
			w.Header().Set("Retry-After", "1")
			writeError(w, why)
			return
		case <-changed:
		case <-time.After(pause):
			pause = min(2*pause, 250*time.Millisecond)
		}
	}
}

type readCloser struct{ *bytes.Reader }

func (readCloser) Close() error { return nil }

// heard says what the leader's next word was.
type heard int

const (
	partGot      heard = iota // a part of the answer
	partNotTaken              // nobody took the request, or its term is over: safe to send again
	partSilent                // nothing for ForwardTimeout
	partBroken                // a part that is not the leader's next: the answer cannot be trusted
	partStale                 // the leader refused it as issued outside its window
)

// next waits for the leader's next word on ch after part seq: a part of
// the answer (Working keep-alives are waited through), opened with key,
// from leader.
func (r *Replica) next(ch <-chan *nats.Msg, key *answerKey, leader string, seq int) (*cluster.ForwardResponse, heard) {
	t := time.NewTimer(r.cfg.ForwardTimeout)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil, partSilent
		case m := <-ch:
			if len(m.Data) == 0 && (m.Header.Get("Status") == "503" || m.Header.Get(cluster.HeaderForwardRefused) != "") {
				if seq >= 0 {
					continue // not an answer to this request anymore
				}
				if m.Header.Get(cluster.HeaderForwardRefused) == "stale" {
					return nil, partStale
				}
				return nil, partNotTaken
			}
			resp, err := openResponse(key, m.Data, seq+1)
			if err == nil && resp.Leader != leader {
				err = fmt.Errorf("forwarded answer: from %q, not %q", resp.Leader, leader)
			}
			if err != nil {
				r.log.Warn("broken forwarded answer", "err", err)
				return nil, partBroken
			}
			seq = resp.Seq
			if resp.Working {
				t.Reset(r.cfg.ForwardTimeout)
				continue
			}
			return &resp, partGot
		}
	}
}

// openResponse opens part seq of a forwarded answer.
func openResponse(key *answerKey, data []byte, seq int) (cluster.ForwardResponse, error) {
	plain, err := key.open(data, uint32(seq))
	if err != nil {
		return cluster.ForwardResponse{}, fmt.Errorf("forwarded answer: %w", err)
	}
	resp, err := parseResponse(plain)
	if err == nil && resp.Seq != seq {
		err = fmt.Errorf("forwarded answer: part %d sealed as %d", resp.Seq, seq)
	}
	return resp, err
}

// parseResponse reads one opened part of a forwarded answer.
func parseResponse(data []byte) (cluster.ForwardResponse, error) {
	var resp cluster.ForwardResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return resp, fmt.Errorf("forwarded answer: %w", err)
	}
	if resp.Seq < 0 || len(resp.Body) > cluster.ForwardChunk {
		return resp, fmt.Errorf("forwarded answer: part %d of %d bytes", resp.Seq, len(resp.Body))
	}
	if !resp.Working && resp.Seq >= 0 && resp.Status != 0 && (resp.Status < 100 || resp.Status > 999) {
		return resp, fmt.Errorf("forwarded answer: status %d", resp.Status)
	}
	return resp, nil
}

// copyAnswer writes the leader's answer, whose first part is first, to w,
// flushing each part as it comes.
func (r *Replica) copyAnswer(w http.ResponseWriter, ch <-chan *nats.Msg, key *answerKey, first *cluster.ForwardResponse) {
	if first.Status == 0 {
		r.metrics.failed.WithLabelValues("broken").Inc()
		writeError(w, api.Errorf(http.StatusBadGateway, api.CodeInternal, "the control-plane leader's answer had no status"))
		return
	}
	if first.Aborted {
		r.metrics.failed.WithLabelValues("aborted").Inc()
		writeError(w, api.Errorf(http.StatusBadGateway, api.CodeInternal, "the control-plane leader's handler gave up on the request"))
		return
	}
	for k, vs := range first.Header {
		if k == HeaderReplica {
			continue
		}
		w.Header()[k] = vs
	}
	w.Header().Set(HeaderLeader, first.Leader)
	w.WriteHeader(first.Status)
	leader, part := first.Leader, first
	rc := http.NewResponseController(w)
	for {
		if part.Aborted {
			r.metrics.failed.WithLabelValues("aborted").Inc()
			panic(http.ErrAbortHandler)
		}
		if len(part.Body) > 0 {
			if _, err := w.Write(part.Body); err != nil {
				return // the client hung up; the leader's work goes on
			}
		}
		if !part.More {
			return
		}
		_ = rc.Flush()
		next, got := r.next(ch, key, leader, part.Seq)
		if got != partGot {
			r.metrics.failed.WithLabelValues("silent").Inc()
			// The status is sent: all that is left is to cut the answer
			// short so the client sees it is not whole.
			panic(http.ErrAbortHandler)
		}
		part = next
	}
}

func readBody(w http.ResponseWriter, req *http.Request) ([]byte, *api.Error) {
	if req.Body == nil {
		return nil, nil
	}
	var buf bytes.Buffer
	_, err := buf.ReadFrom(http.MaxBytesReader(w, req.Body, maxBody))
	if err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
			return nil, api.Errorf(http.StatusRequestEntityTooLarge, api.CodeBadRequest, "request body larger than %d bytes", maxBody)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, api.Errorf(http.StatusRequestTimeout, api.CodeBadRequest, "request body: not received within the server's read timeout")
		}
		return nil, api.Errorf(http.StatusBadRequest, api.CodeBadRequest, "read request body: %s", err)
	}
	return buf.Bytes(), nil
}

func writeError(w http.ResponseWriter, e *api.Error) {
	w.Header().Set("Content-Type", "application/json")
	if e.RetryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(e.RetryAfter))
	}
	w.WriteHeader(e.Status)
	_ = json.NewEncoder(w).Encode(e)
}
