// NodeSession is one connection to one media node (docs/PROTOCOL.md): a
// WebSocket carrying JSON messages, opened with the join token, and two
// RTCPeerConnections — publish (this client offers) and subscribe (the node
// offers) — with trickled ICE candidates naming their connection. Frames
// pass through the E2EE worker's transforms on both.
//
// It emits events (EventTarget, detail in event.detail): welcome,
// participant (joined/updated), participant-left, track (a remote
// MediaStreamTrack with its participant), track-ended, chat, relay, move,
// removed (the node's leave, with its reason), closed (connection lost),
// state (connecting/connected/failed of the media connections).

const PROTOCOL_VERSION = 1;
const WELCOME_TIMEOUT_MS = 10000;

export class NodeSession extends EventTarget {
  // answer is the control plane's join answer; local is {audio, video}
  // MediaStreamTracks or nulls; e2ee is the MediaCrypto that attaches the
  // frame transforms.
  constructor({ answer, local, e2ee, stream }) {
    super();
    this.answer = answer;
    this.id = answer.participant_id;
    this.node = answer.node;
    this.local = { audio: local?.audio ?? null, video: local?.video ?? null };
    this.stream = stream ?? new MediaStream();
    this.e2ee = e2ee;
    this.ws = null;
    this.pub = null;
    this.sub = null;
    this.senders = { audio: null, video: null };
    this.pending = { publish: [], subscribe: [] };
    this.subQueue = Promise.resolve();
    this.closed = false;
    this.welcome = null;
    this.tracks = new Map(); // node track id -> track info
    this.participants = new Map(); // the others: id -> {id, name, since, seq}
    this.seq = 0;
    let ready;
    this.ready = new Promise((resolve) => { ready = resolve; });
    this.markReady = ready;
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  send(msg) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, ...msg }));
  }

  // connect opens the WebSocket, joins and resolves with the welcome.
  connect() {
    return new Promise((resolve, reject) => {
      let ws;
      try {
        ws = new WebSocket(this.node.url);
      } catch (err) {
        reject(new Error(`cannot reach the media node: ${err.message}`));
        return;
      }
      this.ws = ws;
      const timer = setTimeout(() => {
        reject(new Error('the media node did not answer'));
        this.close('timeout');
      }, WELCOME_TIMEOUT_MS);
      ws.onopen = () => this.send({ type: 'join', token: this.answer.token });
      ws.onmessage = (ev) => {
        let m;
        try {
          m = JSON.parse(ev.data);
        } catch {
          return;
        }
        if (m.type === 'welcome') {
          clearTimeout(timer);
          this.onWelcome(m).then(() => resolve(m), reject);
          return;
        }
        if (m.type === 'error' && !this.welcome) {
          clearTimeout(timer);
          reject(new Error(m.message || m.code || 'the media node refused the join'));
          return;
        }
        this.handle(m);
      };
      ws.onclose = () => {
        clearTimeout(timer);
        if (!this.welcome) reject(new Error('the media node closed the connection'));
        if (!this.closed) {
          this.closed = true;
          this.teardown();
          this.emit('closed', {});
        }
      };
    });
  }

  iceServers() {
    return [...(this.answer.ice_servers ?? []), ...(this.welcome?.ice_servers ?? [])];
  }

  pcConfig() {
    const cfg = { iceServers: this.iceServers(), bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    if (this.e2ee?.needsEncodedStreams) cfg.encodedInsertableStreams = true;
    return cfg;
  }

  async onWelcome(m) {
    this.welcome = m;
    this.id = m.id || this.id;
    if (m.since > 0) this.since = m.since;
    for (const t of m.tracks ?? []) this.tracks.set(t.id, t);
    for (const p of m.participants ?? []) this.setParticipant(p);
    // Without Since, join order is: those present at welcome, then this
    // participant, then later joiners.
    this.selfSeq = this.seq - 0.5;
    this.sub = new RTCPeerConnection(this.pcConfig());
    this.sub.onicecandidate = (ev) => {
      if (ev.candidate) this.send({ type: 'candidate', target: 'subscribe', candidate: ev.candidate.toJSON() });
    };
    this.sub.ontrack = (ev) => this.onRemoteTrack(ev);
    this.sub.onconnectionstatechange = () => this.checkState();
    this.emit('welcome', m);
    await this.publish();
    this.checkState();
  }

  // publish (re)negotiates the publish connection with the current local
  // tracks; it makes the connection on first use.
  async publish() {
    const kinds = ['audio', 'video'].filter((k) => this.local[k]);
    if (!kinds.length && !this.pub) return;
    if (!this.pub) {
      this.pub = new RTCPeerConnection(this.pcConfig());
      this.pub.onicecandidate = (ev) => {
        if (ev.candidate) this.send({ type: 'candidate', target: 'publish', candidate: ev.candidate.toJSON() });
      };
      this.pub.onconnectionstatechange = () => this.checkState();
      for (const kind of ['audio', 'video']) {
        const track = this.local[kind];
        if (!track) continue;
        const tr = this.pub.addTransceiver(track, { direction: 'sendonly', streams: [this.stream] });
        this.senders[kind] = tr.sender;
        this.e2ee?.protectSender(tr.sender, kind);
      }
      await this.offer();
    }
  }

  async offer() {
    const offer = await this.pub.createOffer();
    await this.pub.setLocalDescription(offer);
    this.awaitingAnswer = true;
    this.send({ type: 'offer', sdp: this.pub.localDescription.sdp });
  }

  // setTrack swaps a local track (camera off/on, device change) without
  // renegotiating; a null track stops sending that kind.
  async setTrack(kind, track) {
    this.local[kind] = track;
    const sender = this.senders[kind];
    if (sender) await sender.replaceTrack(track);
  }

  onRemoteTrack(ev) {
    const stream = ev.streams[0];
    const participant = stream?.id ?? '';
    this.e2ee?.unprotectReceiver(ev.receiver, ev.track.kind, participant);
    this.emit('track', { track: ev.track, participant, kind: ev.track.kind, receiver: ev.receiver });
    ev.track.addEventListener('ended', () => this.emit('track-ended', { track: ev.track, participant }));
  }

  checkState() {
    const states = [this.pub?.connectionState, this.sub?.connectionState].filter(Boolean);
    if (states.includes('failed')) this.emit('state', { state: 'failed' });
    const pubOK = !this.pub || this.pub.connectionState === 'connected';
    const othersPublish = [...this.tracks.values()].some((t) => t.participant !== this.id);
    const subOK = !othersPublish || this.sub?.connectionState === 'connected';
    if (pubOK && subOK && this.welcome) {
      this.markReady();
      this.emit('state', { state: 'connected' });
    }
  }

  handle(m) {
    switch (m.type) {
      case 'answer':
        this.awaitingAnswer = false;
        this.pub?.setRemoteDescription({ type: 'answer', sdp: m.sdp })
          .then(() => this.flushCandidates('publish'))
          .catch((err) => this.emit('warning', { message: `publish answer: ${err.message}` }));
        break;
      case 'offer':
        this.subQueue = this.subQueue.then(() => this.answerOffer(m.sdp));
        break;
      case 'candidate':
        this.addCandidate(m.target, m.candidate);
        break;
      case 'participant_joined':
        if (this.setParticipant(m.participant)) this.emit('participant', m.participant);
        break;
      case 'participant_left':
        if (this.participants.delete(m.participant?.id)) this.emit('participant-left', m.participant);
        break;
      case 'track_published':
        this.tracks.set(m.track.id, m.track);
        this.checkState();
        break;
      case 'track_unpublished':
        this.tracks.delete(m.track.id);
        break;
      case 'chat':
        this.emit('chat', m);
        break;
      case 'relay':
        this.emit('relay', { from: m.from, payload: m.payload });
        break;
      case 'move':
        this.emit('move', { reason: m.reason ?? '' });
        break;
      case 'leave':
        this.closed = true;
        this.emit('removed', { reason: m.reason ?? '' });
        this.teardown();
        break;
      case 'ping':
        this.send({ type: 'pong' });
        break;
      case 'error':
        this.emit('warning', { message: `${m.code}: ${m.message ?? ''}` });
        break;
      default:
        break;
    }
  }

  async answerOffer(sdp) {
    if (!this.sub) return;
    try {
      await this.sub.setRemoteDescription({ type: 'offer', sdp });
      await this.flushCandidates('subscribe');
      const answer = await this.sub.createAnswer();
      await this.sub.setLocalDescription(answer);
      this.send({ type: 'answer', sdp: this.sub.localDescription.sdp });
    } catch (err) {
      this.emit('warning', { message: `subscribe offer: ${err.message}` });
    }
  }

  addCandidate(target, candidate) {
    const pc = target === 'publish' ? this.pub : this.sub;
    if (!candidate?.candidate) return;
    if (!pc || !pc.remoteDescription) {
      this.pending[target]?.push(candidate);
      return;
    }
    pc.addIceCandidate(candidate).catch(() => {});
  }

  async flushCandidates(target) {
    const pc = target === 'publish' ? this.pub : this.sub;
    const list = this.pending[target];
    this.pending[target] = [];
    for (const c of list) await pc.addIceCandidate(c).catch(() => {});
  }

  // setParticipant records another participant (a repeated announcement
  // updates its name or Since) and reports whether it is not this one.
  setParticipant(p) {
    if (!p?.id || p.id === this.id) return false;
    const old = this.participants.get(p.id);
    this.participants.set(p.id, { id: p.id, name: p.name || old?.name || 'Guest', since: p.since ?? old?.since ?? 0, seq: old?.seq ?? this.seq++ });
    return true;
  }

  sendChat(text) {
    this.send({ type: 'chat', text });
  }

  sendRelay(to, payload) {
    this.send(to ? { type: 'relay', to, payload } : { type: 'relay', payload });
  }

  teardown() {
    for (const pc of [this.pub, this.sub]) {
      try {
        pc?.close();
      } catch {
        // Already closed.
      }
    }
  }

  // close says goodbye to the node (a clean leave) and closes everything.
  close() {
    if (!this.closed) {
      this.closed = true;
      this.send({ type: 'leave' });
    }
    this.teardown();
    try {
      this.ws?.close();
    } catch {
      // Already closed.
    }
  }
}
