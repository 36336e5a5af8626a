package system

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/oakmeet/oakmeet/api"
	"github.com/oakmeet/oakmeet/apiclient"
	"github.com/oakmeet/oakmeet/bot"
	"github.com/oakmeet/oakmeet/e2ee/group"
	"github.com/oakmeet/oakmeet/policy"
)

// soakMeeting is one meeting of the soak, with its host.
type soakMeeting struct {
	n    int // its index, for names
	m    api.CreatedMeeting
	fp   string
	host *apiclient.Host
}

// soakBot is one bot of the soak: it runs until cancelled, then leaves
// its report.
type soakBot struct {
	name    string
	meeting *soakMeeting
	cancel  context.CancelFunc
	done    chan struct{}
	rep     *bot.Report
	err     error

	mu sync.Mutex
	// member is the key schedule of the bot's current leg, pid its
	// participant there; a move brings a new leg and a new member.
	member *group.Member
	pid    string
	pids   []string // every leg's, for naming senders in a failure
	// failed is, by member, how many of its frames failed integrity at
	// the last sample, so that a failure is found close to when it
	// happened, not only at the end.
	failed map[*group.Member]uint64
}

func (b *soakBot) current() (*group.Member, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.member, b.pid
}

// soakEvent is something that happened during the soak: a churn step,
// or frames failing integrity at a bot.
type soakEvent struct {
	at   time.Time
	what string
}

// fleet is every bot of the soak and the log of what happened to them.
type fleet struct {
	t        *testing.T
	d        *deployment
	shape    soakShape
	meetings []*soakMeeting
	bots     []*soakBot // in the order they joined
	left     []*soakBot // those that left (their reports are in)
	joined   int        // bots started so far

	mu     sync.Mutex
	start  time.Time
	events []soakEvent
}

func (f *fleet) note(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, soakEvent{at: time.Now(), what: fmt.Sprintf(format, args...)})
}

// createMeetings creates n hosted meetings, open to every node.
func (f *fleet) createMeetings(n int) {
	for i := range n {
		m, host, err := f.d.api.CreateHosted(context.Background(), api.CreateRequest{Title: fmt.Sprintf("soak-%d", i), Policy: policy.Policy{}})
		if err != nil {
			f.t.Fatalf("create meeting %d: %v", i, err)
		}
		f.meetings = append(f.meetings, &soakMeeting{n: i, m: m, fp: fingerprint(f.t, m), host: host})
	}
}

// join starts one bot per country in meeting sm, all at once, and waits
// until every one of them is connected.
func (f *fleet) join(sm *soakMeeting, countries ...string) []*soakBot {
	f.t.Helper()
	ready := make(chan string, len(countries))
	var out []*soakBot
	for _, cc := range countries {
		b := &soakBot{name: fmt.Sprintf("m%d-%02d-%s", sm.n, f.joined, cc), meeting: sm, done: make(chan struct{}),
			failed: map[*group.Member]uint64{}}
		ctx, cancel := context.WithCancel(context.Background())
		b.cancel = cancel
		cfg := bot.Config{Server: f.d.url, Meeting: sm.m.ID, Secret: sm.m.JoinSecret, HostFingerprint: sm.fp,
			Name: b.name, Country: cc, LoopbackOnly: true, Linger: 300 * time.Millisecond,
			RejoinPause: f.d.timing.HeartbeatInterval, Logger: f.d.logger("bot-" + b.name),
			Ready: func(string) { ready <- b.name },
			OnKeys: func(pid string, m *group.Member) {
				b.mu.Lock()
				b.member, b.pid = m, pid
				b.pids = append(b.pids, pid)
				b.mu.Unlock()
			}}
		go func() {
			defer close(b.done)
			b.rep, b.err = bot.Run(ctx, cfg)
		}()
		f.joined++
		f.bots = append(f.bots, b)
		out = append(out, b)
	}
	f.note("%d bots join meeting m%d at once", len(countries), sm.n)
	timeout := time.After(30 * time.Second)
	for range countries {
		select {
		case <-ready:
		case <-timeout:
			f.t.Fatalf("bots %v: not all connected within 30s", countries)
		}
	}
	return out
}

// leave stops bots and collects their reports.
func (f *fleet) leave(bots ...*soakBot) {
	f.t.Helper()
	for _, b := range bots {
		b.cancel()
	}
	for _, b := range bots {
		select {
		case <-b.done:
		case <-time.After(30 * time.Second):
			f.t.Fatalf("bot %s did not leave within 30s", b.name)
		}
		if b.err != nil {
			f.t.Errorf("bot %s: %v", b.name, b.err)
		}
		f.bots = slices.DeleteFunc(f.bots, func(o *soakBot) bool { return o == b })
		f.left = append(f.left, b)
	}
	f.note("%d bots leave", len(bots))
}

// of is the bots of meeting sm still there.
func (f *fleet) of(sm *soakMeeting) []*soakBot {
	var out []*soakBot
	for _, b := range f.bots {
		if b.meeting == sm {
			out = append(out, b)
		}
	}
	return out
}

// sample notes every bot whose frames failed integrity since the last
// sample, with where its key schedule stood then. A replay is no such
// failure: a frame that came on both connections of a bot moving
// make-before-break is dropped the second time.
func (f *fleet) sample() {
	for _, b := range f.bots {
		m, pid := b.current()
		if m == nil {
			continue
		}
		_, rx := m.MediaStats()
		bad := rx.Auth + rx.Malformed
		b.mu.Lock()
		was := b.failed[m]
		b.failed[m] = bad
		b.mu.Unlock()
		if bad > was {
			st := m.Status()
			f.note("bot %s (%s): %d more frames failed integrity (auth %d, malformed %d, replay %d); sending epoch %d, newest %d",
				b.name, pid, bad-was, rx.Auth, rx.Malformed, rx.Replay, st.Epoch, st.Newest)
		}
	}
}

// settled reports whether every meeting's bots are each placed once and
// all send under one epoch whose roster is exactly them.
func (f *fleet) settled() bool {
	f.sample()
	for _, sm := range f.meetings {
		bots := f.of(sm)
		on, ok := f.d.placedOnce(sm.m.ID)
		if !ok || len(on) != len(bots) {
			return false
		}
		var want []string
		for _, b := range bots {
			_, pid := b.current()
			if pid == "" {
				return false
			}
			want = append(want, pid)
		}
		sort.Strings(want)
		var epoch uint64
		for i, b := range bots {
			m, _ := b.current()
			e := m.Epoch()
			if e == 0 || (i > 0 && e != epoch) {
				return false
			}
			epoch = e
			var in []string
			for _, p := range m.People() {
				if p.InKeys {
					in = append(in, p.Participant)
				}
			}
			sort.Strings(in)
			if !slices.Equal(in, want) {
				return false
			}
		}
	}
	return true
}

// passed is, by bot, how many frames its current member has decrypted.
func (f *fleet) passed() map[*soakBot]uint64 {
	out := map[*soakBot]uint64{}
	for _, b := range f.bots {
		if m, _ := b.current(); m != nil {
			_, rx := m.MediaStats()
			out[b] = rx.Passed
		}
	}
	return out
}

// flowing reports whether every bot in more than a one-person meeting
// has decrypted at least n frames more than in base, with the member it
// had then.
func (f *fleet) flowing(base map[*soakBot]uint64, n uint64) bool {
	f.sample()
	now := f.passed()
	for _, b := range f.bots {
		if len(f.of(b.meeting)) < 2 {
			continue
		}
		if now[b] < base[b]+n {
			return false
		}
	}
	return true
}
