// Mute, camera and raised hands, end-to-end authenticated (docs/E2EE.md
// §8.10): this page's own state goes to every other member as a presence
// key message signed with this browser's identity key, numbered per
// participant id, and others' presence counts only once the key schedule
// verified it with the key they announced and its number is above every
// one accepted from them before. So the server can hold a presence back
// or delay it, but cannot make anyone look muted, unmuted or hand-raised.

import { hex } from './e2ee/bytes.js';
import * as keymsg from './e2ee/keymsg.js';

// MAX_SEEN bounds the participants whose last accepted seq is kept; it is
// kept past their leaving, so that a server cannot replay an old presence
// to someone who appears again under the same id.
export const MAX_SEEN = 4096;

const FLAGS = ['mic', 'camera', 'hand', 'screen'];

export class Presence {
  // call is the Call: its sessions (each with its participant id s.id and
  // sendRelay), meeting, identity, presence Map and emit.
  constructor(call, state = {}) {
    this.call = call;
    this.state = { mic: !!state.mic, camera: !!state.camera, hand: !!state.hand, screen: !!state.screen };
    this.sentSeq = new Map(); // own participant id -> the last seq sent under it
    this.seen = new Map(); // participant -> {identity (hex), seq}: the last accepted
    this.drops = {}; // why presence messages were dropped -> how many
    this.queue = Promise.resolve();
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

  // sendTo signs the current state under session s's participant id with
  // the next seq and sends it to each of to ('' is everyone). Messages go
  // out in the order they were asked for, each carrying the state of its
  // moment.
  sendTo(s, to) {
    const state = { ...this.state };
    const pid = s.id;
    const seq = (this.sentSeq.get(pid) ?? 0) + 1;
    this.sentSeq.set(pid, seq);
    this.queue = this.queue.then(async () => {
      const p = await keymsg.newPresence(this.call.meeting, pid, seq, state, this.call.identity);
      const payload = keymsg.encode(p);
      for (const id of to) s.sendRelay(id, payload);
    }).catch((err) => console.info(`oakmeet: send presence: ${err.message}`));
    return this.queue;
  }

  // receive takes a presence message the key schedule verified with
  // identity, the key from announced; it counts if its seq is new.
  receive(from, p, identity) {
    const id = hex(identity);
    const prev = this.seen.get(from);
    // A new identity under the same id is a restarted browser, which
    // numbers from 1 again; the same identity must count upwards.
    if (prev && prev.identity === id && p.seq <= prev.seq) {
      // The same seq again is a copy that came twice (to two sessions of
      // one receiver during a move); only the real sender signs any seq.
      this.drop(p.seq === prev.seq ? 'duplicate' : 'replay');
      return;
    }
    this.seen.delete(from);
    this.seen.set(from, { identity: id, seq: p.seq });
    if (this.seen.size > MAX_SEEN) this.seen.delete(this.seen.keys().next().value);
    const v = { mic: p.mic, camera: p.camera, hand: p.hand, screen: p.screen, seq: p.seq };
    this.call.presence.set(from, v);
    this.call.emit('presence', { participant: from, ...v });
  }

  // drop counts a presence message refused, by why (a GroupError's code,
  // 'replay', or 'malformed').
  drop(code) {
    this.drops[code] = (this.drops[code] ?? 0) + 1;
  }

  // prune forgets the shown presence of those no longer present (their
  // last seq stays in seen).
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
