// Mute, camera and raised hands, end-to-end authenticated (docs/E2EE.md
// §8.10): this page's own state goes to every other member as a presence
// key message signed with this browser's identity key, numbered per
// participant id, and others' presence counts only once a session's key
// schedule verified it with the key its sending epoch names for them (the
// roster the security code covers) and its number is above every one
// accepted from them there (e2ee/grouppresence.js). So the server can hold
// a presence back or delay it, but cannot make anyone look muted, unmuted
// or hand-raised.

import { DEFAULT_ANNOUNCE_RETRY_MS } from './e2ee/group.js';
import * as keymsg from './e2ee/keymsg.js';

// MAX_ANSWERED bounds the participants per session whose last answer is
// remembered; past it those answered longer than an interval ago go.
const MAX_ANSWERED = 4 * keymsg.MAX_ROSTER;

const FLAGS = ['mic', 'camera', 'hand', 'screen'];

export class Presence {
  // call is the Call: its sessions (each with its participant id s.id and
  // sendRelay), the current one (session), meeting, identity, presence Map
  // and emit. opts.answerMs is the least time between two answers to one
  // participant's announcements (default the announcement retry), opts.now
  // the clock in ms.
  constructor(call, state = {}, opts = {}) {
    this.call = call;
    this.state = { mic: !!state.mic, camera: !!state.camera, hand: !!state.hand, screen: !!state.screen };
    this.answerMs = opts.answerMs ?? DEFAULT_ANNOUNCE_RETRY_MS;
    this.now = opts.now ?? (() => performance.now());
    this.sentSeq = new Map(); // own participant id -> the last seq sent under it
    this.drops = {}; // why presence messages were dropped -> how many
    // Each session's accepted presence, apart: participant ids come from
    // that session's server, and only the current session's show.
    this.bySession = new WeakMap(); // session -> Map participant -> {mic, camera, hand, screen, seq}
    this.answered = new WeakMap(); // session -> Map participant -> when its announcement was last answered
    this.outbox = new Map(); // session -> Set of recipients ('' is everyone) of the next send
    this.queue = Promise.resolve();
    this.busy = null;
  }

  // set changes this page's state ({mic, camera, hand, screen}, any of
  // them) and, if anything changed, tells everyone at once.
  set(change) {
    let changed = false;
    for (const f of FLAGS) {
      if (!(f in change) || this.state[f] === !!change[f]) continue;
      this.state[f] = !!change[f];
      changed = true;
    }
    if (!changed) return this.queue;
    for (const s of this.call.sessions) if (s.id) this.sendTo(s, ['']);
    return this.queue;
  }

  // sendTo has the state signed under session s's participant id with the
  // next seq and sent to each of to ('' is everyone). Sends asked for while
  // one is being signed merge into one message per session carrying the
  // state of its signing, so a flood of requests costs one signature per
  // session at a time, not one each.
  sendTo(s, to) {
    const want = this.outbox.get(s) ?? new Set();
    for (const id of to) want.add(id);
    this.outbox.set(s, want);
    if (!this.busy) {
      this.busy = this.drain();
      this.queue = this.busy;
    }
    return this.queue;
  }

  async drain() {
    try {
      while (this.outbox.size) {
        const [s, want] = this.outbox.entries().next().value;
        this.outbox.delete(s);
        const pid = s.id;
        const seq = (this.sentSeq.get(pid) ?? 0) + 1;
        this.sentSeq.set(pid, seq);
        try {
          const p = await keymsg.newPresence(this.call.meeting, pid, seq, { ...this.state }, this.call.identity);
          const payload = keymsg.encode(p);
          for (const id of want.has('') ? [''] : want) s.sendRelay(id, payload);
        } catch (err) {
          console.info(`oakmeet: send presence: ${err.message}`);
        }
      }
    } finally {
      this.busy = null;
    }
  }

  // answer sends the state to from, whose announcement came on session s
  // (a presence sent on joining may have gone before the nodes linked up),
  // at most once per answerMs: a server replaying announcements cannot
  // make this page sign without end.
  answer(s, from) {
    let m = this.answered.get(s);
    if (!m) this.answered.set(s, (m = new Map()));
    const now = this.now();
    const last = m.get(from);
    if (last !== undefined && now - last < this.answerMs) return this.queue;
    if (last === undefined && m.size >= MAX_ANSWERED) {
      for (const [p, t] of m) if (now - t >= this.answerMs) m.delete(p);
      if (m.size >= MAX_ANSWERED) return this.queue;
    }
    m.delete(from);
    m.set(from, now);
    return this.sendTo(s, [from]);
  }

  // receive takes a presence message session s's key schedule accepted
  // from participant from, verified with identity; p null takes back what
  // was shown for from (its key is no longer the sending epoch's).
  receive(s, from, p, identity) {
    let m = this.bySession.get(s);
    if (!m) this.bySession.set(s, (m = new Map()));
    if (!p) {
      m.delete(from);
      if (this.call.session === s && this.call.presence.delete(from)) this.call.emit('presence', { participant: from });
      return;
    }
    const v = { mic: p.mic, camera: p.camera, hand: p.hand, screen: p.screen, seq: p.seq };
    m.set(from, v);
    if (this.call.session !== s) return;
    this.call.presence.set(from, v);
    this.call.emit('presence', { participant: from, ...v });
  }

  // activate shows session s's presence in place of the last session's:
  // only what s's key schedule accepted, from those its sending epoch names.
  activate(s) {
    this.call.presence.clear();
    for (const [pid, v] of this.bySession.get(s) ?? []) this.call.presence.set(pid, v);
    this.call.emit('presence', {});
  }

  // drop counts a presence message refused, by why (a GroupError's code,
  // or 'malformed').
  drop(code) {
    this.drops[code] = (this.drops[code] ?? 0) + 1;
  }

  // prune forgets the shown presence of those no longer present (the key
  // schedule keeps their last seq).
  prune(present) {
    let changed = false;
    for (const pid of [...this.call.presence.keys()]) {
      if (present.has(pid)) continue;
      this.call.presence.delete(pid);
      changed = true;
    }
    if (changed) this.call.emit('presence', {});
  }
}

// isPresence tells whether a relay payload (its JSON value or text) is a
// presence message, to count its refusal.
export function isPresence(payload) {
  return typeOf(payload) === 'presence';
}

// isAnnouncement tells whether a relay payload is an announcement: one
// that arrives proves the relay from its sender works, so the state goes
// back to it (a presence sent on joining may have gone before the nodes
// linked up).
export function isAnnouncement(payload) {
  return typeOf(payload) === 'announce';
}

function typeOf(payload) {
  if (typeof payload !== 'string') return payload?.type;
  try {
    return JSON.parse(payload)?.type;
  } catch {
    return undefined;
  }
}

// handIcon is the raised-hand mark of tiles, the People panel and the
// control bar.
export function handIcon(cls = '') {
  const span = document.createElement('span');
  span.className = `icon ${cls}`.trim();
  span.setAttribute('aria-hidden', 'true');
  span.innerHTML = '<svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round">' +
    '<path d="M8 13V5.5a1.5 1.5 0 0 1 3 0V11M11 10.5V4a1.5 1.5 0 0 1 3 0v6.5M14 10.5V5.5a1.5 1.5 0 0 1 3 0V12"/>' +
    '<path d="M17 9.5a1.5 1.5 0 0 1 3 0V14a7 7 0 0 1-7 7h-1a6 6 0 0 1-5-2.7L4.3 15a1.6 1.6 0 0 1 2.6-1.9L8 14.5"/></svg>';
  return span;
}
