// The leader's side of a group Member (docs/E2EE.md §6.3), as e2ee/group's
// leader.go: which roster it keys, when it re-keys — at once for a first
// epoch, a new leader, a leave, a removal or a key change; after a short
// wait for joins, so that joins arriving together share one epoch; every
// rekeyMs otherwise — and making the epoch.

import * as keymsg from './keymsg.js';
import { GroupError } from './group.js';

// desiredRoster is the roster a leader keys — itself first, then the
// participants of its view in join order that announced themselves to it
// and were not removed — and how it compares with the newest epoch's:
// 'same', 'adds' (only additions: batched) or 'other' (a leave, removal,
// key change, or nothing of its own yet: at once). Cached until the view,
// heard, removals or epochs change, so that a leader of 1,000 does not
// rebuild it for each of 1,000 acks.
export function desiredRoster(m) {
  if (m.desired?.gen === m.gen) return m.desired;
  const roster = [m.self];
  for (const p of m.view) {
    if (roster.length >= keymsg.MAX_ROSTER) break;
    const e = p === m.participant ? null : m.heard.get(p);
    if (e && !m.isRemoved(e)) roster.push(e);
  }
  m.desired = { gen: m.gen, roster, change: compareWithNewest(m, roster) };
  return m.desired;
}

function compareWithNewest(m, want) {
  const newest = m.newest();
  if (!newest || !newest.mine) return 'other';
  let kept = 0;
  for (const e of want) {
    const i = newest.pos.get(e.participant);
    if (i === undefined) continue;
    if (!keymsg.sameEntry(newest.roster[i], e)) return 'other';
    kept++;
  }
  if (kept < newest.roster.length) return 'other';
  return want.length === newest.roster.length ? 'same' : 'adds';
}

// rekeyDue reports whether the leader should make a new epoch now: joins
// alone wait until none came for joinBatchMs, or joinBatchMaxMs since the
// first; an unchanged roster waits for the periodic re-key.
export function rekeyDue(m, now) {
  const { roster, change } = desiredRoster(m);
  if (change === 'other') {
    m.batch = null;
    return true;
  }
  if (change === 'adds') {
    if (!m.batch) m.batch = { first: now, last: now, size: roster.length };
    else if (roster.length !== m.batch.size) Object.assign(m.batch, { last: now, size: roster.length });
    return now >= batchDeadline(m);
  }
  m.batch = null;
  return now - m.newest().at >= m.rekeyMs;
}

export function batchDeadline(m) {
  return Math.min(m.batch.last + m.joinBatchMs, m.batch.first + m.joinBatchMaxMs);
}

// A leader that takes the numbering over from someone else skips at least
// TAKEOVER_JUMP and less than twice that, at random (docs/E2EE.md §5.3).
export const TAKEOVER_JUMP = 2 ** 20;

// nextNumber is the number of the epoch this leader makes next, as
// e2ee/group's nextNumber: one above its newest epoch when it made that one
// itself and knows of nothing newer (it leads on), and otherwise — a first
// epoch, a restart, a takeover, a sync saying someone holds another
// leader's epoch — a random jump above every number it knows of, so that
// two leaders minting unaware of each other pick one number (and so one
// KID for two secrets) with a chance of 2^-20, not every time.
export function nextNumber(m, synced) {
  let base = Math.max(m.floor, m.newest()?.number ?? 0);
  if (m.pending) base = Math.max(base, m.pending.msg.epoch);
  const newest = m.newest();
  if (!synced && newest?.mine && newest.number === base) {
    if (base >= keymsg.MAX_EPOCH) throw new GroupError('epoch_exhausted', 'epoch numbers exhausted');
    return base + 1;
  }
  const jump = TAKEOVER_JUMP + (m.randomU32() % TAKEOVER_JUMP);
  if (base > keymsg.MAX_EPOCH - jump) throw new GroupError('epoch_exhausted', 'epoch numbers exhausted');
  return base + jump;
}

// rekey makes and installs a new epoch for the desired roster and returns
// it to send; synced says a sync message asked for it.
export async function rekey(m, now, synced = false) {
  m.batch = null;
  const number = nextNumber(m, synced);
  const secret = crypto.getRandomValues(new Uint8Array(keymsg.SECRET_SIZE));
  const msg = await keymsg.newEpoch(m.meeting, number, desiredRoster(m).roster, secret, m.identity);
  const payload = keymsg.checkSize(keymsg.encode(msg));
  await m.install(msg, 0, secret, msg.digest, now);
  secret.fill(0);
  return [{ to: '', payload }];
}
