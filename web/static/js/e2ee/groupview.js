// What a group Member shows and when it next needs time (docs/E2EE.md §6),
// as e2ee/group's people.go and NextTick: the people in the meeting as the
// signed rosters and the server's list say, the state of the key exchange,
// and the next moment tick has work. Read-only views of a Member's state;
// group.js owns the state.

import { equal } from './bytes.js';
import { batchDeadline } from './leader.js';

// unheard lists the participants of the member's epochs (the sending one
// and every newer one), other than itself, that have not announced
// themselves to it with the entry those epochs list; removed ones only if
// withRemoved. The deferred epoch counts too, as in e2ee/group: one that
// lists keys other than those this member heard (a participant restarted,
// and its new announcement to this member was lost) waits for exactly that
// answer.
export function unheard(m, withRemoved) {
  const out = new Set();
  const rosters = m.epochs.map((st) => st.roster);
  if (m.pending) rosters.push(m.pending.msg.roster);
  for (const roster of rosters) {
    for (const e of roster) {
      if (e.participant === m.participant || m.isHeard(e) || (!withRemoved && m.isRemoved(e))) continue;
      out.add(e.participant);
    }
  }
  return out;
}

// listedUnheard is, for a leader, the participants of its view it has not
// heard and the host did not remove: those it cannot key yet.
export function listedUnheard(m) {
  if (!m.isLeader()) return [];
  return m.view.filter((p) => p !== m.participant && !m.heard.has(p) && !m.removedPids.has(p));
}

// people is everyone in the sending epoch, the newest epoch and the
// server's roster view, in that order of discovery: {participant, name,
// identity, self, leader, inKeys, pending, listed, heard, removed, node}.
// node is the certificate text of the node the person signed they are on
// (their e2ee node message, verified with the identity key shown here), or
// '' if none reached this member; the client checks it against the host's
// policy. The UI
// shows this list, never the server's alone, and flags listed && !inKeys
// && !pending ("not in the encryption — the server says they are here"),
// (inKeys || pending) && !listed ("in the encryption — the server does not
// list them") and (inKeys || pending) && !heard && !self ("has not
// announced themselves to you").
export function people(m) {
  const out = [];
  const index = new Map();
  const add = (pid) => {
    let ps = index.get(pid);
    if (!ps) {
      ps = { participant: pid, name: '', identity: null, self: pid === m.participant, leader: false, inKeys: false, pending: false, listed: false, heard: false, removed: false };
      index.set(pid, ps);
      out.push(ps);
    }
    return ps;
  };
  const setEntry = (ps, e) => {
    if (!ps.identity) {
      ps.name = e.name;
      ps.identity = e.identity.slice();
    }
    ps.heard = ps.self || m.isHeard(e);
    ps.removed = ps.removed || m.isRemoved(e);
  };
  const newest = m.newest();
  for (const e of m.sending?.roster ?? []) {
    const ps = add(e.participant);
    ps.inKeys = true;
    setEntry(ps, e);
  }
  if (newest && newest !== m.sending) {
    for (const e of newest.roster) {
      const ps = add(e.participant);
      ps.pending = !ps.inKeys;
      setEntry(ps, e);
    }
  }
  for (const pid of m.view) {
    const ps = add(pid);
    ps.listed = true;
    if (!ps.identity) {
      const e = ps.self ? m.self : m.heard.get(pid);
      if (e) setEntry(ps, e);
    }
    ps.removed = ps.removed || m.removedPids.has(pid);
  }
  const leader = m.sending ? m.sending.leader.participant : m.leader;
  const lp = index.get(leader);
  if (lp) lp.leader = true;
  for (const ps of out) {
    const n = ps.self ? null : m.nodes?.get(ps.participant);
    // A node message counts only under the identity key this list shows.
    ps.node = ps.self ? m.nodeCert ?? '' : n && (!ps.identity || equal(n.identity, ps.identity)) ? n.cert : '';
  }
  return out;
}

// status: {epoch (sending, 0 before the first), newest (installed),
// awaitingAcks (leading: the members that have not acked the newest epoch
// while it is not committed), unheard (members of the sending and newest
// epochs that have not announced themselves to this member)}.
export function status(m) {
  const s = { epoch: m.sending?.number ?? 0, newest: 0, awaitingAcks: [], unheard: [] };
  const n = m.newest();
  if (!n) return s;
  s.newest = n.number;
  if (n.mine && !n.committed) {
    n.roster.forEach((e, i) => {
      if (i !== n.index && !n.acks.has(e.participant)) s.awaitingAcks.push(e.participant);
    });
  }
  for (const st of [m.sending, n]) {
    if (!st) continue;
    st.roster.forEach((e, i) => {
      if (i !== st.index && !m.isHeard(e) && !s.unheard.includes(e.participant)) s.unheard.push(e.participant);
    });
  }
  return s;
}

const MIN_TICK_MS = 50;
const MAX_TICK_MS = 1000;

// nextDue is when something is next due — an announcement to repeat, keys
// to retire, an ack to re-send, a join batch to close, a periodic re-key —
// unbounded; Infinity if nothing is.
export function nextDue(m) {
  let t = Infinity;
  if (m.epochs.length === 0) t = Math.min(t, m.lastBroadcast + m.announceRetryMs);
  for (const p of unheard(m, false)) t = Math.min(t, (m.sentTo.get(p) ?? -Infinity) + m.announceRetryMs);
  for (const p of [m.awaitedLeader(), ...listedUnheard(m)]) if (p) t = Math.min(t, (m.sentTo.get(p) ?? -Infinity) + m.announceRetryMs);
  for (const r of m.retired) t = Math.min(t, r.until);
  for (const st of m.epochs) if (!st.committed && !st.mine && st.ackedAt > -Infinity) t = Math.min(t, st.ackedAt + m.announceRetryMs);
  if (m.isLeader()) {
    if (m.batch) t = Math.min(t, batchDeadline(m));
    const n = m.newest();
    if (n) t = Math.min(t, n.at + m.rekeyMs);
  }
  return t;
}

// nextTick is nextDue within 50 ms to 1 s from now.
export function nextTick(m) {
  const now = m.now();
  return Math.min(Math.max(nextDue(m), now + MIN_TICK_MS), now + MAX_TICK_MS);
}
