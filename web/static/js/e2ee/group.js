// One member's side of a meeting's end-to-end encryption, the same state
// machine as the Go package e2ee/group (docs/E2EE.md §5–6): it announces
// its keys and answers others' announcements (the heard handshake), follows
// the leader's epochs (or, leading, makes them, gathering joins that arrive
// together into one), acknowledges an epoch once everyone in it has
// announced themselves to it, sends only under the newest epoch the leader
// committed after every member acknowledged it, answers stale leaders with
// sync messages, cuts removed participants out and keeps replaced epochs'
// keys for a grace window.
//
// It knows no transport: the caller feeds it the roster in join order, the
// key messages relayed to it, the host's verified removals and the passage
// of time, and sends what it returns ({to: '' for everyone, or a
// participant id; payload: JSON value}). Media keys go to a sink
// ({setSender, addKey, removeKey}): in the app the Worker that runs SFrame
// on every frame. setSender(null, null) means: send nothing.

import { concat, equal, hex, u16, utf8 } from './bytes.js';
import { hkdf } from './hkdf.js';
import * as hpke from './hpke.js';
import * as keymsg from './keymsg.js';
import { securityCode } from './securitycode.js';
import { listedUnheard, nextTick, people, status, unheard } from './groupview.js';
import { handleEpoch, handleSync, syncLeader, tryEpoch } from './epochs.js';
import { rekey, rekeyDue } from './leader.js';
import { handlePresence, initPresence, presenceKeysChanged } from './grouppresence.js';

export const DEFAULT_REKEY_MS = 5 * 60 * 1000;
export const DEFAULT_GRACE_MS = 10 * 1000;
export const DEFAULT_ANNOUNCE_RETRY_MS = 5 * 1000;
export const DEFAULT_JOIN_BATCH_MS = 300;
export const DEFAULT_JOIN_BATCH_MAX_MS = 2000;
export const MAX_SYNC_JUMP = 2 ** 28;
// Bounds on the epochs a member keeps, whatever a leader or the churn does.
export const MAX_UNCOMMITTED = 4;
// NOTIFY_MS is how long listeners may wait to hear of changes.
export const NOTIFY_MS = 50;
export const MAX_RETIRED = 4;

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
  // identity, name (display name, ≤ 256 bytes of UTF-8), policyHash (the
  // host-signed effective policy hash), media sink, and optionally now (ms
  // clock), rekeyMs, graceMs, announceRetryMs, joinBatchMs, joinBatchMaxMs,
  // randomU32 (draws epoch number jumps; default crypto.getRandomValues),
  // hpkeKey ({privateKey, publicKey}, for tests), schedule (fn → runs fn
  // later, once; default NOTIFY_MS on the timer, for the listeners).
  static async create(cfg) {
    const m = new Member();
    m.meeting = cfg.meeting;
    m.participant = cfg.participant;
    m.identity = cfg.identity;
    m.name = cfg.name ?? '';
    m.policyHash = cfg.policyHash ?? '';
    m.media = cfg.media ?? { setSender() {}, addKey() {}, removeKey() {} };
    m.now = cfg.now ?? (() => Date.now());
    m.rekeyMs = cfg.rekeyMs || DEFAULT_REKEY_MS;
    m.graceMs = cfg.graceMs || DEFAULT_GRACE_MS;
    m.announceRetryMs = cfg.announceRetryMs || DEFAULT_ANNOUNCE_RETRY_MS;
    m.joinBatchMs = cfg.joinBatchMs || DEFAULT_JOIN_BATCH_MS;
    m.joinBatchMaxMs = cfg.joinBatchMaxMs || DEFAULT_JOIN_BATCH_MAX_MS;
    m.hpkeKey = cfg.hpkeKey ?? (await hpke.generateKeyPair());
    const ann = await keymsg.newAnnouncement(m.meeting, m.participant, m.name, m.identity, m.hpkeKey.publicKey);
    m.self = ann.entry;
    m.announcement = keymsg.encode(ann);
    m.view = []; // the server's roster in join order
    m.heard = new Map(); // participant -> the announcement it sent this member itself
    m.sentTo = new Map(); // participant -> when this member's announcement last went to it
    // The node messages: this member's own (sent right after each of its
    // announcements, to the same recipients), and each other participant's
    // certificate text once it verified with that participant's identity
    // key; at most one unverified per participant waits for the identity.
    m.nodeCert = '';
    m.nodeMsg = null;
    m.nodes = new Map(); // participant -> {cert, identity}
    m.pendingNodes = new Map(); // participant -> a decoded node message
    m.lastBroadcast = -Infinity;
    m.gen = 0; // counts changes of view, heard, removals and epochs, for the caches
    m.epochs = []; // the sending epoch (if any) and every newer installed one, oldest first
    m.sending = null; // the newest committed epoch: the one media is sent under
    m.retired = []; // {kids, until}: older epochs' keys in their grace window
    m.pending = null; // {from, msg, digest}: a deferred epoch message
    m.floor = 0; // highest epoch number known to exist, from sync and epoch messages
    m.syncedTo = { leader: '', epoch: 0 }; // the last leader told of a newer epoch, and its number
    m.randomU32 = cfg.randomU32 ?? (() => crypto.getRandomValues(new Uint32Array(1))[0]);
    m.batch = null; // {first, last, size}: joins the leader is gathering
    m.desired = null; // {gen, roster, change}
    m.removedPids = new Set();
    m.removedIds = new Set(); // hex identity keys
    m.cache = new keymsg.VerifyCache();
    initPresence(m);
    m.queue = Promise.resolve();
    m.listeners = new Set();
    m.dirty = false;
    m.notifyTimer = undefined;
    m.schedule = cfg.schedule ?? ((fn) => setTimeout(fn, NOTIFY_MS));
    return m;
  }

  // Every operation runs alone, in call order: crypto is asynchronous and
  // the state must not change halfway through a message. Listeners run
  // after an operation that changed what people(), status() or the code
  // show.
  serial(fn) {
    const run = this.queue.then(async () => {
      const gen = this.gen;
      try {
        return await fn();
      } finally {
        if (this.dirty || this.gen !== gen) {
          this.dirty = false;
          this.notifySoon();
        }
      }
    });
    this.queue = run.catch(() => {});
    return run;
  }

  // notifySoon runs the listeners once within NOTIFY_MS, however many
  // changes come meanwhile: a leader of 1,000 takes 1,000 acks per epoch,
  // and a page need not redraw its people 1,000 times.
  notifySoon() {
    if (this.notifyTimer !== undefined) return;
    this.notifyTimer = this.schedule(() => {
      this.notifyTimer = undefined;
      for (const l of this.listeners) {
        try {
          l(this);
        } catch (err) {
          console.error(err);
        }
      }
    });
  }

  // onChange registers fn(member) to run (within NOTIFY_MS, at most once
  // per NOTIFY_MS) after the epochs, the roster view, who was heard, the
  // removals or the code changed.
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  // epoch, securityCode and roster are those of the sending epoch.
  get epoch() { return this.sending?.number ?? 0; }
  get securityCode() { return this.sending?.code ?? ''; }
  get roster() { return this.sending ? this.sending.roster.slice() : []; }

  // leader is the first participant of the roster view the host did not
  // remove: the one this member expects epochs from.
  get leader() {
    for (const p of this.view) if (!this.removedPids.has(p)) return p;
    return '';
  }

  isLeader() {
    return this.leader === this.participant;
  }

  // awaitedLeader is the leader of the view while this member holds no
  // epoch of that leader's ('' otherwise, or when it leads itself).
  awaitedLeader() {
    const leader = this.leader;
    if (!leader || leader === this.participant) return '';
    const n = this.newest();
    return n && n.leader.participant === leader ? '' : leader;
  }

  newest() {
    return this.epochs[this.epochs.length - 1] ?? null;
  }

  epochByNumber(n) {
    return this.epochs.find((st) => st.number === n) ?? null;
  }

  people() { return people(this); }
  status() { return status(this); }
  // nextTick is when (on the member's clock, ms) to call tick next: when
  // something is due, within 50 ms to 1 s from now.
  nextTick() { return nextTick(this); }

  // announce returns the member's signed announcement, to be sent to
  // everyone once it has joined. (A caller may address a copy to one
  // participant: only the first view after joining counts it as having
  // reached everyone listed, see onRosterChange.)
  announce() {
    this.lastBroadcast = this.now();
    return { to: '', payload: this.announcement };
  }

  // withNode puts this member's node message right after each of its
  // announcements in outs, to the same recipients.
  withNode(outs) {
    if (!this.nodeMsg) return outs;
    const out = [];
    for (const o of outs) {
      out.push(o);
      if (o.payload === this.announcement) out.push({ to: o.to, payload: this.nodeMsg });
    }
    return out;
  }

  // setNodeCert signs the node message naming the certificate of the node
  // this member is on.
  setNodeCert(cert) {
    return this.serial(async () => {
      this.nodeCert = cert;
      this.nodeMsg = keymsg.encode(await keymsg.newNode(this.meeting, this.participant, cert, this.identity));
      this.dirty = true;
    });
  }

  // identityOf is a participant's identity key as this member verified it:
  // from its own announcement, else from the entry an epoch lists.
  identityOf(pid) {
    const h = this.heard.get(pid);
    if (h) return h.identity;
    for (const st of [this.sending, ...this.epochs]) {
      const e = st?.roster.find((x) => x.participant === pid);
      if (e) return e.identity;
    }
    return null;
  }

  // handleNode keeps a participant's node message once it verifies with
  // that participant's identity key; until the key is known it waits (the
  // newest one per participant).
  async handleNode(from, n) {
    if (n.participant !== from) throw new GroupError('sender_mismatch', `${from} sent a node message for ${n.participant}`);
    if (this.removedPids.has(from)) throw new GroupError('removed', `node message of ${from}, whom the host removed`);
    const id = this.identityOf(from);
    if (!id) {
      if (!this.pendingNodes.has(from) && this.pendingNodes.size >= 2 * keymsg.MAX_ROSTER) throw new GroupError('too_many', 'too many node messages');
      this.pendingNodes.set(from, n);
      return;
    }
    await keymsg.verifyNode(n, id);
    const prev = this.nodes.get(from);
    if (prev && prev.cert === n.cert && prev.identity === id) return;
    this.nodes.set(from, { cert: n.cert, identity: id });
    this.gen++;
  }

  // resolvePendingNodes verifies the waiting node messages whose sender's
  // identity is now known.
  async resolvePendingNodes() {
    for (const [pid, n] of [...this.pendingNodes]) {
      const id = this.identityOf(pid);
      if (!id) continue;
      this.pendingNodes.delete(pid);
      try {
        await keymsg.verifyNode(n, id);
        this.nodes.set(pid, { cert: n.cert, identity: id });
        this.gen++;
      } catch {
        // A forged or stale node message: dropped.
      }
    }
  }

  // handleCheckpoint hands a participant's checkpoint of the transparency
  // log to onCheckpoint(from, text) once it verifies with that
  // participant's identity key. One whose sender has not announced itself
  // to this member is dropped: members pass checkpoints on again.
  async handleCheckpoint(from, c) {
    if (c.participant !== from) throw new GroupError('sender_mismatch', `${from} sent a checkpoint message for ${c.participant}`);
    if (this.removedPids.has(from)) throw new GroupError('removed', `checkpoint message of ${from}, whom the host removed`);
    const id = this.identityOf(from);
    if (!id) throw new GroupError('unknown_sender', `checkpoint message of ${from}, who has not announced themselves`);
    await keymsg.verifyCheckpoint(c, id);
    this.onCheckpoint?.(from, c.checkpoint);
  }

  // handlePresence hands a participant's presence (mic, camera, hand,
  // screen, seq) to onPresence(from, p, identity) once it verifies with
  // the key the sending epoch names for that participant and its seq is
  // new (grouppresence.js); onPresence(from, null) takes back what was
  // shown for one the sending epoch no longer names with that key.
  handlePresence(from, p) {
    return handlePresence(this, from, p);
  }

  // checkpointMessage is this member's signed checkpoint message passing
  // on text, a checkpoint of the transparency log it holds.
  async checkpointMessage(text) {
    return keymsg.encode(await keymsg.newCheckpoint(this.meeting, this.participant, text, this.identity));
  }

  // nodeOf is the node certificate text a participant signed, or ''.
  nodeOf(pid) {
    if (pid === this.participant) return this.nodeCert;
    return this.nodes.get(pid)?.cert ?? '';
  }

  // broadcastAnnounce records an announcement to everyone: it reaches those
  // present now, the participants of the view.
  broadcastAnnounce(now) {
    this.lastBroadcast = now;
    for (const p of this.view) if (p !== this.participant) this.sentTo.set(p, now);
    return { to: '', payload: this.announcement };
  }

  // announceTo sends this member's announcement to p unless one reached p
  // (sent to p, or to everyone while p was present) within
  // announceRetryMs/2, and force is false.
  announceTo(p, now, force) {
    const last = this.sentTo.get(p);
    if (last !== undefined && !force && now - last < this.announceRetryMs / 2) return [];
    this.sentTo.set(p, now);
    return [{ to: p, payload: this.announcement }];
  }

  onRosterChange(participants) {
    return this.serial(async () => {
      const now = this.now();
      const after = new Set(participants);
      const before = new Set(this.view);
      for (const p of this.view) {
        if (after.has(p)) continue;
        this.heard.delete(p);
        this.sentTo.delete(p);
        this.nodes.delete(p);
        this.pendingNodes.delete(p);
      }
      // The announcement sent on joining, before any view, reached those
      // present then: the participants of this first view.
      const first = this.view.length === 0 && now - this.lastBroadcast < this.announceRetryMs / 2;
      const out = [];
      for (const p of participants) {
        if (p === this.participant || before.has(p)) continue;
        if (first) {
          if (!this.sentTo.has(p)) this.sentTo.set(p, this.lastBroadcast);
          continue;
        }
        // Someone new to this member hears from it directly: that is what
        // lets it count as heard there. A participant appears when the
        // relay can reach it, so what went to it before may be lost.
        out.push(...this.announceTo(p, now, true));
      }
      this.view = participants.slice();
      this.gen++;
      out.push(...(await this.react(now)));
      return this.withNode(out);
    });
  }

  // tick lets time pass: it retires old epochs' keys after the grace
  // window, re-keys when the leader's interval or join batch is up, re-sends
  // acks that got no commit and re-announces while the member has no epoch
  // or has not heard from someone in its epochs.
  tick() {
    return this.serial(async () => {
      const now = this.now();
      const out = [];
      if (this.epochs.length === 0 && now - this.lastBroadcast >= this.announceRetryMs) out.push(this.broadcastAnnounce(now));
      for (const p of unheard(this, false)) {
        if (now - (this.sentTo.get(p) ?? -Infinity) >= this.announceRetryMs) {
          this.sentTo.set(p, now);
          out.push({ to: p, payload: this.announcement });
        }
      }
      // Until the leader keys it, a member reminds the leader of itself:
      // its announcements may all have been lost, and an epoch left over
      // from a leader that has gone stops the re-announcing above.
      // And a leader asks whoever the view lists but it has not heard: the
      // answer rule brings their announcement back.
      for (const p of [this.awaitedLeader(), ...listedUnheard(this)]) {
        if (p && now - (this.sentTo.get(p) ?? -Infinity) >= this.announceRetryMs) {
          this.sentTo.set(p, now);
          out.push({ to: p, payload: this.announcement });
        }
      }
      out.push(...(await this.react(now)));
      return this.withNode(out);
    });
  }

  // remove cuts a participant (by id, and by identity key if given) out of
  // the keys; the caller has verified the host's signed removal. This
  // member never again acks or sends under an epoch naming them, ignores
  // their announcements, sends nothing while its sending epoch names them,
  // and, leading, re-keys at once without them.
  remove(participant, identity = null) {
    return this.serial(async () => {
      const id = identity?.length ? hex(identity) : '';
      if (!participant && !id) throw new GroupError('remove', 'group: remove names nobody');
      if (participant) {
        this.removedPids.add(participant);
        this.heard.delete(participant);
      }
      if (id) {
        this.removedIds.add(id);
        for (const [p, e] of this.heard) if (hex(e.identity) === id) this.heard.delete(p);
      }
      this.gen++;
      if (this.sending && this.namesRemoved(this.sending.roster)) await this.media.setSender(null, null);
      // Frames the removed make under keys already held are refused from
      // now on, whatever the server still forwards.
      for (const st of this.epochs) {
        st.roster.forEach((e, i) => {
          if (i === st.index || !this.isRemoved(e)) return;
          const k = kid(st.number, i);
          if (!st.kids.includes(k)) return;
          this.media.removeKey(k);
          st.kids = st.kids.filter((x) => x !== k);
        });
      }
      return this.react(this.now());
    });
  }

  isRemoved(e) {
    return this.removedPids.has(e.participant) || (this.removedIds.size > 0 && this.removedIds.has(hex(e.identity)));
  }

  namesRemoved(roster) {
    return (this.removedPids.size > 0 || this.removedIds.size > 0) && roster.some((e) => this.isRemoved(e));
  }

  isHeard(e) {
    const h = this.heard.get(e.participant);
    return !!h && keymsg.sameEntry(h, e);
  }

  // setPolicyHash sets the host-signed effective policy hash the security
  // codes commit to.
  setPolicyHash(h) {
    return this.serial(async () => {
      if (h === this.policyHash) return;
      this.policyHash = h;
      for (const st of this.epochs) st.code = await securityCode(this.meeting, st.roster, h);
      this.dirty = true;
    });
  }

  // handleMessage processes a key message relayed from participant from. It
  // resolves to {out, error}: a refused message changes nothing (a deferred
  // one is kept) and error says why.
  handleMessage(from, payload) {
    return this.serial(async () => {
      const r = await this.handleOne(from, payload);
      await this.resolvePendingNodes();
      return { ...r, out: this.withNode(r.out) };
    });
  }

  async handleOne(from, payload) {
    {
      if (from === this.participant) return { out: [], error: null };
      const out = [];
      let deferred = null;
      try {
        const msg = keymsg.decode(payload);
        if (msg.meeting !== this.meeting) throw new GroupError('wrong_meeting', `${msg.type} from ${from} for another meeting`);
        const now = this.now();
        switch (msg.type) {
          case 'announce':
            out.push(...(await this.handleAnnouncement(from, msg, now)));
            break;
          case 'epoch': {
            const r = await handleEpoch(this, from, msg, now);
            out.push(...r.out);
            if (r.error && !r.error.deferred) return { out, error: r.error };
            deferred = r.error;
            break;
          }
          case 'ack':
            out.push(...(await this.handleAck(from, msg)));
            break;
          case 'commit':
            await this.handleCommit(msg);
            break;
          case 'node':
            await this.handleNode(from, msg);
            return { out, error: null };
          case 'checkpoint':
            await this.handleCheckpoint(from, msg);
            return { out, error: null };
          case 'presence':
            await this.handlePresence(from, msg);
            return { out, error: null };
          default:
            return { out: await handleSync(this, from, msg, now), error: null };
        }
        out.push(...(await this.react(now)));
        return { out, error: deferred };
      } catch (err) {
        return { out, error: err };
      }
    }
  }

  // The heard rule: a member only acks, and so only lets anyone send under,
  // an epoch whose every other roster entry announced itself to this
  // member directly, with the same keys and name. A server that shows an
  // extra participant to the leader alone gains nothing: the others never
  // hear from it, never ack, and the epoch is never committed.
  async handleAnnouncement(from, a, now) {
    if (a.entry.participant !== from) throw new GroupError('sender_mismatch', `${from} sent an announcement for ${a.entry.participant}`);
    if (this.isRemoved(a.entry)) throw new GroupError('removed', `announcement of ${from}, whom the host removed`);
    const prev = this.heard.get(from);
    const fresh = !prev || !keymsg.sameEntry(prev, a.entry);
    if (fresh) await keymsg.verifyAnnouncement(a, this.cache);
    const replaces = !!prev && fresh;
    if (!prev && this.heard.size >= 2 * keymsg.MAX_ROSTER && !this.view.includes(from)) {
      throw new GroupError('too_many', 'too many announcements');
    }
    if (fresh) {
      // The latest wins: a participant that restarted announces new keys.
      this.heard.set(from, a.entry);
      this.gen++;
    }
    // Answer, so that it hears this member too; an announcement replacing
    // another (a restart) is answered even if one went out a moment ago, as
    // the restarted member lost it.
    return this.announceTo(from, now, replaces);
  }

  // handleAck records a member's ack of an epoch this member made; an ack
  // of one already committed is answered with the commit (it was missed).
  async handleAck(from, a) {
    if (a.participant !== from) throw new GroupError('sender_mismatch', `${from} sent an ack for ${a.participant}`);
    const st = this.epochByNumber(a.epoch);
    if (!st || !st.mine || !equal(a.digest, st.digest)) throw new GroupError('unknown_epoch', `ack of epoch ${a.epoch} by ${from}`);
    const i = st.pos.get(from);
    if (i === undefined || i === st.index) throw new GroupError('not_in_roster', `ack of epoch ${a.epoch} by ${from}`);
    await keymsg.verifyAck(a, st.roster[i].identity);
    if (st.committed) return [{ to: from, payload: st.commit }];
    if (!st.acks.has(from)) this.dirty = true;
    st.acks.add(from);
    return [];
  }

  // handleCommit notes the leader's commit of an installed epoch; advance
  // adopts it once it is ready here too, so that not even the leader can
  // make this member send under an epoch naming someone it has not heard.
  async handleCommit(c) {
    const st = this.epochByNumber(c.epoch);
    if (!st || !equal(c.digest, st.digest)) {
      if (this.sending && c.epoch <= this.sending.number) return; // late: a newer epoch is in use
      throw new GroupError('unknown_epoch', `commit of epoch ${c.epoch}`);
    }
    if (st.committed || st.commitSeen) return;
    await keymsg.verifyCommit(c, st.leader.identity);
    st.commitSeen = true;
  }

  // ready: st may be acked (or, by its leader, committed) by this member:
  // everyone else in it heard, nobody in it removed, this member in it with
  // its own keys. Cached until the view, heard, removals or epochs change.
  ready(st) {
    if (st.readyGen === this.gen) return st.readyVal;
    let ok = keymsg.sameEntry(st.roster[st.index], this.self);
    for (let i = 0; ok && i < st.roster.length; i++) {
      const e = st.roster[i];
      ok = !this.isRemoved(e) && (i === st.index || this.isHeard(e));
    }
    st.readyGen = this.gen;
    st.readyVal = ok;
    return ok;
  }

  // install adds e as an uncommitted epoch: the other senders' keys go to
  // the receiver once it is ready here (everyone in it heard, nobody
  // removed: a ghost the server shows to the leader alone makes no frame
  // this member accepts), as e2ee/group does; this member's own waits for
  // the commit.
  async install(e, idx, secret, digest, now) {
    const bases = await Promise.all(e.roster.map((_, i) => senderBaseKey(secret, i)));
    const st = {
      number: e.epoch,
      digest,
      leader: e.roster[0],
      roster: e.roster.slice(),
      pos: new Map(e.roster.map((x, i) => [x.participant, i])),
      index: idx,
      code: await securityCode(this.meeting, e.roster, this.policyHash),
      at: now,
      kids: [],
      own: null,
      mine: keymsg.sameKeys(e.roster[0], this.self),
      committed: false, // this member sends under it (or did)
      commitSeen: false, // its leader's commit arrived; adopted once ready here too
      ackedAt: -Infinity,
      acks: new Set(), // for an epoch this member made: who acked it
      commit: null, // and its commit
      readyGen: -1,
      readyVal: false,
      waiting: [], // the other senders' keys, until the epoch is ready here
      keysIn: false,
    };
    for (let i = 0; i < e.roster.length; i++) {
      const k = kid(e.epoch, i);
      if (i === idx) {
        st.own = { kid: k, baseKey: bases[i] };
      } else {
        st.waiting.push({ kid: k, baseKey: bases[i], participant: e.roster[i].participant });
      }
    }
    await this.keysIn(st);
    this.epochs.push(st);
    // Bound what waits for a commit: the oldest waiting epoch goes first.
    while (this.epochs.length - (this.sending ? 1 : 0) > MAX_UNCOMMITTED) {
      const i = this.sending ? 1 : 0;
      this.removeKeys(this.epochs[i].kids);
      this.epochs.splice(i, 1);
    }
    if (this.pending && this.pending.msg.epoch <= e.epoch) this.pending = null;
    this.gen++;
    return st;
  }

  // adopt makes st the sending epoch: this member's frames go out under it
  // from now on, and every older epoch's keys stay for the grace window only.
  async adopt(st, now) {
    st.committed = true;
    const i = this.epochs.indexOf(st);
    for (const old of this.epochs.slice(0, i)) this.retired.push({ kids: old.kids, until: now + this.graceMs });
    while (this.retired.length > MAX_RETIRED) this.removeKeys(this.retired.shift().kids);
    this.epochs = this.epochs.slice(i);
    this.sending = st;
    this.gen++;
    presenceKeysChanged(this);
    await this.media.setSender(st.own.kid, st.own.baseKey);
  }

  removeKeys(kids) {
    for (const k of kids) this.media.removeKey(k);
  }

  // keysIn gives the media sink st's receive keys once st is ready here.
  async keysIn(st) {
    if (st.keysIn || !this.ready(st)) return;
    st.keysIn = true;
    for (const w of st.waiting) {
      await this.media.addKey(w.kid, w.baseKey, w.participant);
      st.kids.push(w.kid);
    }
    st.waiting = null;
  }

  // react brings the state up to date after any change: expire retired
  // keys, retry a deferred epoch, adopt committed epochs, ack ready ones,
  // commit fully acked ones, and re-key if this member leads and must.
  async react(now) {
    this.retired = this.retired.filter((r) => {
      if (now < r.until) return true;
      this.removeKeys(r.kids);
      return false;
    });
    const out = await this.retryPending(now);
    out.push(...(await this.advance(now)));
    if (!this.isLeader()) {
      this.batch = null;
      out.push(...syncLeader(this));
      return out;
    }
    if (!rekeyDue(this, now)) return out;
    out.push(...(await rekey(this, now)));
    // A lone leader's epoch is committed as soon as it is made.
    out.push(...(await this.advance(now)));
    return out;
  }

  async retryPending(now) {
    const p = this.pending;
    if (!p) return [];
    const r = await tryEpoch(this, p.from, p.msg, p.digest, now);
    if (!r.error?.deferred) this.pending = null;
    return r.out;
  }

  // advance moves every epoch newer than the sending one along: adopt those
  // committed and ready here, ack those ready (again every announceRetryMs
  // until the commit comes), and, for this member's own epochs, commit
  // those every other member acked.
  async advance(now) {
    const out = [];
    for (let i = this.epochs.length - 1; i >= 0; i--) {
      const st = this.epochs[i];
      if (st.committed) break; // the sending epoch; nothing older is left
      if (!this.ready(st)) continue;
      await this.keysIn(st);
      if (st.mine) {
        if (st.acks.size < st.roster.length - 1) continue;
        st.commit = keymsg.encode(await keymsg.newCommit(this.meeting, st.number, st.digest, this.identity));
        out.push({ to: '', payload: st.commit });
        await this.adopt(st, now);
        break;
      }
      if (st.commitSeen) {
        await this.adopt(st, now);
        break;
      }
      if (now - st.ackedAt >= this.announceRetryMs) {
        st.ackedAt = now;
        const a = await keymsg.newAck(this.meeting, st.number, this.participant, st.digest, this.identity);
        out.push({ to: st.leader.participant, payload: keymsg.encode(a) });
      }
    }
    return out;
  }
}
