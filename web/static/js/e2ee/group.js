// One member's side of a meeting's end-to-end encryption, the same state
// machine as the Go package e2ee/group (docs/E2EE.md §5–6): it announces
// its keys, follows the leader's epochs (or, leading, makes them), answers
// stale leaders with sync messages and keeps the previous epoch's keys for
// a grace window.
//
// It knows no transport: the caller feeds it the roster in join order, the
// key messages relayed to it and the passage of time, and sends what it
// returns ({to: '' for everyone, or a participant id; payload: JSON value}).
// Media keys go to a sink ({setSender, addKey, removeKey}): in the app the
// Worker that runs SFrame on every frame.

import { concat, u16, utf8 } from './bytes.js';
import { hkdf } from './hkdf.js';
import * as hpke from './hpke.js';
import * as keymsg from './keymsg.js';
import { securityCode } from './securitycode.js';

export const DEFAULT_REKEY_MS = 5 * 60 * 1000;
export const DEFAULT_GRACE_MS = 10 * 1000;
export const DEFAULT_ANNOUNCE_RETRY_MS = 5 * 1000;
const MAX_SYNC_JUMP = 2 ** 24;
const MAX_RETIRED = 4;

// Refusals the caller may want to tell apart; deferred ones are kept and
// tried again when the roster or announcements change.
export class GroupError extends Error {
  constructor(code, message, deferred = false) {
    super(message);
    this.code = code;
    this.deferred = deferred;
  }
}

// kid is epoch << 16 | index, as a BigInt.
export function kid(epoch, index) {
  return (BigInt(epoch) << 16n) | BigInt(index);
}

// senderBaseKey is HKDF-SHA256(salt "", IKM epoch secret,
// info "oakmeet-e2ee-v1 sender" ‖ u16(index), 32).
export function senderBaseKey(epochSecret, index) {
  if (index < 0 || index >= keymsg.MAX_ROSTER) throw new Error(`group: sender index ${index} out of range`);
  return hkdf(epochSecret, concat(utf8('oakmeet-e2ee-v1 sender'), u16(index)), 32);
}

export class Member {
  // create makes a member with a fresh HPKE key. cfg: meeting, participant,
  // identity, media sink, and optionally now (ms clock), rekeyMs, graceMs,
  // announceRetryMs, hpkeKey ({privateKey, publicKey}, for tests).
  static async create(cfg) {
    const m = new Member();
    m.meeting = cfg.meeting;
    m.participant = cfg.participant;
    m.identity = cfg.identity;
    m.media = cfg.media ?? { setSender() {}, addKey() {}, removeKey() {} };
    m.now = cfg.now ?? (() => Date.now());
    m.rekeyMs = cfg.rekeyMs ?? DEFAULT_REKEY_MS;
    m.graceMs = cfg.graceMs ?? DEFAULT_GRACE_MS;
    m.announceRetryMs = cfg.announceRetryMs ?? DEFAULT_ANNOUNCE_RETRY_MS;
    m.hpkeKey = cfg.hpkeKey ?? (await hpke.generateKeyPair());
    const ann = await keymsg.newAnnouncement(m.meeting, m.participant, m.identity, m.hpkeKey.publicKey);
    m.self = ann.entry;
    m.announcement = keymsg.encode(ann);
    m.view = [];
    m.anns = new Map();
    m.cur = null; // {number, leader, roster, index, code, at, kids}
    m.retired = []; // {kids, until}
    m.pending = null; // {from, msg}
    m.floor = 0;
    m.lastAnnounce = -Infinity;
    m.queue = Promise.resolve();
    m.listeners = new Set();
    return m;
  }

  // Every operation runs alone, in call order: crypto is asynchronous and
  // the state must not change halfway through a message.
  serial(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  // onChange registers fn(member) to run after an epoch is installed.
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  get epoch() { return this.cur?.number ?? 0; }
  get securityCode() { return this.cur?.code ?? ''; }
  get roster() { return this.cur ? this.cur.roster.slice() : []; }
  get leader() { return this.view[0] ?? ''; }

  announce() {
    this.lastAnnounce = this.now();
    return { to: '', payload: this.announcement };
  }

  onRosterChange(participants) {
    return this.serial(async () => {
      for (const p of this.view) if (!participants.includes(p)) this.anns.delete(p);
      this.view = participants.slice();
      return this.react(this.now());
    });
  }

  tick() {
    return this.serial(async () => {
      const now = this.now();
      const out = await this.react(now);
      if (!this.cur && now - this.lastAnnounce >= this.announceRetryMs) {
        this.lastAnnounce = now;
        out.push({ to: '', payload: this.announcement });
      }
      return out;
    });
  }

  // handleMessage processes a key message relayed from participant from. It
  // resolves to {out, error}: a refused message changes nothing (a deferred
  // one is kept) and error says why.
  handleMessage(from, payload) {
    return this.serial(async () => {
      if (from === this.participant) return { out: [], error: null };
      const out = [];
      try {
        const msg = keymsg.decode(payload);
        const now = this.now();
        if (msg.type === 'announce') {
          await this.handleAnnouncement(from, msg);
          out.push(...(await this.react(now)));
        } else if (msg.type === 'epoch') {
          const r = await this.handleEpoch(from, msg, now);
          out.push(...r.out);
          if (r.error) return { out, error: r.error };
          out.push(...(await this.react(now)));
        } else {
          out.push(...(await this.handleSync(from, msg, now)));
        }
        return { out, error: null };
      } catch (err) {
        return { out, error: err };
      }
    });
  }

  async handleAnnouncement(from, a) {
    if (a.meeting !== this.meeting) throw new GroupError('wrong_meeting', `announcement of ${a.entry.participant} for another meeting`);
    if (a.entry.participant !== from) throw new GroupError('sender_mismatch', `${from} sent an announcement for ${a.entry.participant}`);
    await keymsg.verifyAnnouncement(a);
    if (!this.anns.has(from) && this.anns.size >= 2 * keymsg.MAX_ROSTER && !this.view.includes(from)) {
      throw new GroupError('too_many', 'too many announcements');
    }
    this.anns.set(from, a.entry);
  }

  async handleEpoch(from, e, now) {
    if (e.meeting !== this.meeting) throw new GroupError('wrong_meeting', `epoch ${e.epoch} for another meeting`);
    await keymsg.verifyEpoch(e);
    if (from !== e.roster[0].participant) {
      throw new GroupError('sender_mismatch', `${from} relayed epoch ${e.epoch} signed by ${e.roster[0].participant}`);
    }
    const r = await this.tryEpoch(from, e, now);
    if (r.error?.deferred && (!this.pending || e.epoch > this.pending.msg.epoch)) this.pending = { from, msg: e };
    return r;
  }

  // tryEpoch applies the checks that depend on this member's state
  // (docs/E2EE.md §6.4, steps 4–8) and installs the epoch if they pass.
  async tryEpoch(from, e, now) {
    const leader = e.roster[0];
    if (this.cur && e.epoch <= this.cur.number) {
      const error = new GroupError('stale_epoch', `epoch ${e.epoch} from ${from}, holding ${this.cur.number}`);
      // A signer that did not make the current epoch may not know it exists.
      const out = keymsg.sameKeys(this.cur.leader, leader) ? [] : this.syncTo(leader.participant);
      return { out, error };
    }
    const idx = e.roster.findIndex((x) => x.participant === this.participant);
    if (idx < 0 || !keymsg.sameKeys(e.roster[idx], this.self)) {
      return { out: [{ to: leader.participant, payload: this.announcement }], error: new GroupError('not_in_roster', `epoch ${e.epoch} from ${from} leaves this member out`) };
    }
    if (this.leader !== leader.participant) {
      return { out: [], error: new GroupError('unexpected_leader', `epoch ${e.epoch} signed by ${leader.participant}, expected ${this.leader}`, true) };
    }
    for (const entry of e.roster) {
      const known = this.anns.get(entry.participant);
      if (known && !keymsg.sameKeys(known, entry)) {
        return { out: [], error: new GroupError('roster_mismatch', `epoch ${e.epoch} lists other keys for ${entry.participant}`, true) };
      }
    }
    let secret;
    try {
      secret = await keymsg.openEpoch(e, idx, this.hpkeKey.privateKey);
    } catch (err) {
      return { out: [], error: new GroupError('seal', `epoch ${e.epoch} from ${from}: ${err.message}`) };
    }
    await this.install(e, idx, secret, now);
    secret.fill(0);
    return { out: [], error: null };
  }

  syncTo(leader) {
    return [{ to: leader, payload: keymsg.encode({ type: 'sync', meeting: this.meeting, epoch: this.cur.number, leader: this.cur.leader.participant }) }];
  }

  async handleSync(from, s, now) {
    if (s.meeting !== this.meeting) throw new GroupError('wrong_meeting', 'sync for another meeting');
    if (!this.isLeader() || !this.view.includes(from)) return [];
    const current = this.cur?.number ?? 0;
    const behind = !this.cur || s.epoch > current || (s.epoch === current && s.leader !== this.participant);
    if (!behind || s.epoch - current > MAX_SYNC_JUMP) return [];
    this.floor = Math.max(this.floor, s.epoch);
    const out = await this.rekey(now);
    out.push(...(await this.retryPending(now)));
    return out;
  }

  // install makes e current: the other senders' keys go to the receiver,
  // this member's own to the sender; the replaced epoch's keys stay for
  // the grace window.
  async install(e, idx, secret, now) {
    const st = {
      number: e.epoch,
      leader: e.roster[0],
      roster: e.roster.slice(),
      index: idx,
      code: await securityCode(this.meeting, e.roster),
      at: now,
      kids: [],
    };
    let own = null;
    for (let i = 0; i < e.roster.length; i++) {
      const base = await senderBaseKey(secret, i);
      const k = kid(e.epoch, i);
      if (i === idx) {
        own = { kid: k, baseKey: base };
      } else {
        await this.media.addKey(k, base, e.roster[i].participant);
        st.kids.push(k);
      }
    }
    if (this.cur) {
      this.retired.push({ kids: this.cur.kids, until: now + this.graceMs });
      while (this.retired.length > MAX_RETIRED) this.removeKeys(this.retired.shift().kids);
    }
    this.cur = st;
    await this.media.setSender(own.kid, own.baseKey);
    for (const entry of e.roster) if (entry.participant !== this.participant) this.anns.set(entry.participant, entry);
    if (this.pending && this.pending.msg.epoch <= e.epoch) this.pending = null;
    for (const fn of this.listeners) fn(this);
  }

  removeKeys(kids) {
    for (const k of kids) this.media.removeKey(k);
  }

  async react(now) {
    this.retired = this.retired.filter((r) => {
      if (now < r.until) return true;
      this.removeKeys(r.kids);
      return false;
    });
    const out = await this.retryPending(now);
    if (this.isLeader() && this.rekeyDue(now)) out.push(...(await this.rekey(now)));
    return out;
  }

  async retryPending(now) {
    const p = this.pending;
    if (!p) return [];
    const r = await this.tryEpoch(p.from, p.msg, now);
    if (!r.error?.deferred) this.pending = null;
    return r.out;
  }

  isLeader() {
    return this.leader === this.participant;
  }

  desiredRoster() {
    const roster = [this.self];
    for (const p of this.view.slice(1)) {
      const e = this.anns.get(p);
      if (e) roster.push(e);
    }
    return roster;
  }

  rekeyDue(now) {
    if (!this.cur || !keymsg.sameKeys(this.cur.leader, this.self) || now - this.cur.at >= this.rekeyMs) return true;
    const want = this.desiredRoster();
    return want.length !== this.cur.roster.length || want.some((e, i) => !keymsg.sameKeys(e, this.cur.roster[i]));
  }

  async rekey(now) {
    let number = this.floor + 1;
    if (this.cur) number = Math.max(number, this.cur.number + 1);
    if (number > keymsg.MAX_EPOCH) throw new GroupError('epoch_exhausted', 'epoch numbers exhausted');
    const secret = crypto.getRandomValues(new Uint8Array(keymsg.SECRET_SIZE));
    const msg = await keymsg.newEpoch(this.meeting, number, this.desiredRoster(), secret, this.identity);
    await this.install(msg, 0, secret, now);
    secret.fill(0);
    return [{ to: '', payload: keymsg.encode(msg) }];
  }
}
