// Presence messages as a member takes them (docs/E2EE.md §8.10), as
// e2ee/group/presence.go does: only the key the sending epoch's roster
// names counts (the roster the security code covers, not a key the server
// merely announced), the highest seq per participant survives any key
// change, and a full seq map refuses new ids rather than forget the seq of
// someone present.

import { hex } from './bytes.js';
import * as keymsg from './keymsg.js';
import { GroupError } from './group.js';

// MAX_PRESENCE bounds the participants whose last seq is kept; it
// outlives their leaving, so that an old presence cannot be replayed to
// an id that appears again.
export const MAX_PRESENCE = 4 * keymsg.MAX_ROSTER;

// MAX_PRESENCE_WAIT bounds the presence messages kept for participants
// not yet in the sending epoch.
export const MAX_PRESENCE_WAIT = 2 * keymsg.MAX_ROSTER;

export function initPresence(m) {
  m.presence = {
    seq: new Map(), // participant -> the highest seq accepted
    shown: new Map(), // participant -> the hex key its shown presence verified with
    wait: new Map(), // participant -> {p, id}: the newest before the sending epoch named it
  };
}

// keyedIdentity is p's identity key in the sending epoch's roster, null if
// it has none there (or the host removed that entry).
export function keyedIdentity(m, pid) {
  const e = m.sending?.roster.find((x) => x.participant === pid);
  return e && !m.isRemoved(e) ? e.identity : null;
}

// handlePresence hands a participant's presence to m.onPresence(from, p,
// identity) once it verifies with the sending epoch's key for it and its
// seq is above every one accepted from that participant.
export async function handlePresence(m, from, p) {
  if (p.participant !== from) throw new GroupError('sender_mismatch', `${from} sent a presence message for ${p.participant}`);
  if (m.removedPids.has(from)) throw new GroupError('removed', `presence message of ${from}, whom the host removed`);
  const id = keyedIdentity(m, from);
  if (!id) return waitPresence(m, from, p);
  await verify(p, id);
  accept(m, from, p, id);
}

async function verify(p, id) {
  try {
    await keymsg.verifyPresence(p, id);
  } catch (err) {
    throw new GroupError('bad_signature', err.message);
  }
}

function accept(m, from, p, id) {
  const { seq, shown } = m.presence;
  const last = seq.get(from);
  // The same seq again is a copy that came twice; only the real sender
  // signs any seq.
  if (last !== undefined && p.seq <= last) throw new GroupError(p.seq === last ? 'duplicate' : 'replay', `presence seq ${p.seq} of ${from}, ${last} accepted`);
  if (last === undefined && seq.size >= MAX_PRESENCE && !forgetOne(m)) throw new GroupError('too_many', `presence message of ${from}: too many participants`);
  seq.set(from, p.seq);
  shown.set(from, hex(id));
  m.onPresence?.(from, p, id);
}

// forgetOne drops the seq of one participant that neither the view nor
// any epoch names, oldest first; false if there is none.
function forgetOne(m) {
  for (const pid of m.presence.seq.keys()) {
    if (m.view.includes(pid) || m.epochs.some((st) => st.roster.some((e) => e.participant === pid))) continue;
    m.presence.seq.delete(pid);
    m.presence.shown.delete(pid);
    return true;
  }
  return false;
}

// waitPresence keeps the presence of a participant not in the sending
// epoch for when it is, if it verifies with the key that participant
// announced or a newer epoch names.
async function waitPresence(m, from, p) {
  const id = m.identityOf(from);
  if (!id) throw new GroupError('unknown_sender', `presence message of ${from}, who has not announced themselves`);
  await verify(p, id);
  const { wait } = m.presence;
  const prev = wait.get(from);
  if (!prev && wait.size >= MAX_PRESENCE_WAIT) throw new GroupError('too_many', `presence message of ${from}: too many waiting`);
  if (!prev || prev.p.seq < p.seq || hex(prev.id) !== hex(id)) wait.set(from, { p, id });
  throw new GroupError('not_in_keys', `presence message of ${from}, not in the sending epoch yet`, true);
}

// presenceKeysChanged follows a new sending epoch: what is shown for a
// participant it does not name with the key the presence verified with
// goes (m.onPresence(pid, null); its seq stays), and waiting presence of
// those it now names is taken.
export function presenceKeysChanged(m) {
  const { shown, wait } = m.presence;
  for (const [pid, h] of [...shown]) {
    const id = keyedIdentity(m, pid);
    if (id && hex(id) === h) continue;
    shown.delete(pid);
    m.onPresence?.(pid, null, null);
  }
  for (const [pid, w] of [...wait]) {
    const id = keyedIdentity(m, pid);
    if (!id) {
      if (!m.identityOf(pid)) wait.delete(pid);
      continue;
    }
    wait.delete(pid);
    if (hex(id) !== hex(w.id)) continue;
    try {
      accept(m, pid, w.p, id);
    } catch {
      // A replayed one is dropped as it would be now.
    }
  }
}
