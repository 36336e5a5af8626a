package httpserve_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/oakmeet/oakmeet/httpserve"
	"github.com/oakmeet/oakmeet/httpserve/httpservetest"
)

// start serves h with timeouts t (and TLS when given) until the test ends.
func start(t *testing.T, h http.Handler, tm httpserve.Timeouts, tlsConf *tls.Config, http1Only bool) *httpserve.Server {
	t.Helper()
	s, err := httpserve.Listen("127.0.0.1:0", httpserve.Config{Handler: h, Timeouts: tm, TLS: tlsConf, HTTP1Only: http1Only})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve() }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

func readBody(w http.ResponseWriter, r *http.Request) {
	var v map[string]any
	if err := httpserve.DecodeJSON(w, r, &v, 1<<20); err != nil {
		var be *httpserve.BodyError
		errors.As(err, &be)
		http.Error(w, err.Error(), be.Status)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// A body dripped a byte at a time is cut off once the read timeout
// passes, long before the client would finish it.
func TestSlowBodyIsCutOff(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	s := start(t, http.HandlerFunc(readBody), httpserve.Timeouts{Read: readTimeout}, nil, false)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const bodyLen = 200
	began := time.Now()
	fmt.Fprintf(conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n{", bodyLen)
	// Drip the rest at 50 bytes a second (4 s in all) while reading
	// what the server says.
	answered := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(conn)
		answered <- string(b)
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for sent := 1; sent < bodyLen; sent++ {
		select {
		case got := <-answered:
			took := time.Since(began)
			if strings.HasPrefix(got, "HTTP/1.1 201") {
				t.Fatalf("a dripped body was accepted: %q", got)
			}
			if took > 5*readTimeout {
				t.Fatalf("the connection lasted %s, read timeout %s", took, readTimeout)
			}
			t.Logf("cut off after %s, %d of %d bytes sent: %.40q", took, sent, bodyLen, got)
			return
		case <-tick.C:
			if _, err := conn.Write([]byte(" ")); err != nil {
				// Reset by the server: cut off.
				continue
			}
		}
	}
	t.Fatalf("the whole dripped body (%s) went in without the server closing the connection", time.Since(began))
}

// An idle keep-alive connection is closed once the idle timeout passes.
func TestIdleConnectionIsClosed(t *testing.T) {
	const idle = 200 * time.Millisecond
	s := start(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") }),
		httpserve.Timeouts{Idle: idle}, nil, false)
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	answered := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(20 * idle))
	_, err = br.ReadByte()
	took := time.Since(answered)
	if !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection: read gave %v after %s, want the server to close it", err, took)
	}
	if took < idle/2 || took > 5*idle {
		t.Fatalf("idle connection closed after %s, idle timeout %s", took, idle)
	}
}

// A WebSocket lives on well past the write and read timeouts that bound
// the request that opened it.
func TestWebSocketOutlivesRequestTimeouts(t *testing.T) {
	const limit = 100 * time.Millisecond
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, b, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if err := c.Write(context.Background(), typ, b); err != nil {
				return
			}
		}
	})
	s := start(t, echo, httpserve.Timeouts{Read: limit, Write: limit, Idle: limit}, nil, false)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+s.Addr().String()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	until := time.Now().Add(5 * limit)
	for i := 0; time.Now().Before(until) || i < 2; i++ {
		// The connection has to stay open across the timeouts, so the
		// test lets time pass between messages.
		<-time.After(limit)
		msg := fmt.Sprintf("m%d", i)
		if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
			t.Fatalf("write %s after %s: %v", msg, time.Since(until.Add(-5*limit)), err)
		}
		_, b, err := c.Read(ctx)
		if err != nil || string(b) != msg {
			t.Fatalf("echo of %s: %q, %v", msg, b, err)
		}
	}
}

// With TLS the server speaks HTTP/2 to clients that can, and HTTPS only;
// HTTP1Only keeps it to HTTP/1.1.
func TestTLSAndHTTP2(t *testing.T) {
	ca := httpservetest.NewCA(t)
	leaf := ca.Issue()
	proto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.Proto) })
	for _, tc := range []struct {
		http1Only bool
		want      string
	}{{false, "HTTP/2.0"}, {true, "HTTP/1.1"}} {
		s := start(t, proto, httpserve.Timeouts{}, leaf.ServerTLS(), tc.http1Only)
		if !strings.HasPrefix(s.URL(), "https://") {
			t.Fatalf("URL %s", s.URL())
		}
		cl := ca.Client()
		cl.Transport.(*http.Transport).ForceAttemptHTTP2 = true
		resp, err := cl.Get(s.URL() + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		cl.CloseIdleConnections()
		if string(b) != tc.want {
			t.Errorf("http1Only=%v: served over %s, want %s", tc.http1Only, b, tc.want)
		}
		// Plain HTTP on the TLS port gets no answer from the handler.
		resp, err = http.Get("http://" + s.Addr().String() + "/")
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) == "HTTP/1.1" {
				t.Errorf("plain HTTP was served on a TLS server")
			}
		}
		// A client that does not trust the CA is refused.
		if _, err := http.Get(s.URL() + "/"); err == nil {
			t.Errorf("a client without the test CA connected")
		}
	}
}

func TestCertFilesErrors(t *testing.T) {
	if _, err := httpserve.CertFiles("", "k"); err == nil {
		t.Error("cert without key accepted")
	}
	dir := t.TempDir()
	if _, err := httpserve.CertFiles(dir+"/none.pem", dir+"/none.key"); err == nil || !strings.Contains(err.Error(), "none.pem") {
		t.Errorf("missing files: %v", err)
	}
	leaf := httpservetest.NewCA(t).Issue()
	cert, key, err := leaf.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpserve.CertFiles(key, cert); err == nil {
		t.Error("swapped cert and key accepted")
	}
	if _, err := httpserve.CertFiles(cert, key); err != nil {
		t.Error(err)
	}
	if _, err := httpserve.NewACME([]string{"example.org"}, ""); err == nil {
		t.Error("ACME without a cache accepted")
	}
}

// An ACME server offers tls-alpn-01 besides HTTP, and names outside its
// domains get no certificate (nor a request to the CA).
func TestACMEConfig(t *testing.T) {
	a, err := httpserve.NewACME([]string{"meet.example"}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(a.TLS().NextProtos, "acme-tls/1") {
		t.Errorf("NextProtos %v: no tls-alpn-01", a.TLS().NextProtos)
	}
	s := start(t, http.NotFoundHandler(), httpserve.Timeouts{}, a.TLS(), false)
	conn, err := tls.Dial("tcp", s.Addr().String(), &tls.Config{ServerName: "other.example", InsecureSkipVerify: true})
	if err == nil {
		conn.Close()
		t.Fatal("a certificate for a name outside --acme-domain")
	}
}

// Headers larger than MaxHeaderBytes are refused, and headers dripped
// slower than the header timeout are cut off.
func TestHeaderBounds(t *testing.T) {
	const headerTimeout = 200 * time.Millisecond
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	s := start(t, ok, httpserve.Timeouts{MaxHeaderBytes: 4 << 10, ReadHeader: headerTimeout}, nil, false)
	req, _ := http.NewRequest(http.MethodGet, s.URL()+"/", nil)
	req.Header.Set("X-Big", strings.Repeat("a", 16<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("16 KiB of headers: %d, want 431", resp.StatusCode)
	}

	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	began := time.Now()
	if _, err := io.WriteString(conn, "GET / HTTP/1.1\r\nHost: x\r\n"); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() {
		_, err := io.ReadAll(conn)
		closed <- err
	}()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-closed:
			if took := time.Since(began); took > 5*headerTimeout {
				t.Fatalf("dripped headers kept the connection %s, header timeout %s", took, headerTimeout)
			}
			return
		case <-tick.C:
			if i > 200 {
				t.Fatalf("dripped headers for %s without the server closing", time.Since(began))
			}
			_, _ = fmt.Fprintf(conn, "X-%d: y\r\n", i)
		}
	}
}
