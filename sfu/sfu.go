// Package sfu is the media engine of an oakmeet node: a selective
// forwarding unit built on pion/webrtc. Each participant publishes Opus
// and VP8 (optionally as up to three simulcast layers) and receives every
// other participant's tracks. The engine forwards RTP payloads without
// looking inside them beyond the VP8 payload header, so media stays
// end-to-end encrypted (SFrame) and the node never holds a media key.
//
// A meeting may span several nodes: the control plane has each pair of its
// nodes joined by a relay link (ServeLink, docs/RELAYS.md), over which each
// node sends its own participants' tracks and signaling to the other. What
// arrives over a link goes to this node's participants only, never to
// another link, so the links form a full mesh without loops.
//
// Concurrency: every meeting (room), every participant (session) and every
// relay link (link) has a goroutine that owns its state and takes work from
// a mailbox. The other locks are narrow leaves, never held across I/O or
// while taking another lock: on the packet path a subscription's
// rewriter, a packet cache and a track's subscriber list, and the queues
// of mailboxes and outboxes. SFU.mu guards the meeting and link tables and
// is never held while posting work that could block.
package sfu

import (
	"cmp"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/interceptor"
	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/signal"
)

// Errors Serve returns when a participant was disconnected by the node.
var (
	ErrClosed   = errors.New("sfu: closed")
	ErrKicked   = errors.New("sfu: participant removed")
	ErrReplaced = errors.New("sfu: participant connected again")
	// ErrNotNegotiated: none of the participant's PeerConnections reached
	// connected within Config.NegotiationTimeout.
	ErrNotNegotiated = errors.New("sfu: media not connected in time")
)

// Config configures an SFU.
type Config struct {
	Logger *slog.Logger
	// UDPPort is the one UDP port all ICE traffic uses (0 picks one).
	UDPPort int
	// TCPPort is the ICE-TCP fallback port: 0 disables ICE-TCP, a negative
	// value picks a free port.
	TCPPort int
	// PublicIP is advertised instead of the local address (1:1 NAT).
	PublicIP string
	// LoopbackOnly keeps ICE on 127.0.0.1, for tests and demos.
	LoopbackOnly bool
	// WrapUDP, if set, wraps the ICE UDP socket before the node uses it:
	// for tests and network shaping (a firewall that drops datagrams, say).
	// Only the LoopbackOnly socket is wrapped; with one socket per local
	// address it is ignored.
	WrapUDP func(net.PacketConn) net.PacketConn
	// MaxMessageBytes bounds one signaling message (default signal.MaxMessageBytes)
	// other than a relay message.
	MaxMessageBytes int
	// MaxRelayBytes bounds one relay message, as the node forwards it
	// (default signal.MaxRelayBytes): end-to-end key messages grow with
	// the meeting. Frames beyond the transport's cap (MaxRelayBytes plus
	// MaxMessageBytes of the defaults) close the connection whatever it says.
	MaxRelayBytes int
	// ICEServers are handed to clients in the welcome message; the place
	// where a node's own TURN service will be announced.
	ICEServers []signal.ICEServer
	// TURNURLs, if set, are the URLs of the node's own TURN server (known
	// once it listens, after the SFU is made). The welcome's ice_urls, the
	// ICE URLs the node vouches for under its signature, are these and
	// every URL of ICEServers: a client uses no ICE server with another.
	TURNURLs func() []string
	// Interceptors are added to every PeerConnection closest to the
	// network, for instrumentation and fault injection.
	Interceptors []interceptor.Factory
	// EndedMeetingReports is how many MeetingBytes reports still list a
	// meeting after its room closes, so that its final count survives a
	// lost report (default DefaultEndedMeetingReports). Until then the
	// counter is kept, so an SFU that is never asked keeps them all.
	EndedMeetingReports int
	// Key is the node's identity key, the one its enrollment certificate
	// names: every offer and answer sent to a participant is signed with
	// it (nodecert.SignSDP), so that the participant's client can check it
	// is talking to the certified node before sending media. Required.
	Key ed25519.PrivateKey
	// NegotiationTimeout is how long a participant may stay without any
	// of its PeerConnections reaching connected (ICE and DTLS): then it
	// gets a leave with signal.ReasonNegotiationTimeout and Serve returns
	// ErrNotNegotiated. A signaling connection alone holds no seat. Zero
	// or negative turns the check off.
	NegotiationTimeout time.Duration
	// SendBatchDelay is the longest a forwarded packet waits to leave with
	// the rest of its frame: the packets a frame fans out to subscribers
	// are sent together, one system call per batch and, where the kernel
	// offers UDP GSO, one pass down the network stack per subscriber
	// (package udpbatch). Zero means udpbatch.DefaultMaxDelay; negative
	// sends every packet at once, alone.
	SendBatchDelay time.Duration
}

// vouchedICEURLs are the ICE URLs the node vouches for in its welcome:
// its own TURN server's and every configured ICE server's, each once.
func (s *SFU) vouchedICEURLs() []string {
	var urls []string
	if s.cfg.TURNURLs != nil {
		urls = append(urls, s.cfg.TURNURLs()...)
	}
	for _, ice := range s.cfg.ICEServers {
		urls = append(urls, ice.URLs...)
	}
	var out []string
	for _, u := range urls {
		if !slices.Contains(out, u) {
			out = append(out, u)
		}
	}
	return out
}

// DefaultEndedMeetingReports is the default of Config.EndedMeetingReports.
const DefaultEndedMeetingReports = 3

// Identity is a participant verified by the node shell.
type Identity struct {
	Meeting, Participant, Name string
	// Joined orders the roster the same way on every node: the issue time
	// of the participant's join token, from the control plane's clock. It
	// is sent as signal.Participant.Since; zero means now.
	Joined time.Time
	// Nonce is the participant's challenge from its join message
	// (signal.JoinNonceBytes): the node's SDP signatures to it cover it,
	// so they cannot be replayed to another connection.
	Nonce []byte
}

// SFU forwards media between the participants of the meetings on one node.
type SFU struct {
	cfg Config
	log *slog.Logger
	se  webrtc.SettingEngine
	// linkSE is se without the shared ports, for relay links' sending
	// connections (see settingEngine).
	linkSE webrtc.SettingEngine
	epoch  time.Time
	stats  counters

	udpMux ice.UDPMux
	tcpMux ice.TCPMux
	// sends are the batching sockets under udpMux (none when
	// SendBatchDelay is negative).
	sends sendBatch

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // Serve calls, rooms and the meter

	mu     sync.Mutex
	closed bool
	rooms  map[string]*room
	// ended are the byte counters of meetings whose room has closed, until
	// MeetingBytes has reported them EndedMeetingReports times.
	ended map[string]*endedMeeting
	links map[linkKey]*link
	// kicked remembers, for kickMemory, the participants this node was
	// told to disconnect: a kick can arrive before the participant's
	// connection reaches its room (the control plane hears of the
	// connection first), and it must still hold when it does.
	kicked map[linkKey]kickMark
}

// kickMark is a remembered kick.
type kickMark struct {
	reason string
	at     time.Time
}

// kickMemory is how long a kick is remembered: longer than a join token
// lives, so the connection it was meant for cannot come after it.
const kickMemory = 10 * time.Minute

// endedMeeting is the byte counter of a meeting without a room. It is still
// read at each report, not copied at close: a packet already on its way may
// yet be counted.
type endedMeeting struct {
	bytes   *atomic.Uint64
	reports int // reports left before it is forgotten
}

// New starts an SFU listening for ICE on the configured ports.
func New(cfg Config) (*SFU, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = signal.MaxMessageBytes
	}
	if cfg.MaxRelayBytes <= 0 {
		cfg.MaxRelayBytes = signal.MaxRelayBytes
	}
	if cfg.EndedMeetingReports <= 0 {
		cfg.EndedMeetingReports = DefaultEndedMeetingReports
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, errors.New("sfu: an identity key is required: every SDP sent to a participant is signed with it")
	}
	s := &SFU{
		cfg: cfg, log: cfg.Logger, epoch: time.Now(),
		rooms: map[string]*room{}, ended: map[string]*endedMeeting{},
		links: map[linkKey]*link{}, kicked: map[linkKey]kickMark{},
	}
	se, err := s.settingEngine()
	if err != nil {
		return nil, err
	}
	s.se = se
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.meter()
	return s, nil
}

func (s *SFU) now() int64 { return int64(time.Since(s.epoch)) }

func (s *SFU) meter() {
	defer s.wg.Done()
	t := time.NewTicker(rateInterval)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.stats.sample(now.Sub(last))
			last = now
		}
	}
}

// Serve runs one verified participant over c until it leaves (nil), is
// disconnected by the node (ErrKicked, ErrReplaced, ErrClosed), or c or
// ctx ends. It closes c before returning.
func (s *SFU) Serve(ctx context.Context, c Conn, id Identity) error {
	if id.Meeting == "" || id.Participant == "" {
		_ = c.Close("missing identity")
		return errors.New("sfu: identity needs a meeting and a participant")
	}
	if id.Joined.IsZero() {
		id.Joined = time.Now()
	}
	ctx, leave, err := s.enter(ctx, c)
	if err != nil {
		return err
	}
	defer leave()

	sess, err := newSession(ctx, s, c, id)
	if err != nil {
		_ = c.Close("internal error")
		return fmt.Errorf("sfu: start participant %s: %w", id.Participant, err)
	}
	return sess.serve()
}

// attach returns the meeting's room, starting it if needed, and counts the
// caller as attached.
func (s *SFU) attach(meeting string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.rooms[meeting]
	if r == nil {
		ctx, cancel := context.WithCancel(s.ctx)
		// A meeting back before its final count was forgotten carries on
		// counting, so that its reported count never goes down.
		bytes := new(atomic.Uint64)
		if e := s.ended[meeting]; e != nil {
			bytes = e.bytes
			delete(s.ended, meeting)
		}
		r = &room{
			meeting: meeting, mbox: newMailbox(), bytes: bytes, cancel: cancel,
			log: s.log.With("meeting", meeting), maxRelay: s.cfg.MaxRelayBytes,
		}
		r.publishLocal()
		s.rooms[meeting] = r
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			r.run(ctx)
		}()
	}
	r.refs++
	return r
}

// detach undoes attach; the last session out stops the room, whose byte
// count is then reported a few more times.
func (s *SFU) detach(r *room) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r.refs--
	if r.refs == 0 {
		delete(s.rooms, r.meeting)
		s.ended[r.meeting] = &endedMeeting{bytes: r.bytes, reports: s.cfg.EndedMeetingReports}
		r.cancel()
	}
}

// Load reports the node's current load.
func (s *SFU) Load() Load {
	s.mu.Lock()
	meetings := len(s.rooms)
	s.mu.Unlock()
	return Load{
		Participants:  int(s.stats.participants.Load()),
		Meetings:      meetings,
		TracksIn:      int(s.stats.tracksIn.Load()),
		TracksOut:     int(s.stats.tracksOut.Load()),
		BitrateInBps:  s.stats.rateIn.Load(),
		BitrateOutBps: s.stats.rateOut.Load(),
	}
}

// Stats reports cumulative forwarding and RTCP totals.
func (s *SFU) Stats() Stats {
	return Stats{
		BytesIn: s.stats.bytesIn.Load(), BytesOut: s.stats.bytesOut.Load(),
		PLISent: s.stats.pliSent.Load(), NACKsIn: s.stats.nacksIn.Load(),
		Retransmits: s.stats.retransmits.Load(),
	}
}

// MeetingBytes reports the bytes forwarded per meeting, to this node's
// subscribers and over relay links. Each call is one report: it lists every
// meeting with a room on the node, and a meeting whose room has closed in
// the next EndedMeetingReports calls with its final count. Then the meeting
// is forgotten, so what is kept is bounded by the live meetings and those
// that ended within the last few reports. A count starts at zero when a
// meeting comes to the node and carries on if the meeting comes back before
// it was forgotten.
func (s *SFU) MeetingBytes() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(s.rooms)+len(s.ended))
	for m, r := range s.rooms {
		out[m] = r.bytes.Load()
	}
	for m, e := range s.ended {
		out[m] = e.bytes.Load()
		if e.reports--; e.reports <= 0 {
			delete(s.ended, m)
		}
	}
	return out
}

// running returns the meeting's room, nil when no one is in it.
func (s *SFU) running(meeting string) *room {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rooms[meeting]
}

// Participants lists the participants of a meeting on this node.
func (s *SFU) Participants(meeting string) []string {
	r := s.running(meeting)
	if r == nil {
		return nil
	}
	return append([]string(nil), *r.local.Load()...)
}

// Kick disconnects a participant, telling it why with a leave message.
func (s *SFU) Kick(meeting, participant, reason string) {
	now := time.Now()
	s.mu.Lock()
	maps.DeleteFunc(s.kicked, func(_ linkKey, m kickMark) bool { return now.Sub(m.at) > kickMemory })
	s.kicked[linkKey{meeting, participant}] = kickMark{reason: reason, at: now}
	s.mu.Unlock()
	if r := s.running(meeting); r != nil {
		r.mbox.post(func() { r.kick(participant, reason) })
	}
}

// wasKicked returns the reason a participant was kicked, if it was.
func (s *SFU) wasKicked(meeting, participant string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.kicked[linkKey{meeting, participant}]
	return m.reason, ok
}

// Host passes a host statement (hoststmt's wire form, opaque here) to
// every participant of the meeting on this node as a host message. A Kick
// after it reaches a participant after the statement: both go through the
// room in order. It refuses a statement no client would accept.
func (s *SFU) Host(meeting string, statement json.RawMessage) error {
	b, err := signal.Encode(signal.Message{Type: signal.TypeHost, Payload: statement})
	if err == nil {
		_, err = signal.Decode(b)
	}
	if err != nil {
		return fmt.Errorf("sfu: host statement for %s: %w", meeting, err)
	}
	if r := s.running(meeting); r != nil {
		r.mbox.post(func() { r.broadcastEncoded(b, "") })
	}
	return nil
}

// Move asks a participant to join again through the control plane, which
// places it on another node, with a move message; unlike Kick it leaves the
// connection open until the participant closes it.
func (s *SFU) Move(meeting, participant, reason string) {
	if r := s.running(meeting); r != nil {
		r.mbox.post(func() { r.move(participant, reason) })
	}
}

// HasLink reports whether a relay link for meeting to peer is running.
func (s *SFU) HasLink(meeting, peer string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.links[linkKey{meeting, peer}] != nil
}

// CloseLink ends the relay link for meeting to peer, telling the peer; it
// reports whether there was one. Its ServeLink returns ErrLinkClosed.
func (s *SFU) CloseLink(meeting, peer string) bool {
	s.mu.Lock()
	l := s.links[linkKey{meeting, peer}]
	s.mu.Unlock()
	if l != nil {
		l.finish(ErrLinkClosed)
	}
	return l != nil
}

// Relays lists the running relay links, by meeting and peer.
func (s *SFU) Relays() []RelayInfo {
	s.mu.Lock()
	links := make([]*link, 0, len(s.links))
	for _, l := range s.links {
		links = append(links, l)
	}
	s.mu.Unlock()
	out := make([]RelayInfo, len(links))
	for i, l := range links {
		out[i] = l.info()
	}
	slices.SortFunc(out, func(a, b RelayInfo) int {
		return cmp.Or(cmp.Compare(a.Meeting, b.Meeting), cmp.Compare(a.Peer, b.Peer))
	})
	return out
}

// Close disconnects everyone, waits for every goroutine of the SFU to end
// and releases its ports.
func (s *SFU) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	s.closeMuxes()
	return nil
}

// enter admits one connection (a participant or a relay link) while the SFU
// is open: it is counted for Close to wait on, and its context ends when
// the SFU closes. leave undoes it.
func (s *SFU) enter(ctx context.Context, c Conn) (context.Context, func(), error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close("node shutting down")
		return nil, nil, ErrClosed
	}
	s.wg.Add(1)
	s.mu.Unlock()
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.ctx, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(nil)
		s.wg.Done()
	}, nil
}

// runOwner is the loop of a goroutine that owns some state: it runs the
// mailbox's work and a periodic tick until ctx ends.
func runOwner(ctx context.Context, mbox *mailbox, tick func(time.Time)) error {
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-mbox.notify:
			mbox.drain()
		case now := <-t.C:
			tick(now)
		}
	}
}
