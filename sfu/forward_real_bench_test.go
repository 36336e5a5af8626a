package sfu_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"

	"github.com/oakmeet/oakmeet/client"
	"github.com/oakmeet/oakmeet/sfu"
	"github.com/oakmeet/oakmeet/sfu/sfutest"
)

// The load of BenchmarkForwardReal: one VP8 packet per frame (a frame
// this size fits one packet), published at fwdRate packets a second in
// bursts of fwdBurst, a key frame every fwdKeyEvery frames and on request.
// At 400 packets/s and ~1 kB each a subscriber takes ~3.3 Mbit/s, under
// the node's initial bandwidth estimate, so nothing is held back.
const (
	fwdSubscribers = 10
	fwdFrameBytes  = 1000
	fwdRate        = 400
	fwdBurst       = 10
	fwdKeyEvery    = 60
	fwdEnvURL      = "OAKMEET_FORWARD_REAL_URL"
	fwdEnvSubs     = "OAKMEET_FORWARD_REAL_SUBSCRIBERS"
)

// BenchmarkForwardReal measures the node's CPU per forwarded packet with
// real PeerConnections on loopback: one publisher and fwdSubscribers
// subscribers, all Go clients, against a real SFU. The clients run in a
// child process (this test binary again, as TestForwardRealClients), so
// this process is the node alone: its CPU time (getrusage) and a
// -cpuprofile of it hold the node's work only — SRTP in and out, the
// rewrite, the interceptors, the sends — and none of the clients'.
//
// b.N is the number of packets published; ns/forwarded-pkt is the node's
// CPU time over the packets its subscribers received. The load is paced
// (fwdRate), so ns/op is mostly waiting; read the custom metrics. Run
// with a fixed count, e.g. -benchtime 4000x: each run sets up the
// meeting anew.
func BenchmarkForwardReal(b *testing.B) {
	srv := sfutest.Start(b, sfu.Config{})
	cmd := exec.Command(os.Args[0], "-test.run=^TestForwardRealClients$", "-test.count=1")
	cmd.Env = append(os.Environ(), fwdEnvURL+"="+srv.URL, fwdEnvSubs+"="+strconv.Itoa(fwdSubscribers))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		_ = stdin.Close() // the child ends when its stdin does
		_ = cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	next := func(want string) []string {
		b.Helper()
		for lines.Scan() {
			if f := strings.Fields(lines.Text()); len(f) > 0 && f[0] == want {
				return f[1:]
			}
		}
		b.Fatalf("clients ended before %q: %v", want, lines.Err())
		return nil
	}
	next("ready")
	b.ResetTimer()
	cpu0 := processCPU(b)
	if _, err := fmt.Fprintf(stdin, "go %d\n", b.N); err != nil {
		b.Fatal(err)
	}
	f := next("done")
	cpu := processCPU(b) - cpu0
	b.StopTimer()
	delivered, _ := strconv.Atoi(f[0])
	sent, _ := strconv.Atoi(f[1])
	if delivered == 0 || sent == 0 {
		b.Fatalf("delivered %d of %d packets", delivered, sent*fwdSubscribers)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(delivered), "ns/forwarded-pkt")
	b.ReportMetric(float64(delivered)/float64(sent*fwdSubscribers), "delivery")
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
}

// processCPU is this process's user and system CPU time so far.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestForwardRealClients is BenchmarkForwardReal's clients when the
// benchmark runs this binary as its child; otherwise it skips. It joins
// the subscribers and the publisher, warms up until every subscriber
// receives video and prints "ready". On "go N" it publishes N packets and
// prints "done DELIVERED SENT" once every subscriber has them all or they
// stop coming. It ends with its stdin.
func TestForwardRealClients(t *testing.T) {
	url := os.Getenv(fwdEnvURL)
	if url == "" {
		t.Skip("run by BenchmarkForwardReal")
	}
	nsubs, err := strconv.Atoi(os.Getenv(fwdEnvSubs))
	if err != nil {
		t.Fatal(err)
	}
	const meeting = "m-forward-real"
	var sessions []*client.Session
	connect := func(id string) *client.Session {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		jr := client.JoinResult{ParticipantID: id, Node: client.NodeInfo{ID: "n1", URL: url}, Token: sfutest.Token(meeting, id, id)}
		s, err := client.Connect(ctx, jr, client.Options{LoopbackOnly: true})
		if err != nil {
			t.Fatalf("connect %s: %v", id, err)
		}
		sessions = append(sessions, s)
		return s
	}
	counts := make([]atomic.Int64, nsubs)
	var readers sync.WaitGroup
	// Closing a session ends its events and tracks, and so its readers.
	defer func() {
		for _, s := range sessions {
			_ = s.Close()
		}
		readers.Wait()
	}()
	for i := range nsubs {
		s := connect("s" + strconv.Itoa(i))
		readers.Add(1)
		go func() {
			defer readers.Done()
			for e := range s.Events() {
				if e.Type != client.EventTrackAdded || e.Track.Kind() != webrtc.RTPCodecTypeVideo {
					continue
				}
				readers.Add(1)
				go func() {
					defer readers.Done()
					for {
						if _, _, err := e.Track.ReadRTP(); err != nil {
							return
						}
						counts[i].Add(1)
					}
				}()
			}
		}()
	}
	pub := connect("p")
	video, err := pub.PublishVideo(client.TrackOptions{})
	if err != nil {
		t.Fatal(err)
	}
	frame := make([]byte, fwdFrameBytes)
	var frames int
	write := func() {
		frames++
		key := video.TakeKeyFrameRequest("") || frames%fwdKeyEvery == 0
		if key {
			copy(frame, []byte{0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x40, 0x01, 0xf0, 0x00})
		} else {
			copy(frame, []byte{0x11, 0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00})
		}
		if err := video.WriteSample(media.Sample{Data: frame, Duration: time.Second / fwdRate}); err != nil {
			t.Fatalf("write: %v", err)
		}
	}
	tick := time.NewTicker(time.Second * fwdBurst / fwdRate)
	defer tick.Stop()
	total := func() int64 {
		var n int64
		for i := range counts {
			n += counts[i].Load()
		}
		return n
	}
	warm := func() bool {
		for i := range counts {
			if counts[i].Load() < 2*fwdBurst {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for !warm() {
		if time.Now().After(deadline) {
			t.Fatalf("warm-up: subscribers received %d packets in all", total())
		}
		<-tick.C
		for range fwdBurst {
			write()
		}
	}
	// Let what is in flight arrive before counting from here.
	settle(total, -1, 2*time.Second)
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		var n int
		if _, err := fmt.Sscanf(in.Text(), "go %d", &n); err != nil {
			t.Fatalf("command %q: %v", in.Text(), err)
		}
		start := total()
		for sent := 0; sent < n; {
			<-tick.C
			for i := 0; i < fwdBurst && sent < n; i++ {
				write()
				sent++
			}
		}
		settle(total, start+int64(n*nsubs), 2*time.Second)
		fmt.Printf("done %d %d\n", total()-start, n)
	}
}

// settle waits until count reaches want (if want >= 0) or stops growing
// for a while (the missing packets will not come), for at most d.
func settle(count func() int64, want int64, d time.Duration) {
	const quiet = 200 * time.Millisecond
	deadline := time.Now().Add(d)
	last, since := count(), time.Now()
	for time.Now().Before(deadline) && time.Since(since) < quiet && (want < 0 || last < want) {
		time.Sleep(10 * time.Millisecond) // polling interval
		if n := count(); n != last {
			last, since = n, time.Now()
		}
	}
}
