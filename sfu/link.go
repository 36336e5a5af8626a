package sfu

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/webrtc/v4"

	"github.com/oakmeet/oakmeet/negotiation"
	"github.com/oakmeet/oakmeet/signal"
)

// Link is a relay link to another node for one meeting, as the node shell
// hands it to ServeLink after the handshake (token, policy and identity
// checks, docs/RELAYS.md).
type Link struct {
	Meeting string
	Self    string // this node's id
	Peer    string // the other node's id
	Dialer  bool   // this node opened the link
	// Key is this node's identity key and PeerKey the peer's. Every SDP on
	// the link is signed with them, which binds the DTLS fingerprints, and
	// so the encrypted media path, to the two nodes' identities even if the
	// WebSocket between them is not itself authenticated.
	Key     ed25519.PrivateKey
	PeerKey ed25519.PublicKey
	// Binding is the handshake transcript both nodes computed; it is signed
	// with every SDP so that a signature from one link cannot be replayed on
	// another.
	Binding []byte
	// PeerCert is the peer's enrollment certificate as it sent it in the
	// handshake: the node checks it again against the meeting's host
	// policy while the link runs.
	PeerCert string
}

// RelayInfo describes one relay link of the node.
type RelayInfo struct {
	Meeting, Peer string
	Dialer        bool
	// Connected: every PeerConnection of the link that carries media has
	// connected.
	Connected     bool
	Since         time.Time
	BytesSent     uint64 // media forwarded to the peer
	BytesReceived uint64 // media received from the peer
	// LayerBytesSent and LayerBytesReceived split the bytes by simulcast
	// layer (low, medium, high; a track without simulcast counts as low),
	// so an operator can see which layers a link carries.
	LayerBytesSent     [numLayers]uint64
	LayerBytesReceived [numLayers]uint64
	TracksSent         int
	TracksReceived     int
	// Participants is how many of the peer's participants it announced.
	Participants int
	// PeerCert is the peer's certificate (Link.PeerCert).
	PeerCert string
}

// ErrBadSignature ends a link whose peer sent an SDP that its identity key
// did not sign.
var ErrBadSignature = errors.New("sfu: relay SDP signature does not verify")

// Link timing: a link pings its peer every linkPingInterval, and a peer
// silent for linkIdleTimeout is gone.
const (
	linkPingInterval = 5 * time.Second
	linkIdleTimeout  = 20 * time.Second
	// linkMessageBytes bounds a message from a peer node other than a
	// relay message: a link's SDP names every track of the meeting's
	// participants on the peer, so it may be far larger than a
	// participant's.
	linkMessageBytes = 1 << 20
)

type linkKey struct{ meeting, peer string }

// linkQueue bounds the signaling queued for a peer node: it carries what
// all this node's participants of the meeting send.
func linkQueue(cfg Config) queueLimits {
	return queueLimits{messages: 16384, bytes: 32 * cfg.MaxRelayBytes}
}

// link is one relay link. Like a session it has a goroutine that owns its
// state and a mailbox; the room reaches it only through the mailbox.
type link struct {
	endpoint
	cfg     Link
	started time.Time

	// sendPC carries this node's participants' media to the peer (this
	// node offers); recvPC carries the peer's participants' media here
	// (the peer offers). One offerer per connection: no glare.
	sendPC, recvPC *webrtc.PeerConnection

	// Media bytes by layer; the totals are their sums.
	bytesSent, bytesRecv   [numLayers]atomic.Uint64
	tracksSent, tracksRecv atomic.Int64
	remoteMembers          atomic.Int64

	// owned by run
	downs     map[string]*linkDown       // local tracks sent, by track id
	announced map[string]signal.Track    // the peer's tracks, by id
	ups       map[string]*publishedTrack // the peer's tracks with media, by id
	members   map[string]signal.Participant
	// wanted is, by track id of the peer's tracks with media, what this
	// node last told the peer it needs of them (layers_wanted).
	wanted   map[string]wantState
	sendNeg  *negotiation.Offerer  // on sendPC
	recvNeg  *negotiation.Answerer // on recvPC
	lastTick time.Time
	lastPing time.Time
}

// linkDown is one local track sent over the link: one RTP stream per
// simulcast layer, so the peer's subscribers can still choose layers.
type linkDown struct {
	pub   *publishedTrack
	slots []*downSlot
	// ceilings is what the peer last asked for (layers_wanted), one bit
	// per layer: for each, the best layer the track has at or below it
	// crosses the link. Until the peer has asked (told), every layer
	// crosses: the peer learns of a layer when its stream arrives, and a
	// peer that never asks still gets everything.
	ceilings uint8
	told     bool
}

// wantState is what a node told its peer it wants of one of the peer's
// tracks.
type wantState struct {
	ceilings uint8
	sent     bool
	// since is when the track's media first arrived: the node waits a
	// tick before it first tells, so that the subscribers it is being
	// added to can say what they want.
	since time.Time
}

// linkTrackID names layer q of a track on a link's SDP (the msid track id).
func linkTrackID(id string, q int) string { return id + "." + strconv.Itoa(q) }

func parseLinkTrackID(s string) (string, int, bool) {
	i := strings.LastIndexByte(s, '.')
	if i <= 0 || i != len(s)-2 || s[i+1] < '0' || s[i+1] >= '0'+numLayers {
		return "", 0, false
	}
	return s[:i], int(s[i+1] - '0'), true
}

func (c Link) validate() error {
	switch {
	case c.Meeting == "" || c.Self == "" || c.Peer == "":
		return errors.New("sfu: a relay link needs a meeting and both node ids")
	case c.Self == c.Peer:
		return errors.New("sfu: a node cannot relay to itself")
	case len(c.Key) != ed25519.PrivateKeySize || len(c.PeerKey) != ed25519.PublicKeySize:
		return errors.New("sfu: a relay link needs both identity keys")
	case len(c.Binding) == 0:
		return errors.New("sfu: a relay link needs its handshake binding")
	}
	return nil
}

// ServeLink runs a relay link over c until the peer ends it, it is closed
// (CloseLink, or a newer link for the same meeting and peer replaces it:
// ErrReplaced), the node closes (ErrClosed), or c or ctx ends. Over the link
// each node sends its own participants' tracks and signaling (who joined
// and left, tracks, chat, end-to-end relay messages); what arrives is
// forwarded to this node's participants only. ServeLink closes c.
func (s *SFU) ServeLink(ctx context.Context, c Conn, cfg Link) error {
	if err := cfg.validate(); err != nil {
		_ = c.Close("bad relay link")
		return err
	}
	ctx, leave, err := s.enter(ctx, c)
	if err != nil {
		return err
	}
	defer leave()

	l, err := newLink(ctx, s, c, cfg)
	if err != nil {
		_ = c.Close("internal error")
		return fmt.Errorf("sfu: start relay link %s/%s: %w", cfg.Meeting, cfg.Peer, err)
	}
	return l.serve()
}

func newLink(ctx context.Context, s *SFU, c Conn, cfg Link) (*link, error) {
	l := &link{
		cfg:       cfg,
		started:   time.Now(),
		downs:     map[string]*linkDown{},
		announced: map[string]signal.Track{},
		ups:       map[string]*publishedTrack{},
		members:   map[string]signal.Participant{},
		wanted:    map[string]wantState{},
		lastTick:  time.Now(),
		lastPing:  time.Now(),
	}
	l.open(ctx, s, c, s.log.With("meeting", cfg.Meeting, "relay_peer", cfg.Peer), linkQueue(s.cfg), "relay signaling")
	var err error
	if l.sendPC, err = l.newPC(signal.TargetPublish); err != nil {
		l.stop(err)
		return nil, err
	}
	if l.recvPC, err = l.newPC(signal.TargetSubscribe); err != nil {
		_ = l.sendPC.Close()
		l.stop(err)
		return nil, err
	}
	hooks := negotiation.Config{Send: l.send, Failed: l.negotiationFailed, Signer: linkSigner(cfg), Post: l.post}
	l.sendNeg = negotiation.NewOfferer(l.sendPC, hooks)
	l.recvNeg = negotiation.NewAnswerer(l.recvPC, hooks)
	l.recvPC.OnTrack(func(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
		l.mbox.post(func() { l.onTrack(t, r) })
	})
	return l, nil
}

// newPC makes one of the link's PeerConnections. Candidates are sent with
// the target naming the connection from this node's side: "publish" for
// the one it sends on, "subscribe" for the one it receives on.
func (l *link) newPC(target string) (*webrtc.PeerConnection, error) {
	se, dir := l.sfu.se, receives
	if target == signal.TargetPublish {
		se, dir = l.sfu.linkSE, sends
	}
	return l.sfu.newPeerConnection(se, dir, nil, target, "relay "+target, l.send, l.finish, nil)
}

func (l *link) serve() error {
	l.startIO(l.readLoop)

	key := linkKey{l.cfg.Meeting, l.cfg.Peer}
	l.sfu.mu.Lock()
	old := l.sfu.links[key]
	l.sfu.links[key] = l
	l.sfu.mu.Unlock()
	if old != nil {
		old.finish(ErrReplaced)
	}
	r := l.sfu.attach(l.cfg.Meeting)
	l.room = r
	r.mbox.post(func() { r.addLink(l) })

	cause := l.run()

	// Unlisted at once: the link is gone for the control plane even while
	// its connections close.
	l.sfu.mu.Lock()
	if l.sfu.links[key] == l {
		delete(l.sfu.links, key)
	}
	l.sfu.mu.Unlock()
	r.mbox.post(func() { r.removeLink(l) })
	for _, d := range l.downs {
		for _, slot := range d.slots {
			d.pub.removeDown(slot.dt)
		}
	}
	for _, p := range l.ups {
		l.endPublication(p)
	}
	l.closePCs(l.sendPC, l.recvPC)
	// Tell the peer why, so that it ends its side at once rather than
	// after the idle timeout.
	reason := cause.Error()
	l.send(signal.Message{Type: signal.TypeLeave, Reason: reason})
	l.hangUp(reason)
	l.sfu.detach(r)
	return cause
}

// ErrLinkClosed is the cause of a link this node closed (CloseLink).
var ErrLinkClosed = errors.New("sfu: relay link closed")

func (l *link) run() error { return runOwner(l.ctx, l.mbox, l.tick) }

// readLoop reads the peer's messages until the connection closes or the
// peer has been silent for linkIdleTimeout (it pings every
// linkPingInterval).
func (l *link) readLoop() {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), linkIdleTimeout)
		data, err := l.conn.Read(ctx)
		cancel()
		if err != nil {
			l.finish(fmt.Errorf("relay signaling: %w", err))
			return
		}
		m, err := signal.DecodeLimits(data, linkMessageBytes, l.sfu.cfg.MaxRelayBytes)
		if err != nil {
			l.log.Debug("undecodable relay message", "err", err)
			continue
		}
		if m.Type == signal.TypeLeave {
			l.finish(fmt.Errorf("relay link ended by %s: %s", l.cfg.Peer, m.Reason))
			return
		}
		l.mbox.post(func() { l.handle(m) })
	}
}

func (l *link) handle(m signal.Message) {
	switch m.Type {
	case signal.TypeParticipantJoined:
		l.onJoined(*m.Participant)
	case signal.TypeParticipantLeft:
		l.onLeft(m.Participant.ID)
	case signal.TypeTrackPublished:
		if _, ok := l.members[m.Track.Participant]; ok {
			l.announced[m.Track.ID] = *m.Track
		}
	case signal.TypeTrackUnpublished:
		l.withdraw(m.Track.ID)
	case signal.TypeLayersWanted:
		l.onLayersWanted(m.TrackID, m.Layers)
	case signal.TypeChat, signal.TypeRelay:
		// The peer speaks for its own participants only.
		if _, ok := l.members[m.From]; !ok || len(m.Text) > maxChatBytes {
			l.log.Debug("dropping relayed message", "type", m.Type, "from", m.From)
			return
		}
		r := l.room
		r.mbox.post(func() { r.remoteMessage(l, m) })
	case signal.TypeOffer:
		l.recvNeg.Offer(m.SDP, m.Sig)
	case signal.TypeAnswer:
		l.sendNeg.Answer(m.SDP, m.Sig)
	case signal.TypeCandidate:
		l.onCandidate(m.Target, m.Candidate)
	case signal.TypePing:
		l.send(signal.Message{Type: signal.TypePong})
	case signal.TypePong:
	case signal.TypeError:
		l.log.Info("relay peer reported an error", "code", m.Code, "message", m.Message)
	default:
		l.log.Debug("ignoring relay message", "type", m.Type)
	}
}

func (l *link) onJoined(p signal.Participant) {
	l.members[p.ID] = p
	l.remoteMembers.Store(int64(len(l.members)))
	r := l.room
	r.mbox.post(func() { r.remoteJoined(l, p) })
}

func (l *link) onLeft(id string) {
	if _, ok := l.members[id]; !ok {
		return
	}
	for tid, t := range l.announced {
		if t.Participant == id {
			l.withdraw(tid)
		}
	}
	delete(l.members, id)
	l.remoteMembers.Store(int64(len(l.members)))
	r := l.room
	r.mbox.post(func() { r.remoteLeft(l, id) })
}

func (l *link) withdraw(id string) {
	delete(l.announced, id)
	if pub := l.ups[id]; pub != nil {
		delete(l.ups, id)
		l.endPublication(pub)
	}
}

// Receiving the peer's media.

func (l *link) onTrack(t *webrtc.TrackRemote, r *webrtc.RTPReceiver) {
	if l.ctx.Err() != nil {
		return
	}
	id, q, ok := parseLinkTrackID(t.ID())
	info, announced := l.announced[id]
	if !ok || !announced {
		l.log.Warn("relay track was not announced", "track", t.ID())
		return
	}
	pub := l.ups[id]
	fresh := pub == nil
	if fresh {
		pub = newPublishedTrack(info, t.Codec().RTPCodecCapability, t.Kind(), l.recvPC.WriteRTCP, &l.sfu.stats, l.sfu.epoch)
		pub.origin = l
		pub.sends = l.sfu.sends
		l.ups[id] = pub
		l.wanted[id] = wantState{since: time.Now()}
	}
	if !pub.declared[q] || pub.layers[q].Load() != nil {
		l.log.Warn("ignoring extra relay stream", "track", t.ID())
		return
	}
	up := pub.addLayer(q, pub.rids[q], uint32(t.SSRC()))
	l.goMedia(func() {
		pub.read(up, t, &l.bytesRecv[q])
		l.mbox.post(func() { l.layerEnded(pub, up) })
	})
	l.goMedia(func() { readReceiverRTCP(r, "") })
	if fresh {
		l.sfu.stats.tracksIn.Add(1)
		l.tracksRecv.Add(1)
		room := l.room
		room.mbox.post(func() { room.remotePublish(l, pub) })
	}
}

func (l *link) layerEnded(pub *publishedTrack, up *upLayer) {
	if !pub.dropLayer(up) {
		return
	}
	if l.ups[pub.info.ID] == pub {
		delete(l.ups, pub.info.ID)
	}
	l.endPublication(pub)
}

func (l *link) endPublication(pub *publishedTrack) {
	if pub.closed.Swap(true) {
		return
	}
	l.sfu.stats.tracksIn.Add(-1)
	l.tracksRecv.Add(-1)
	r := l.room
	r.mbox.post(func() { r.unpublish(pub) })
}

// Sending this node's media.

// subscribe starts sending a local track to the peer: it announces the
// track, then adds one stream per declared layer and renegotiates.
func (l *link) subscribe(pub *publishedTrack) {
	if l.ctx.Err() != nil || pub.closed.Load() || pub.origin != nil {
		return
	}
	if _, ok := l.downs[pub.info.ID]; ok {
		return
	}
	l.send(signal.Message{Type: signal.TypeTrackPublished, Track: &pub.info})
	d := &linkDown{pub: pub}
	for q := range numLayers {
		if !pub.declared[q] {
			continue
		}
		dt := newDownTrack(pub, &l.sfu.stats, l.room.bytes)
		dt.id = linkTrackID(pub.info.ID, q)
		dt.want, dt.cap = q, q
		dt.target.Store(int32(q))
		dt.link = &l.bytesSent[q]
		sender, err := l.sendPC.AddTrack(dt)
		if err != nil {
			l.log.Warn("add relay stream", "track", dt.id, "err", err)
			continue
		}
		d.slots = append(d.slots, &downSlot{dt: dt, sender: sender})
		l.goMedia(func() { dt.readRTCP(sender) })
		pub.addDown(dt)
	}
	l.downs[pub.info.ID] = d
	l.tracksSent.Add(1)
	l.sendNeg.Renegotiate()
}

func (l *link) unsubscribe(pub *publishedTrack) {
	d := l.downs[pub.info.ID]
	if d == nil || d.pub != pub {
		return
	}
	delete(l.downs, pub.info.ID)
	for _, slot := range d.slots {
		pub.removeDown(slot.dt)
		if err := l.sendPC.RemoveTrack(slot.sender); err != nil {
			l.log.Debug("remove relay stream", "track", slot.dt.id, "err", err)
		}
	}
	l.tracksSent.Add(-1)
	l.send(signal.Message{Type: signal.TypeTrackUnpublished, Track: &pub.info})
	l.sendNeg.Renegotiate()
}

// Forwarding only the layers wanted behind the link.

// onLayersWanted takes the peer's layers_wanted for one of this node's
// tracks. A track this link does not send (it ended, or the peer is
// confused) is ignored: the peer learns of its end from
// track_unpublished.
func (l *link) onLayersWanted(id string, names []string) {
	d := l.downs[id]
	if d == nil {
		l.log.Debug("layers wanted of a track not sent", "track", id)
		return
	}
	var ceilings uint8
	for _, name := range names {
		if q, ok := signal.WantedLayer(name); ok && q < numLayers {
			ceilings |= 1 << q
		}
	}
	d.ceilings, d.told = ceilings, true
	l.applyWanted(d)
}

// applyWanted starts and stops the track's layers on the link so that
// exactly those the peer wants cross. A wanted layer the publisher does
// not send now is stood in for by the best one below it (or the lowest
// one), as for a subscriber on this node. A layer that starts asks the
// publisher for a key frame, so that the peer's new viewer gets a
// picture at once.
func (l *link) applyWanted(d *linkDown) {
	if !d.told {
		return
	}
	avail := d.pub.available(d.pub.now())
	var on [numLayers]bool
	for c := range numLayers {
		if d.ceilings&(1<<c) != 0 {
			if q := pickLayer(avail, c); q >= 0 {
				on[q] = true
			}
		}
	}
	for _, slot := range d.slots {
		// A link's stream carries one fixed layer, its want.
		q := slot.dt.want
		if !on[q] {
			slot.dt.target.Store(layerOff)
			continue
		}
		if slot.dt.target.Swap(int32(q)) != int32(q) {
			d.pub.requestKeyFrame(q)
		}
	}
}

// ceilingsOf is what this node's subscribers of a relayed track need: for
// each, the best layer it may receive (which the link may not carry yet)
// and the one it receives now (so that it keeps receiving until the
// better one arrives).
func ceilingsOf(p *publishedTrack) uint8 {
	var c uint8
	downs := p.downs.Load()
	if downs == nil {
		return 0
	}
	// Above the track's best declared layer every ceiling means the same:
	// clamped, a single-layer track is wanted as "low", not "high".
	top := int32(0)
	for q := range numLayers {
		if p.declared[q] {
			top = int32(q)
		}
	}
	for _, dt := range *downs {
		if q := dt.ceiling.Load(); q >= 0 {
			c |= 1 << min(q, top)
		}
		if q := dt.target.Load(); q >= 0 {
			c |= 1 << min(q, top)
		}
	}
	return c
}

// tellWanted sends layers_wanted for each of the peer's tracks whose
// wanted layers changed.
func (l *link) tellWanted(now time.Time) {
	for id, w := range l.wanted {
		p := l.ups[id]
		if p == nil {
			delete(l.wanted, id)
			continue
		}
		if !w.sent && now.Sub(w.since) < tickInterval {
			continue
		}
		c := ceilingsOf(p)
		if w.sent && c == w.ceilings {
			continue
		}
		w.ceilings, w.sent = c, true
		l.wanted[id] = w
		m := signal.Message{Type: signal.TypeLayersWanted, TrackID: id}
		for q := range numLayers {
			if c&(1<<q) != 0 {
				m.Layers = append(m.Layers, signal.WantedLayerName(q))
			}
		}
		l.send(m)
	}
}

// Negotiation. Every SDP is signed by its node's identity key.

func sdpSigned(binding []byte, signer, kind, sdp string) []byte {
	b := make([]byte, 0, 64+len(binding)+len(signer)+len(sdp))
	b = append(b, "oakmeet relay sdp v1\x00"...)
	b = append(b, binding...)
	b = append(b, 0)
	b = append(b, signer...)
	b = append(b, 0)
	b = append(b, kind...)
	b = append(b, 0)
	return append(b, sdp...)
}

// linkSigner signs the link's SDP with this node's identity key and checks
// the peer's with its key.
type linkSigner Link

func (c linkSigner) Sign(d webrtc.SessionDescription) []byte {
	return ed25519.Sign(c.Key, sdpSigned(c.Binding, c.Self, d.Type.String(), d.SDP))
}

func (c linkSigner) Verify(d webrtc.SessionDescription, sig []byte) error {
	if !ed25519.Verify(c.PeerKey, sdpSigned(c.Binding, c.Peer, d.Type.String(), d.SDP), sig) {
		return ErrBadSignature
	}
	return nil
}

// negotiationFailed ends the link on any SDP it cannot use: the peer is a
// node, not a client to correct. A candidate it cannot use is only noted.
func (l *link) negotiationFailed(step negotiation.Step, err error) {
	switch step {
	case negotiation.StepOffer:
		l.finish(fmt.Errorf("create relay offer: %w", err))
	case negotiation.StepApplyAnswer:
		if errors.Is(err, negotiation.ErrNoOffer) {
			l.log.Debug("relay answer without an offer")
			return
		}
		l.finish(fmt.Errorf("apply relay answer: %w", err))
	case negotiation.StepApplyOffer:
		l.finish(fmt.Errorf("apply relay offer: %w", err))
	case negotiation.StepAnswer:
		l.finish(fmt.Errorf("answer relay offer: %w", err))
	case negotiation.StepVerify:
		l.finish(err)
	case negotiation.StepCandidate:
		l.log.Debug("relay candidate", "err", err)
	}
}

// onCandidate takes a candidate the peer named from its side: its
// "publish" connection is the one this node receives on.
func (l *link) onCandidate(target string, c *signal.Candidate) {
	if target == signal.TargetSubscribe {
		l.sendNeg.Candidate(c)
	} else {
		l.recvNeg.Candidate(c)
	}
}

// tick measures the rates of the peer's layers (for this node's
// subscribers' bandwidth allocation), tells the peer which of its layers
// are wanted here and forwards those the peer wants, keeps the link alive
// and retries a deferred offer.
func (l *link) tick(now time.Time) {
	elapsed := now.Sub(l.lastTick).Seconds()
	l.lastTick = now
	for _, p := range l.ups {
		p.sampleRates(elapsed)
	}
	l.tellWanted(now)
	// What the publisher sends may change (a layer stops, another one
	// starts): what stands in for a wanted layer follows.
	for _, d := range l.downs {
		l.applyWanted(d)
	}
	if now.Sub(l.lastPing) >= linkPingInterval {
		l.lastPing = now
		l.send(signal.Message{Type: signal.TypePing})
	}
	l.sendNeg.MaybeOffer()
}

func pcReady(pc *webrtc.PeerConnection) bool {
	return pc.RemoteDescription() == nil || pc.ConnectionState() == webrtc.PeerConnectionStateConnected
}

func (l *link) info() RelayInfo {
	ri := RelayInfo{
		Meeting: l.cfg.Meeting, Peer: l.cfg.Peer, Dialer: l.cfg.Dialer,
		Connected:  pcReady(l.sendPC) && pcReady(l.recvPC),
		Since:      l.started,
		TracksSent: int(l.tracksSent.Load()), TracksReceived: int(l.tracksRecv.Load()),
		Participants: int(l.remoteMembers.Load()), PeerCert: l.cfg.PeerCert,
	}
	for q := range numLayers {
		ri.LayerBytesSent[q] = l.bytesSent[q].Load()
		ri.LayerBytesReceived[q] = l.bytesRecv[q].Load()
		ri.BytesSent += ri.LayerBytesSent[q]
		ri.BytesReceived += ri.LayerBytesReceived[q]
	}
	return ri
}
