// Accepting epoch messages (docs/E2EE.md §6.4–6.5), as e2ee/group's
// epochs.go: the checks that depend on the member's state, deferral, and
// the sync answer that lets a leader that knew less catch up. Functions of
// a group Member; group.js owns the state.

import { equal } from './bytes.js';
import * as keymsg from './keymsg.js';
import { GroupError, MAX_SYNC_JUMP } from './group.js';
import { rekey } from './leader.js';

export async function handleEpoch(m, from, e, now) {
  const digest = await keymsg.verifyEpoch(e, m.cache);
  if (from !== e.roster[0].participant) {
    throw new GroupError('sender_mismatch', `${from} relayed epoch ${e.epoch} signed by ${e.roster[0].participant}`);
  }
  // A number someone in the view signed is taken, whether or not this
  // member accepts that epoch: were it to lead, it mints above it, so
  // that no KID of its own epochs names another key that someone sends
  // under. (Bounded as a sync message is.)
  const held = m.newest()?.number ?? 0;
  if (e.epoch > m.floor && e.epoch - held <= MAX_SYNC_JUMP && m.view.includes(from)) m.floor = e.epoch;
  const r = await tryEpoch(m, from, e, digest, now);
  if (r.error?.deferred && (!m.pending || e.epoch > m.pending.msg.epoch)) m.pending = { from, msg: e, digest };
  return r;
}

// tryEpoch applies the checks that depend on this member's state
// (docs/E2EE.md §6.4, steps 4–9) and installs the epoch if they pass.
export async function tryEpoch(m, from, e, digest, now) {
  const leader = e.roster[0];
  const same = m.epochByNumber(e.epoch);
  if (same && equal(same.digest, digest)) {
    // The same message again: acked again once ready, in advance.
    same.ackedAt = -Infinity;
    return { out: [], error: null };
  }
  const newest = m.newest();
  if (newest && e.epoch <= newest.number) {
    const error = new GroupError('stale_epoch', `epoch ${e.epoch} from ${from}, holding ${newest.number}`);
    // A signer that did not make the newest epoch may not know it exists.
    const out = keymsg.sameKeys(newest.leader, leader) ? [] : syncTo(m, leader.participant);
    return { out, error };
  }
  const idx = e.roster.findIndex((x) => x.participant === m.participant);
  if (idx < 0 || !keymsg.sameEntry(e.roster[idx], m.self)) {
    return { out: m.announceTo(leader.participant, now, false), error: new GroupError('not_in_roster', `epoch ${e.epoch} from ${from} leaves this member out`) };
  }
  if (m.leader !== leader.participant) {
    return { out: [], error: new GroupError('unexpected_leader', `epoch ${e.epoch} signed by ${leader.participant}, expected ${m.leader}`, true) };
  }
  for (const entry of e.roster) {
    const known = m.heard.get(entry.participant);
    if (known && !keymsg.sameEntry(known, entry)) {
      return { out: [], error: new GroupError('roster_mismatch', `epoch ${e.epoch} lists other keys for ${entry.participant}`, true) };
    }
  }
  let secret;
  try {
    secret = await keymsg.openEpoch(e, idx, m.hpkeKey.privateKey);
  } catch (err) {
    return { out: [], error: new GroupError('seal', `epoch ${e.epoch} from ${from}: ${err.message}`) };
  }
  await m.install(e, idx, secret, digest, now);
  secret.fill(0);
  return { out: [], error: null };
}

// syncLeader tells the leader, once per leader and epoch, about a newest
// epoch another leader made, as e2ee/group's syncLeader: a member that led
// by a view showing it first, or that holds the last epoch of a leader that
// left, may hold a number above the leader's without the leader ever
// hearing of it. A leader re-keys on a sync only when it leads in its own
// view, so two members that each think they lead do not answer each other.
export function syncLeader(m) {
  const newest = m.newest();
  const leader = m.leader;
  if (!newest || !leader || leader === m.participant || newest.leader.participant === leader) return [];
  if (m.syncedTo.leader === leader && m.syncedTo.epoch === newest.number) return [];
  m.syncedTo = { leader, epoch: newest.number };
  return syncTo(m, leader);
}

function syncTo(m, leader) {
  const n = m.newest();
  return [{ to: leader, payload: keymsg.encode({ type: 'sync', meeting: m.meeting, epoch: n.number, leader: n.leader.participant }) }];
}

export async function handleSync(m, from, s, now) {
  if (!m.isLeader() || !m.view.includes(from)) return [];
  const current = m.newest()?.number ?? 0;
  const behind = current === 0 || s.epoch > current || (s.epoch === current && s.leader !== m.participant);
  if (!behind || s.epoch - current > MAX_SYNC_JUMP) return [];
  m.floor = Math.max(m.floor, s.epoch);
  const out = await rekey(m, now, true);
  out.push(...(await m.retryPending(now)));
  out.push(...(await m.advance(now)));
  return out;
}
