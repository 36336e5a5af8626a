// NodeSession is one connection to one media node (docs/PROTOCOL.md): a
// WebSocket carrying JSON messages, opened with the join token, and two
// RTCPeerConnections — publish (this client offers) and subscribe (the node
// offers) — with trickled ICE candidates naming their connection. Frames
// pass through the E2EE worker's transforms on both.
//
// It emits events (EventTarget, detail in event.detail): welcome,
// participant (joined/updated), participant-left, track (a remote
// MediaStreamTrack with its participant), track-ended, chat, relay, move,
// host (a host statement, to verify),
// removed (the node's leave, with its reason), closed (connection lost),
// state (connecting/connected/failed of the media connections), refused
// (this client refuses the node: {code, message}).
//
// The node proves it holds the identity key its certificate names: every
// offer and answer it sends carries its signature over the SDP (which
// holds its DTLS fingerprint), this participant's id and the nonce of this
// participant's join (nodecert.SDPTBS). An SDP whose signature does not
// verify is never set as a remote description, so no media flows to or
// from a node that cannot prove who it is; the session says "refused".
//
// The media path is authenticated too, not only the SDP: the welcome
// carries ice_urls, every STUN/TURN URL the node vouches for, signed
// (kind "welcome", the URLs joined by "\n"); a welcome whose signature
// does not verify refuses the node (node_proof_invalid), and an ICE server
// (from the join answer or the welcome) is used only if every one of its
// URLs is in the signed list, so a control plane cannot slip in its own
// TURN server. Every trickled candidate carries the node's signature
// (kind "candidate:"+target over the candidate string exactly as sent);
// one that does not verify is dropped, never added.

import { b64, fromB64 } from './e2ee/bytes.js';
import { verifySDP } from './nodecert.js';
import { NODE_PROOF_INVALID, NodeRefusal } from './nodecheck.js';
import { SCREEN_KINDS, addScreenSenders, kindOfSource, msidTrackID, offerSources } from './screenshare.js';
import { CAMERA_LAYERS } from './localmedia.js';

const PROTOCOL_VERSION = 1;
const WELCOME_TIMEOUT_MS = 10000;
// Error codes of the node after which this session's media cannot go on.
const FATAL_NODE_ERRORS = new Set(['bad_sdp', 'unexpected_answer', 'unsupported_version', 'unexpected_type']);

export class NodeSession extends EventTarget {
  // answer is the control plane's join answer; local is {audio, video}
  // MediaStreamTracks or nulls; e2ee is the MediaCrypto that attaches the
  // frame transforms. meeting is the meeting id, cert the node's verified
  // certificate (nodecert.js), hostKey and statement the host key and the
  // wire form of the newest host policy statement this client verified,
  // which the join message hands the node.
  constructor({ answer, local, e2ee, stream, meeting, cert, hostKey, statement }) {
    super();
    this.answer = answer;
    this.meeting = meeting;
    this.cert = cert;
    this.hostKey = hostKey;
    this.statement = statement;
    // A fresh challenge per connection: the node signs every SDP it sends
    // over it, so a signature from another connection does not replay.
    this.nonce = crypto.getRandomValues(new Uint8Array(32));
    this.verifiedSDP = 0;
    this.id = answer.participant_id;
    this.node = answer.node;
    this.local = { audio: local?.audio ?? null, video: local?.video ?? null, screen: local?.screen ?? null, screenAudio: local?.screenAudio ?? null };
    this.stream = stream ?? new MediaStream();
    this.e2ee = e2ee;
    this.ws = null;
    this.pub = null;
    this.sub = null;
    this.senders = { audio: null, video: null, screen: null, screenAudio: null };
    this.answered = Promise.resolve();
    this.negotiations = Promise.resolve();
    this.pending = { publish: [], subscribe: [] };
    this.subQueue = Promise.resolve();
    this.closed = false;
    this.welcome = null;
    this.tracks = new Map(); // node track id -> track info
    // A browser's remote track id need not be the node's (Firefox makes
    // its own): remote MediaStreamTrack -> node track id, for subscribe.
    this.nodeIDs = new WeakMap();
    this.participants = new Map(); // the others: id -> {id, name, since, seq}
    this.seq = 0;
    let ready;
    let unready;
    this.ready = new Promise((resolve, reject) => { ready = resolve; unready = reject; });
    // ready rejects when this client refuses the node (refuse): a move
    // waiting for it fails instead of switching to a refused node.
    this.ready.catch(() => {});
    this.markReady = ready;
    this.markRefused = unready;
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
      ws.onopen = () => this.send({
        type: 'join', token: this.answer.token, nonce: b64(this.nonce),
        host_key: this.hostKey ? b64(this.hostKey) : undefined, statement: this.statement,
      });
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

  // iceServers are the join answer's and the welcome's ICE servers whose
  // every URL the node vouched for in its signed welcome; the others are
  // dropped (and said so, once).
  iceServers() {
    const vouched = new Set(this.iceURLs ?? []);
    const kept = [];
    const dropped = [];
    for (const srv of [...(this.answer.ice_servers ?? []), ...(this.welcome?.ice_servers ?? [])]) {
      const urls = [].concat(srv?.urls ?? []);
      if (urls.length && urls.every((u) => vouched.has(u))) kept.push(srv);
      else dropped.push(urls.join(' '));
    }
    if (dropped.length && !this.droppedICE) {
      this.droppedICE = dropped;
      console.info(`oakmeet: ICE servers the media server ${this.node?.id ?? ''} did not vouch for are not used: ${dropped.join(', ')}`);
    }
    return kept;
  }

  pcConfig() {
    const cfg = { iceServers: this.iceServers(), bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' };
    if (this.e2ee?.needsEncodedStreams) cfg.encodedInsertableStreams = true;
    return cfg;
  }

  async onWelcome(m) {
    if (!(await this.provenWelcome(m))) {
      const message = `The media server ${this.node?.id ?? ''} did not prove it holds the key its certificate names: the signature of its welcome ${m.sig ? 'does not verify' : 'is missing'}.`;
      const err = new NodeRefusal(NODE_PROOF_INVALID, message, this.node?.id);
      // Refused before any media connection exists: connect() rejects with
      // the refusal, and the call joins elsewhere saying why.
      this.refusal = { code: NODE_PROOF_INVALID, message };
      this.markRefused(err);
      throw err;
    }
    this.iceURLs = [...m.ice_urls ?? []];
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
    const kinds = ['audio', 'video', ...SCREEN_KINDS].filter((k) => this.local[k]);
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
        const init = { direction: 'sendonly', streams: [this.stream] };
        if (kind === 'video') init.sendEncodings = CAMERA_LAYERS;
        const tr = this.pub.addTransceiver(track, init);
        this.senders[kind] = tr.sender;
        if (this.sendingStopped) tr.sender.replaceTrack(null).catch(() => {});
        this.e2ee?.protectSender(tr.sender, kind);
      }
      addScreenSenders(this);
      await this.offer();
    }
  }

  async offer() {
    const offer = await this.pub.createOffer();
    await this.pub.setLocalDescription(offer);
    this.awaitingAnswer = true;
    this.answered = new Promise((resolve) => { this.markAnswered = resolve; });
    this.send({ type: 'offer', sdp: this.pub.localDescription.sdp, sources: offerSources(this) });
  }

  // renegotiate offers the publish connection's changed transceivers once
  // the node has answered the offer before (offers never overlap).
  renegotiate() {
    this.negotiations = this.negotiations.then(async () => {
      await this.answered;
      if (!this.closed && this.pub) await this.offer();
    }).catch((err) => this.emit('warning', { message: `publish offer: ${err.message}` }));
    return this.negotiations;
  }

  // setScreen publishes the shared screen's tracks ({screen, screenAudio},
  // nulls to stop) as extra transceivers of the publish connection.
  async setScreen(tracks) {
    const { screen = null, screenAudio = null } = tracks ?? {};
    this.local.screen = screen;
    this.local.screenAudio = screenAudio;
    if (!this.welcome || this.closed) return; // the welcome's publish takes them
    if (!this.pub) {
      await this.publish();
      return;
    }
    addScreenSenders(this);
    await this.renegotiate();
  }

  // setTrack swaps a local track (camera off/on, device change) without
  // renegotiating; a null track stops sending that kind. While sending is
  // stopped (stopSending) the track is only remembered.
  async setTrack(kind, track) {
    this.local[kind] = track;
    const sender = this.senders[kind];
    if (sender && !this.sendingStopped) await sender.replaceTrack(track);
  }

  // stopSending stops every sender at once (the host's newest policy
  // rules this node out): no more RTP goes to it, while what it sends this
  // client still plays until the move. It resolves once the senders have
  // no track.
  stopSending() {
    if (!this.sendingStopped) {
      this.sendingStopped = true;
      this.stopped = Promise.all(Object.values(this.senders).filter(Boolean)
        .map((sender) => sender.replaceTrack(null).catch(() => {})));
    }
    return this.stopped;
  }

  // resumeSending sends the local tracks again.
  async resumeSending() {
    if (!this.sendingStopped) return;
    await this.stopped;
    this.sendingStopped = false;
    for (const kind of ['audio', 'video', ...SCREEN_KINDS]) {
      const sender = this.senders[kind];
      if (sender && !this.closed) await sender.replaceTrack(this.local[kind]).catch(() => {});
    }
  }

  onRemoteTrack(ev) {
    const stream = ev.streams[0];
    const participant = stream?.id ?? '';
    this.e2ee?.unprotectReceiver(ev.receiver, ev.track.kind, participant);
    // A reused transceiver keeps its first track's id: the node's track id
    // is the msid of the m-line.
    const id = msidTrackID(this.sub.remoteDescription?.sdp, ev.transceiver?.mid) ?? ev.track.id;
    this.nodeIDs.set(ev.track, id);
    const kind = kindOfSource(this.tracks.get(id)?.source, ev.track.kind);
    if (SCREEN_KINDS.includes(kind)) (this.screenIDs ??= new Map()).set(`${participant}/${kind}`, id);
    this.emit('track', { track: ev.track, participant, kind, receiver: ev.receiver });
    ev.track.addEventListener('ended', () => this.emit('track-ended', { track: ev.track, participant }));
  }

  // nodeTrackID is the node's id of a remote track of this session.
  nodeTrackID(track) { return this.nodeIDs.get(track) ?? track.id; }

  checkState() {
    const states = [this.pub?.connectionState, this.sub?.connectionState].filter(Boolean);
    if (states.includes('failed')) this.emit('state', { state: 'failed' });
    const pubOK = !this.pub || this.pub.connectionState === 'connected';
    const othersPublish = [...this.tracks.values()].some((t) => t.participant !== this.id);
    const subOK = !othersPublish || this.sub?.connectionState === 'connected';
    if (pubOK && subOK && this.welcome && !this.refusal) {
      this.markReady();
      this.emit('state', { state: 'connected' });
    }
  }

  handle(m) {
    switch (m.type) {
      case 'answer':
        this.awaitingAnswer = false;
        this.proven(m, 'answer').then((ok) => ok && this.pub?.setRemoteDescription({ type: 'answer', sdp: m.sdp })
          .then(() => this.flushCandidates('publish')))
          .finally(() => this.markAnswered?.())
          .catch((err) => this.emit('warning', { message: `publish answer: ${err.message}` }));
        break;
      case 'offer':
        this.subQueue = this.subQueue.then(async () => {
          if (await this.proven(m, 'offer')) await this.answerOffer(m.sdp);
        });
        break;
      case 'candidate':
        this.candidate(m);
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
      case 'track_unpublished': {
        const kind = kindOfSource(this.tracks.get(m.track.id)?.source ?? m.track.source, m.track.kind);
        this.tracks.delete(m.track.id);
        // A remote track only mutes when its m-line goes inactive: a
        // share that stopped is reported ended here.
        const key = `${m.track.participant}/${kind}`;
        if (SCREEN_KINDS.includes(kind) && this.screenIDs?.get(key) === m.track.id) {
          this.screenIDs.delete(key);
          this.emit('track', { track: null, participant: m.track.participant, kind });
        }
        break;
      }
      case 'chat':
        this.emit('chat', m);
        break;
      case 'relay':
        this.emit('relay', { from: m.from, payload: m.payload });
        break;
      case 'move':
        this.emit('move', { reason: m.reason ?? '' });
        break;
      case 'host':
        // A host statement (docs/PROTOCOL.md): the call verifies it.
        this.emit('host', m.payload);
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
        // An offer or answer the node could not use leaves the media
        // connection without a way forward: the call reconnects. Errors
        // about one message (a chat line, a candidate, a layer) do not.
        if (FATAL_NODE_ERRORS.has(m.code)) this.emit('node-error', { code: m.code, message: `${m.code}: ${m.message ?? ''}` });
        else console.info(`oakmeet: the media server ${this.node?.id ?? ''} reported ${m.code}: ${m.message ?? ''}`);
        break;
      default:
        break;
    }
  }

  // proven resolves to whether an offer or answer from the node carries
  // its valid signature; if not, the session refuses the node (once) and
  // tears the media connections down.
  async proven(m, kind) {
    if (this.refusal) return false;
    let sig = null;
    try {
      sig = fromB64(m.sig ?? '');
    } catch {
      sig = null;
    }
    const ok = !!this.cert && typeof m.sdp === 'string' &&
      await verifySDP(this.cert.identityKey, sig, this.meeting, this.id, this.nonce, kind, m.sdp);
    if (ok) {
      this.verifiedSDP++;
      return true;
    }
    this.refuse(NODE_PROOF_INVALID, `The media server ${this.node?.id ?? ''} did not prove it holds the key its certificate names: the signature of its ${kind} ${sig ? 'does not verify' : 'is missing'}.`);
    return false;
  }

  // provenWelcome resolves to whether the welcome's signature over its
  // ice_urls verifies with the node's certified identity key.
  async provenWelcome(m) {
    const urls = m.ice_urls ?? [];
    if (!Array.isArray(urls) || urls.some((u) => typeof u !== 'string')) return false;
    return this.verifyNode(m.sig, 'welcome', urls.join('\n'));
  }

  async verifyNode(sigB64, kind, text) {
    let sig = null;
    try {
      sig = fromB64(sigB64 ?? '');
    } catch {
      return false;
    }
    return !!this.cert && typeof text === 'string' && verifySDP(this.cert.identityKey, sig, this.meeting, this.id, this.nonce, kind, text);
  }

  refuse(code, message) {
    if (this.refusal) return;
    this.refusal = { code, message };
    this.teardown();
    const err = new Error(message);
    err.refusal = this.refusal;
    this.markRefused(err);
    this.emit('refused', this.refusal);
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

  // candidate adds a trickled candidate once its signature (kind
  // "candidate:"+target over the candidate string, the empty end of
  // candidates included) verifies; a forged one is dropped and logged.
  candidate(m) {
    const target = m.target === 'publish' ? 'publish' : m.target === 'subscribe' ? 'subscribe' : '';
    const text = m.candidate?.candidate ?? '';
    const check = target ? this.verifyNode(m.sig, `candidate:${target}`, text) : Promise.resolve(false);
    check.then((ok) => {
      if (ok) {
        this.addCandidate(target, m.candidate);
        return;
      }
      this.droppedCandidates = (this.droppedCandidates ?? 0) + 1;
      console.info(`oakmeet: a candidate for ${m.target} not signed by the media server ${this.node?.id ?? ''} is dropped: ${text}`);
    }).catch(() => {});
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
