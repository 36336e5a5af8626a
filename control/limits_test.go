package control

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/locate"
	"github.com/oakmeet/oakmeet/placement"
)

func TestBucketsAnswerRetryAfterTheReservationDelay(t *testing.T) {
	b := newBuckets(Rate{PerMinute: 30, Burst: 2}, 10) // a token every 2 s
	a := netip.MustParseAddr("192.0.2.1")
	for i := range 2 {
		if ok, _ := b.take(a, t0); !ok {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	ok, retry := b.take(a, t0)
	if ok || retry <= 0 || retry > 2*time.Second {
		t.Fatalf("third request: ok %v, retry %v; want refused, retry in (0, 2s]", ok, retry)
	}
	// A refusal spends nothing: the token is there when it said.
	if ok, _ := b.take(a, t0.Add(retry)); !ok {
		t.Fatalf("refused again after the %v it said", retry)
	}
	if ok, _ := b.take(netip.MustParseAddr("192.0.2.2"), t0); !ok {
		t.Fatal("another address refused")
	}
	if e := rateLimited(retry/10, "x"); e.RetryAfter != 1 || e.Status != 429 || e.Code != "rate_limited" {
		t.Fatalf("rateLimited: %+v; want 429 rate_limited, RetryAfter 1 s at least", e)
	}
	if e := rateLimited(1500*time.Millisecond, "x"); e.RetryAfter != 2 {
		t.Fatalf("RetryAfter %d for 1.5 s; want 2 (rounded up)", e.RetryAfter)
	}
}

func TestBucketsStayBoundedUnderManyAddresses(t *testing.T) {
	const max = 64
	b := newBuckets(Rate{PerMinute: 1, Burst: 1}, max)
	keep := netip.MustParseAddr("198.51.100.7")
	b.take(keep, t0)
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.take(a, t0)
		if i%10 == 0 { // an address in use (more often than the cap turns over) stays remembered, and limited
			if ok, _ := b.take(keep, t0); ok {
				t.Fatalf("after %d other addresses the busy one has a fresh bucket", i)
			}
		}
		if n := b.len(); n > max {
			t.Fatalf("%d addresses remembered; the cap is %d", n, max)
		}
	}
	if n := b.len(); n != max {
		t.Fatalf("%d addresses remembered; want the cap, %d", n, max)
	}
}

func TestIPv6ClientsAreKeyedByTheir64(t *testing.T) {
	b := newBuckets(Rate{PerMinute: 1, Burst: 1}, 10)
	if ok, _ := b.take(netip.MustParseAddr("2001:db8:1:2::1"), t0); !ok {
		t.Fatal("first request refused")
	}
	if ok, _ := b.take(netip.MustParseAddr("2001:db8:1:2:ffff:1:2:3"), t0); ok {
		t.Fatal("another address of the same /64 has a bucket of its own")
	}
	if ok, _ := b.take(netip.MustParseAddr("2001:db8:1:3::1"), t0); !ok {
		t.Fatal("the next /64 shares the bucket")
	}
	if ok, _ := b.take(netip.MustParseAddr("::ffff:192.0.2.9"), t0); !ok {
		t.Fatal("IPv4-mapped address refused")
	}
	if ok, _ := b.take(netip.MustParseAddr("192.0.2.9"), t0); ok {
		t.Fatal("an IPv4 address and its mapped form have two buckets")
	}
}

func TestLimitsDefaults(t *testing.T) {
	if got := (Limits{}).withDefaults(); got != DefaultLimits() {
		t.Fatalf("zero limits: %+v; want the defaults %+v", got, DefaultLimits())
	}
	off := NoLimits().withDefaults()
	for _, r := range []Rate{off.Create, off.Join, off.Preview, off.Audit} {
		if !r.Off() {
			t.Fatalf("NoLimits has a rate %v", r)
		}
	}
	if off.PendingSeatsPerMeeting >= 0 || off.PendingSeatsPerAddress >= 0 || off.PendingHold >= 0 {
		t.Fatalf("NoLimits keeps a seat cap or hold: %+v", off)
	}
	if got := (Limits{Join: Rate{PerMinute: 600}}).withDefaults().Join; got.Burst != 10 {
		t.Fatalf("a rate without a burst: %+v; want a second's worth, 10", got)
	}
	if err := (Limits{Join: Rate{PerMinute: 0, Burst: 3}}).withDefaults().validate(); err == nil {
		t.Fatal("a join rate of 0 a minute with a burst passed")
	}
}

func TestPendingSeatsAreCappedAndHeldShortly(t *testing.T) {
	o := startOwner(t, de(func(n *nodeState) { n.Info.MaxParticipants = 100 }))
	o.pendingLimits(Limits{PendingSeatsPerMeeting: 3, PendingSeatsPerAddress: 2, PendingHold: 5 * time.Second})
	ctx := t.Context()
	req := placement.Request{Policy: effOf(t)}
	pids := []string{"p1", "p2", "p3"}
	a1, a2, a3 := pendingAsk{addr: netip.MustParseAddr("192.0.2.1")}, pendingAsk{addr: netip.MustParseAddr("192.0.2.2")}, pendingAsk{addr: netip.MustParseAddr("192.0.2.3")}
	for i, ask := range []pendingAsk{a1, a1, a2} {
		if _, err := o.reserve(ctx, pids[i], "m1", ask, req, t0); err != nil {
			t.Fatalf("seat %d: %v", i, err)
		}
		if err := o.joined(ctx, "m1", pids[i], uint64(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	wantLimited := func(what string, err error) {
		t.Helper()
		ae := toAPIError(err)
		if err == nil || ae.Status != 429 || ae.Code != "rate_limited" || ae.RetryAfter != 5 {
			t.Fatalf("%s: %v (%+v); want 429 rate_limited, retry in the hold's 5 s", what, err, ae)
		}
	}
	_, err := o.reserve(ctx, "p-x", "m2", a1, req, t0)
	wantLimited("third pending seat of one address", err)
	_, err = o.reserve(ctx, "p-y", "m1", a3, req, t0)
	wantLimited("fourth pending seat of one meeting", err)
	if _, err := o.reserve(ctx, "p-host", "m1", pendingAsk{addr: a3.addr, host: true}, req, t0); err != nil {
		t.Fatalf("the host's own join held by the meeting's cap: %v", err)
	}
	if err := o.release(ctx, "p-host"); err != nil {
		t.Fatal(err)
	}
	// A connection frees the seat from the caps at once.
	if err := o.connected(ctx, pids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := o.reserve(ctx, "p-z", "m2", a1, req, t0); err != nil {
		t.Fatalf("after one connected: %v", err)
	}
	// The hold passes: the rest stop counting, and are recorded as gone.
	acts, _, _, err := o.tick(ctx, t0.Add(5*time.Second+time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	left := 0
	for _, a := range acts {
		if a.Kind == actLeave && a.Left.Unconnected {
			left++
		}
	}
	if left != 2 {
		t.Fatalf("%d never-connected departures after the hold; want 2 (p-z was never stored): %+v", left, acts)
	}
	if n := len(o.pendingByMeeting) + len(o.pendingByAddr); n != 0 {
		t.Fatalf("counts left after every seat went: %v %v", o.pendingByMeeting, o.pendingByAddr)
	}
	// A hold longer than a token can wait is the token's lifetime.
	longest := o.tokenTTL + o.timing.SeatGrace
	for _, hold := range []time.Duration{-1, longest + time.Hour} {
		o.pendingLimits(Limits{PendingHold: hold})
		if got := o.holdUntil(t0).Sub(t0); got != longest {
			t.Fatalf("hold %v: a seat waits %v; want the token's lifetime and SeatGrace, %v", hold, got, longest)
		}
	}
}

// A limited request costs one map lookup and a reservation, without
// allocating once the address is known.
func TestBucketsTakeDoesNotAllocate(t *testing.T) {
	b := newBuckets(Rate{PerMinute: 1e9, Burst: 1 << 30}, 10)
	a := netip.MustParseAddr("2001:db8::1")
	b.take(a, t0)
	if n := testing.AllocsPerRun(1000, func() { b.take(a, t0) }); n != 0 {
		t.Fatalf("%v allocations per request", n)
	}
}

func BenchmarkBucketsTake(b *testing.B) {
	bk := newBuckets(DefaultLimits().Join, DefaultLimits().MaxAddresses)
	now := t0
	i := 0
	for b.Loop() {
		i++
		bk.take(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), now)
	}
}

// Behind a trusted proxy the limits count the client the proxy names;
// anyone else's header is not believed, so it cannot buy fresh buckets.
func TestLimitsKeyByTheClientLocateNames(t *testing.T) {
	loc, err := locate.New(locate.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ClientIPHeader: "X-Forwarded-For", DisableBuiltin: true})
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{cfg: Config{Locator: loc}, now: func() time.Time { return t0 }}
	h := s.limited(newBuckets(Rate{PerMinute: 1, Burst: 1}, 10), "test", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	ask := func(peer, forwarded string) int {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = peer + ":4711"
		r.Header.Set("X-Forwarded-For", forwarded)
		w := httptest.NewRecorder()
		h(w, r)
		return w.Code
	}
	for _, tc := range []struct {
		peer, forwarded string
		want            int
	}{
		{"10.0.0.1", "203.0.113.5", http.StatusNoContent},
		{"10.0.0.2", "203.0.113.5", http.StatusTooManyRequests}, // another proxy, the same client
		{"10.0.0.1", "203.0.113.6", http.StatusNoContent},
		{"192.0.2.1", "203.0.113.7", http.StatusNoContent},
		{"192.0.2.1", "203.0.113.8", http.StatusTooManyRequests}, // not a proxy: its header changes nothing
	} {
		if got := ask(tc.peer, tc.forwarded); got != tc.want {
			t.Fatalf("from %s for %s: %d; want %d", tc.peer, tc.forwarded, got, tc.want)
		}
	}
}
