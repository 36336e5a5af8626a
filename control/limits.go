package control

import (
	"container/list"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/oakmeet/oakmeet/api"
)

// Rate is a token bucket: PerMinute requests a minute on average, Burst at
// once. The zero Rate takes its default; a negative PerMinute is no limit.
type Rate struct {
	PerMinute float64
	Burst     int
}

// Off reports whether the rate limits nothing.
func (r Rate) Off() bool { return r.PerMinute < 0 || math.IsInf(r.PerMinute, 1) }

// String is the rate as the serve flags write it.
func (r Rate) String() string {
	if r.Off() {
		return "off"
	}
	return strconv.FormatFloat(r.PerMinute, 'f', -1, 64) + "/m,burst=" + strconv.Itoa(r.Burst)
}

// Limits keep one client from hurting others: token buckets per client
// address for the requests that cost the deployment (creating meetings,
// joins, policy previews, audit reads), and caps on the seats held by
// joins whose participant has not connected yet.
//
// A zero field takes DefaultLimits' value; NoLimits turns every one off.
type Limits struct {
	Create, Join, Preview, Audit Rate
	// PendingSeatsPerMeeting caps the seats of one meeting held by joins
	// not yet connected; PendingSeatsPerAddress those of one client
	// address, across meetings. Negative: no cap. The host's own join is
	// not held by the meeting's cap.
	PendingSeatsPerMeeting, PendingSeatsPerAddress int
	// PendingSeatsPerMeetingAddress caps the seats of one meeting held by
	// joins from one client address, so that a few addresses holding the
	// meeting's secret cannot fill its PendingSeatsPerMeeting and lock
	// everyone else out. Negative: no cap. The host's join is not held.
	//
	// A join that replaces a participant (a move, or a rejoin after a
	// lost connection, proved by its rejoin secret) takes over a seat
	// already held: none of these caps holds it, though its seat counts
	// against them until it connects.
	PendingSeatsPerMeetingAddress int
	// PendingHold is how long a placed participant that has not connected
	// keeps its seat. Its token stays valid for its lifetime, but a
	// connection after the hold finds the participant recorded as gone
	// ("never connected") and is disconnected (api.ReasonPendingExpired):
	// it must join again, through placement. Negative: the seat is held
	// for the token's lifetime and Timing.SeatGrace, as nothing arrives
	// after that.
	PendingHold time.Duration
	// MaxAddresses bounds how many client addresses each bucket table
	// remembers; past it the least recently seen is forgotten (a
	// forgotten address starts again with a full bucket).
	MaxAddresses int
}

// DefaultLimits are the limits of a deployment that sets none: generous
// for people (an office behind one address joining a meeting together),
// tight for a script.
func DefaultLimits() Limits {
	return Limits{
		Create:                        Rate{PerMinute: 10, Burst: 10},
		Join:                          Rate{PerMinute: 120, Burst: 60},
		Preview:                       Rate{PerMinute: 120, Burst: 30},
		Audit:                         Rate{PerMinute: 3000, Burst: 300},
		PendingSeatsPerMeeting:        25,
		PendingSeatsPerAddress:        15,
		PendingSeatsPerMeetingAddress: 5,
		PendingHold:                   10 * time.Second,
		MaxAddresses:                  10000,
	}
}

// NoLimits turns every limit off: for load tests on a trusted network.
func NoLimits() Limits {
	off := Rate{PerMinute: -1}
	return Limits{Create: off, Join: off, Preview: off, Audit: off,
		PendingSeatsPerMeeting: -1, PendingSeatsPerAddress: -1, PendingSeatsPerMeetingAddress: -1, PendingHold: -1, MaxAddresses: DefaultLimits().MaxAddresses}
}

// withDefaults fills zero fields from DefaultLimits.
func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	rates := []struct{ v, d *Rate }{{&l.Create, &d.Create}, {&l.Join, &d.Join}, {&l.Preview, &d.Preview}, {&l.Audit, &d.Audit}}
	for _, r := range rates {
		if *r.v == (Rate{}) {
			*r.v = *r.d
		}
		if !r.v.Off() && r.v.Burst <= 0 {
			r.v.Burst = max(1, int(math.Ceil(r.v.PerMinute/60)))
		}
	}
	if l.PendingSeatsPerMeeting == 0 {
		l.PendingSeatsPerMeeting = d.PendingSeatsPerMeeting
	}
	if l.PendingSeatsPerAddress == 0 {
		l.PendingSeatsPerAddress = d.PendingSeatsPerAddress
	}
	if l.PendingSeatsPerMeetingAddress == 0 {
		l.PendingSeatsPerMeetingAddress = d.PendingSeatsPerMeetingAddress
	}
	if l.PendingHold == 0 {
		l.PendingHold = d.PendingHold
	}
	if l.MaxAddresses <= 0 {
		l.MaxAddresses = d.MaxAddresses
	}
	return l
}

// validate rejects limits no deployment means.
func (l Limits) validate() error {
	for name, r := range map[string]Rate{"create": l.Create, "join": l.Join, "preview": l.Preview, "audit": l.Audit} {
		if !r.Off() && (math.IsNaN(r.PerMinute) || r.PerMinute == 0) {
			return fmt.Errorf("control: limit %s: a rate of %v a minute admits nothing", name, r.PerMinute)
		}
	}
	return nil
}

// meetingAddr keys the seats of one meeting held by one client address
// (its addrKey).
type meetingAddr struct {
	meeting string
	addr    netip.Addr
}

// addrKey is the bucket a client address counts against. An IPv6 client
// is keyed by its /64: one subscriber is routinely given a whole /64 and
// picks addresses from it at will, so keying by the full address would
// give every client 2^64 buckets.
func addrKey(a netip.Addr) netip.Addr {
	a = a.Unmap().WithZone("")
	if a.Is6() {
		if p, err := a.Prefix(64); err == nil {
			return p.Addr()
		}
	}
	return a
}

// buckets is one kind of request's token buckets by client address, at
// most max of them, the least recently used forgotten first. The lock
// guards the map and list only; nothing else is taken while it is held.
type buckets struct {
	rate  Rate
	max   int
	mu    sync.Mutex
	byKey map[netip.Addr]*list.Element
	lru   list.List // of *bucket, most recent at the front
}

type bucket struct {
	key netip.Addr
	lim *rate.Limiter
}

func newBuckets(r Rate, max int) *buckets {
	return &buckets{rate: r, max: max, byKey: map[netip.Addr]*list.Element{}}
}

// take spends one token of addr's bucket at now; when there is none it
// spends nothing and says how long until there will be.
func (b *buckets) take(addr netip.Addr, now time.Time) (ok bool, retry time.Duration) {
	if b == nil || b.rate.Off() {
		return true, 0
	}
	key := addrKey(addr)
	b.mu.Lock()
	defer b.mu.Unlock()
	var lim *rate.Limiter
	if e, found := b.byKey[key]; found {
		b.lru.MoveToFront(e)
		lim = e.Value.(*bucket).lim
	} else {
		for b.lru.Len() >= b.max {
			old := b.lru.Back()
			delete(b.byKey, old.Value.(*bucket).key)
			b.lru.Remove(old)
		}
		lim = rate.NewLimiter(rate.Limit(b.rate.PerMinute/60), b.rate.Burst)
		b.byKey[key] = b.lru.PushFront(&bucket{key: key, lim: lim})
	}
	res := lim.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Minute
	}
	if d := res.DelayFrom(now); d > 0 {
		res.CancelAt(now)
		return false, d
	}
	return true, 0
}

// len is how many addresses the table remembers.
func (b *buckets) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lru.Len()
}

// limiter holds the control plane's rate limits.
type limiter struct {
	create, join, preview, audit *buckets
}

func newLimiter(l Limits) *limiter {
	return &limiter{
		create:  newBuckets(l.Create, l.MaxAddresses),
		join:    newBuckets(l.Join, l.MaxAddresses),
		preview: newBuckets(l.Preview, l.MaxAddresses),
		audit:   newBuckets(l.Audit, l.MaxAddresses),
	}
}

// clientAddresser is a Locator that knows a request's client address
// (behind a trusted proxy, the one it names).
type clientAddresser interface {
	ClientAddr(r *http.Request) netip.Addr
}

// clientAddr is the address a request counts against: the Locator's, so
// that location and limits agree on who the client is, or else the peer's.
func (s *Server) clientAddr(r *http.Request) netip.Addr {
	if ca, ok := s.cfg.Locator.(clientAddresser); ok {
		return ca.ClientAddr(r)
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}

// limited answers h's requests only while the client's bucket b has a
// token; past that, 429 with Retry-After.
func (s *Server) limited(b *buckets, what string, h http.HandlerFunc) http.HandlerFunc {
	if b.rate.Off() {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		if ok, retry := b.take(s.clientAddr(r), s.now()); !ok {
			writeError(w, rateLimited(retry, "too many %s requests from this address", what))
			return
		}
		h(w, r)
	}
}

// rateLimited is the 429 for a client over a limit, retry from now.
func rateLimited(retry time.Duration, format string, args ...any) *api.Error {
	e := apiErr(http.StatusTooManyRequests, api.CodeRateLimited, format, args...)
	e.RetryAfter = max(1, int(math.Ceil(retry.Seconds())))
	e.Message += fmt.Sprintf("; retry in %d s", e.RetryAfter)
	return e
}
