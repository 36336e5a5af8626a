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
//
// Each session is a participant of its own (a move joins again under a new
// participant id), so each has its own key schedule member and its own
// SFrame Worker: the epochs of the meeting the new participant joins start
// over, and their key ids must never meet the old participant's keys.

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

// rosterOf is everyone's participant id in join order as session s sees
// it: by the Since the node reports (the join token's issue time), then
// id; in arrival order where a node does not report Since.
export function rosterOf(s) {
  const all = [...s.participants.values(), { id: s.id, since: s.since, seq: s.selfSeq ?? -1 }];
  const bySince = all.every((p) => p.since > 0);
  all.sort((a, b) => (bySince ? a.since - b.since || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.seq - b.seq));
  return all.map((p) => p.id);
}

export class Call extends EventTarget {
  constructor({ meeting, name, country, identity, local }) {
    super();
    this.meeting = meeting;
    this.name = name;
    this.country = country || '';
    this.identity = identity;
    this.local = local; // {audio, video, stream}
    this.tracks = new Map(); // participant -> {audio, video}
    this.chat = [];
    this.state = 'connecting';
    this.self = { id: '', since: 0, node: null };
    this.sessions = new Set();
    this.pastStats = [];
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

  // member is the key schedule of the current session's participant.
  get member() {
    return this.session?.member ?? null;
  }

  // participants are the others, as the current session's node reports them.
  get participants() {
    return this.session?.participants ?? new Map();
  }

  joinAPI(replaces) {
    const body = { name: this.name };
    if (this.country) body.location = { country: this.country };
    if (replaces) body.replaces = replaces;
    return api.join(this.meeting, body);
  }

  // start joins; a refusal rejects with the APIError.
  async start() {
    if (!MediaCrypto.available()) {
      throw new Error('This browser cannot encrypt media end to end (it lacks RTCRtpScriptTransform and encoded streams). Use a current Chrome, Edge, Firefox or Safari.');
    }
    this.setState('connecting');
    const s = await this.connect(await this.joinAPI(''));
    this.adopt(s);
    this.ticker = setInterval(() => this.tick(), 1000);
  }

  adopt(s) {
    this.tracker.adopt(s);
    this.activate(s);
    s.ready.then(() => {
      if (this.session === s && this.state !== 'ended' && this.state !== 'moving') this.setState('connected');
    });
  }

  // connect opens a session to the node of a join answer, with its own
  // key schedule member and Worker, and wires its events. Participant
  // lists, chat and the UI follow only the current session; keys follow
  // every live one.
  async connect(answer) {
    const media = new MediaCrypto();
    const member = await Member.create({ meeting: this.meeting, participant: answer.participant_id, identity: this.identity, media });
    const s = new NodeSession({ answer, local: { audio: this.local.audio, video: this.local.video }, e2ee: media, stream: this.local.stream });
    s.since = tokenSince(answer.token);
    s.member = member;
    s.crypto = media;
    member.onChange(() => this.session === s && this.emit('security'));
    const current = () => this.session === s;
    s.addEventListener('participant', () => this.participantsChanged(s));
    s.addEventListener('participant-left', (e) => {
      if (current()) this.tracks.delete(e.detail.id);
      this.participantsChanged(s);
    });
    s.addEventListener('track', (e) => this.onTrack(s, e.detail));
    s.addEventListener('chat', (e) => current() && this.onChat(e.detail));
    s.addEventListener('relay', (e) => this.onRelay(s, e.detail));
    s.addEventListener('move', (e) => current() && this.move(e.detail.reason));
    // While a move is under way the old node may end the old connection
    // as soon as the new one is up: that is the move, not the end.
    const moving = () => this.tracker.moving && current();
    s.addEventListener('removed', (e) => !moving() && current() && this.onRemoved(e.detail.reason));
    s.addEventListener('closed', () => {
      this.retire(s);
      if (!moving() && current()) this.onLost();
    });
    const close = s.close.bind(s);
    s.close = (reason) => {
      close(reason);
      this.retire(s);
    };
    this.sessions.add(s);
    try {
      await s.connect();
    } catch (err) {
      s.close('failed');
      throw err;
    }
    this.send(s, [member.announce()]);
    s.announcedTo = new Set(rosterOf(s));
    await this.rosterChanged(s);
    return s;
  }

  // retire stops a session's key schedule and Worker, keeping its counters.
  retire(s) {
    if (!this.sessions.delete(s)) return;
    s.crypto.stats().then((st) => this.pastStats.push(...st)).finally(() => s.crypto.close());
  }

  // activate makes s the session the page shows.
  activate(s) {
    this.self = { id: s.id, since: s.since, node: s.node };
    this.emit('node', s.node);
    this.emit('participants');
    this.emit('security');
  }

  participantsChanged(s) {
    if (this.session === s) this.emit('participants');
    this.rosterChanged(s);
  }

  async rosterChanged(s) {
    if (!this.sessions.has(s)) return;
    const roster = rosterOf(s);
    // Relay messages reach only those present when they are sent, and a
    // participant on another node becomes present only once the nodes
    // link up: an announcement sent at join may never have reached it.
    // Everyone who appears gets this member's announcement directly, so a
    // leader never waits on one that was lost (the periodic re-announce
    // stops as soon as a member holds an epoch, even its own).
    const known = s.announcedTo ?? new Set([s.id]);
    const announce = s.member.announce().payload;
    for (const id of roster) if (!known.has(id)) s.sendRelay(id, announce);
    s.announcedTo = new Set(roster);
    this.send(s, await s.member.onRosterChange(roster));
    if (this.session === s) this.emit('security');
  }

  async tick() {
    if (this.state === 'ended') return;
    for (const s of this.sessions) this.send(s, await s.member.tick());
  }

  send(s, outs) {
    for (const o of outs) s.sendRelay(o.to, o.payload);
  }

  async onRelay(s, { from, payload }) {
    if (!this.sessions.has(s)) return;
    const r = await s.member.handleMessage(from, payload);
    this.send(s, r.out);
    if (r.error && !r.error.deferred) console.info(`oakmeet: key message from ${from} refused: ${r.error.message}`);
  }

  onTrack(s, { participant, kind, track }) {
    if (this.session !== s && this.session) {
      // A session still being moved to: its tracks show once it is current.
      s.earlyTracks = [...(s.earlyTracks ?? []), { participant, kind, track }];
      return;
    }
    this.setTrack(participant, kind, track);
  }

  setTrack(participant, kind, track) {
    const t = this.tracks.get(participant) ?? {};
    t[kind] = track;
    this.tracks.set(participant, t);
    this.emit('track', { participant, kind, track });
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
    for (const s of this.sessions) await s.setTrack(kind, track);
  }

  // stats are the SFrame counters of every transform this call ran.
  async stats() {
    const live = await Promise.all([...this.sessions].map((s) => s.crypto.stats()));
    return [...this.pastStats, ...live.flat()];
  }

  async move(reason) {
    if (this.state === 'ended') return;
    this.movesAsked = (this.movesAsked ?? 0) + 1;
    this.setState('moving', reason);
    try {
      const s = await this.tracker.move(reason);
      this.tracks.clear();
      for (const t of s.earlyTracks ?? []) this.setTrack(t.participant, t.kind, t.track);
      s.earlyTracks = [];
      this.activate(s);
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
        this.tracks.clear();
        this.adopt(s);
        this.reconnecting = false;
        return;
      } catch (err) {
        if (err.code) {
          this.reconnecting = false;
          this.end(refusalMessage(err));
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
    for (const s of [...this.sessions]) s.close();
  }

  leave() {
    this.end('');
  }
}
