// Call is one participant in one meeting, without any user interface: it
// joins through the control plane, keeps a NodeSession to the node it was
// placed on (moving make-before-break when the node asks), runs the
// end-to-end key schedule over the node's relay messages, and tells the
// page what changed through events:
//
//   state         {state: connecting|connected|reconnecting|moving|ended, reason}
//   participants  the participant list changed
//   track         a remote track arrived {participant, kind, track}
//   chat          {from, name, text, time, self}
//   security      the epoch, security code or roster changed
//   node          the node this participant is on changed

import { api, refusalMessage } from './api.js';
import { Member } from './e2ee/group.js';
import { MediaCrypto } from './e2ee/media.js';
import { MoveTracker } from './movetracker.js';
import { NodeSession } from './nodesession.js';

const RECONNECT_ATTEMPTS = 5;

// tokenSince reads the issue time of a join token (the Since the node
// orders this participant by), in Unix milliseconds; 0 if unreadable.
export function tokenSince(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload + '='.repeat((4 - (payload.length % 4)) % 4)));
    return Math.floor(Date.parse(claims.iat)) || 0;
  } catch {
    return 0;
  }
}

export class Call extends EventTarget {
  constructor({ meeting, name, country, identity, local }) {
    super();
    this.meeting = meeting;
    this.name = name;
    this.country = country || '';
    this.identity = identity;
    this.local = local; // {audio, video, stream}
    this.crypto = new MediaCrypto();
    this.tracks = new Map(); // participant -> {audio, video}
    this.chat = [];
    this.member = null;
    this.state = 'connecting';
    this.self = { id: '', since: 0, node: null };
    this.tracker = new MoveTracker({
      join: (replaces) => this.joinAPI(replaces),
      connect: (answer) => this.connect(answer),
    });
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.emit('state', { state, reason });
  }

  get session() {
    return this.tracker.current;
  }

  // participants are the others, as the current session's node reports them.
  get participants() {
    return this.session?.participants ?? this.pendingSession?.participants ?? new Map();
  }

  joinAPI(replaces) {
    const body = { name: this.name };
    if (this.country) body.location = { country: this.country };
    if (replaces) body.replaces = replaces;
    return api.join(this.meeting, body);
  }

  // start joins; a refusal rejects with the APIError.
  async start() {
    if (!this.crypto.supported) {
      throw new Error('This browser cannot encrypt media end to end (it lacks RTCRtpScriptTransform and encoded streams). Use a current Chrome, Edge, Firefox or Safari.');
    }
    this.setState('connecting');
    const answer = await this.joinAPI('');
    const s = await this.connect(answer);
    this.tracker.adopt(s);
    this.activate(s);
    this.ticker = setInterval(() => this.tick(), 1000);
    s.ready.then(() => {
      if (this.session === s && this.state !== 'ended') this.setState('connected');
    });
  }

  // connect opens a session to the node of a join answer and wires its
  // events; participant events count only from the current session.
  async connect(answer) {
    const s = new NodeSession({ answer, local: { audio: this.local.audio, video: this.local.video }, e2ee: this.crypto, stream: this.local.stream });
    s.since = tokenSince(answer.token);
    const current = () => this.session === s || (!this.session && this.pendingSession === s);
    s.addEventListener('participant', () => current() && this.participantsChanged());
    s.addEventListener('participant-left', (e) => {
      this.tracks.delete(e.detail.id);
      if (current()) this.participantsChanged();
    });
    s.addEventListener('track', (e) => this.onTrack(s, e.detail));
    s.addEventListener('chat', (e) => current() && this.onChat(e.detail));
    s.addEventListener('relay', (e) => this.onRelay(e.detail));
    s.addEventListener('move', (e) => current() && this.move(e.detail.reason));
    // While a move is under way the old node may end the old connection
    // as soon as the new one is up: that is the move, not the end.
    const moving = () => this.tracker.moving && this.session === s;
    s.addEventListener('removed', (e) => !moving() && current() && this.onRemoved(e.detail.reason));
    s.addEventListener('closed', () => !moving() && current() && this.onLost());
    this.pendingSession = s;
    await s.connect();
    return s;
  }

  // activate makes s the session everything goes through, with a key
  // schedule member for its participant id (kept when a move keeps the id).
  async activate(s) {
    this.self = { id: s.id, since: s.since, node: s.node };
    if (!this.member || this.member.participant !== s.id) {
      this.member = await Member.create({ meeting: this.meeting, participant: s.id, identity: this.identity, media: this.crypto });
      this.member.onChange(() => this.emit('security'));
      this.send([this.member.announce()]);
    }
    this.emit('node', s.node);
    this.emit('participants');
    await this.rosterChanged();
  }

  // roster is everyone's participant id in join order: by the Since the
  // node reports (the join token's issue time), then id; arrival order
  // where a node does not report Since.
  roster() {
    const all = [...this.participants.values(), { id: this.self.id, since: this.self.since, seq: this.session?.selfSeq ?? -1 }];
    const bySince = all.every((p) => p.since > 0);
    all.sort((a, b) => (bySince ? a.since - b.since || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.seq - b.seq));
    return all.map((p) => p.id);
  }

  participantsChanged() {
    this.emit('participants');
    this.rosterChanged();
  }

  async rosterChanged() {
    if (!this.member) return;
    this.send(await this.member.onRosterChange(this.roster()));
    this.emit('security');
  }

  async tick() {
    if (!this.member || this.state === 'ended') return;
    this.send(await this.member.tick());
  }

  send(outs) {
    for (const o of outs) this.session?.sendRelay(o.to, o.payload);
  }

  async onRelay({ from, payload }) {
    if (!this.member) return;
    const r = await this.member.handleMessage(from, payload);
    this.send(r.out);
    if (r.error && !r.error.deferred) console.info(`oakmeet: key message from ${from} refused: ${r.error.message}`);
  }

  onTrack(s, { participant, kind, track }) {
    const t = this.tracks.get(participant) ?? {};
    t[kind] = track;
    this.tracks.set(participant, t);
    if (this.session === s || !this.session) this.emit('track', { participant, kind, track });
    track.addEventListener('ended', () => {
      const cur = this.tracks.get(participant);
      if (cur?.[kind] === track) {
        delete cur[kind];
        this.emit('participants');
      }
    });
  }

  onChat(m) {
    const self = m.from === this.self.id;
    const name = self ? this.name : this.participants.get(m.from)?.name ?? 'Someone';
    const entry = { from: m.from, name, text: m.text, time: m.time || Date.now(), self };
    this.chat.push(entry);
    this.emit('chat', entry);
  }

  sendChat(text) {
    this.session?.sendChat(text);
  }

  async setLocalTrack(kind, track) {
    this.local[kind] = track;
    await this.session?.setTrack(kind, track);
  }

  async move(reason) {
    if (this.state === 'ended') return;
    this.movesAsked = (this.movesAsked ?? 0) + 1;
    this.setState('moving', reason);
    try {
      const s = await this.tracker.move(reason);
      await this.activate(s);
      this.setState('connected');
    } catch (err) {
      // The old connection stays if it still can; the node ends it if it
      // must, with its reason.
      console.info(`oakmeet: move failed: ${err.message}`);
      if (err.code) this.end(refusalMessage(err));
      else if (this.session?.closed) this.onLost();
      else this.setState('connected');
    }
  }

  onRemoved(reason) {
    this.end(reason || 'The media server ended this connection.');
  }

  // onLost reconnects through the control plane after an unexpected drop.
  async onLost() {
    if (this.state === 'ended' || this.reconnecting) return;
    this.reconnecting = true;
    this.setState('reconnecting');
    for (let i = 0; i < RECONNECT_ATTEMPTS && this.state !== 'ended'; i++) {
      await new Promise((r) => setTimeout(r, Math.min(8000, 500 * 2 ** i)));
      try {
        const s = await this.connect(await this.joinAPI(''));
        this.tracker.adopt(s);
        await this.activate(s);
        this.reconnecting = false;
        s.ready.then(() => this.session === s && this.setState('connected'));
        return;
      } catch (err) {
        if (err.code) {
          this.reconnecting = false;
          this.end(err.message);
          return;
        }
      }
    }
    this.reconnecting = false;
    this.end('The connection to the meeting was lost.');
  }

  end(reason) {
    if (this.state === 'ended') return;
    clearInterval(this.ticker);
    this.setState('ended', reason);
    this.session?.close();
    this.crypto.close();
  }

  leave() {
    this.end('');
  }
}
