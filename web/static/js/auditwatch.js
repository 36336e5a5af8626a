// AuditWatch is this browser holding the deployment's transparency log to
// account for one meeting (docs/WEB.md "The audit log"): it pins the log's
// verifier key the first join names, keeps every checkpoint it accepted
// in IndexedDB (oldest first; a reload or a later visit goes on from
// them), takes a new checkpoint from each join answer and every every_ms
// while in the call, and accepts one only if it extends the newest held
// (a consistency proof from the server, checked here). It checks that the
// log holds this browser's own placement and migration entries, naming
// the node it was told, and every policy change of its meeting (inclusion
// proofs); every entry of its meeting it reads must be signed by the log's
// key, in its chain (seq, prev_hash). Anything that contradicts what it
// saw before is an alarm that stays for the life of the page: state
// 'inconsistent' and a reason. A log that cannot be checked (proofs or
// checkpoints that do not come: STALE_FAILS polls in a row fail, or an
// entry of its own or a policy change is not proved within
// max(10 × every_ms, staleMinMs)) is state 'stale' until a check
// succeeds again: not a contradiction, yet not "consistent" either.
//
// A checkpoint from elsewhere (another participant's, a witness's) is
// checked the same way with offer(): a log that shows two people two
// different trees cannot make both consistent with one. Events: change
// (state, reason or what is included), held (a new checkpoint held).

import { AuditError, checkConsistency, checkEntry, checkInclusion, entryKey, leafData, openCheckpoint, parseVerifier, proofHashes } from './auditlog.js';

const DB = 'oakmeet-audit';
const STORE = 'meetings';
// Consistency is transitive, so the first checkpoint and the newest are
// what matter; the rest are kept to hand on, up to a bound.
const MAX_HELD = 100;
const MIN_POLL_MS = 100;
const OWN_KINDS = new Set(['placement', 'migration']);
// Polls in a row that may fail before the log counts as not checked.
export const STALE_FAILS = 5;
// The least time an entry may wait for its proof, whatever every_ms is:
// a slow control plane is not a withholding one.
export const STALE_MIN_MS = 30000;

// DEPLOYMENT is the record of the deployment itself (no meeting id is
// empty): the log key this browser first saw on this origin, for any
// meeting. One deployment has one log, so a meeting whose log is signed
// with another key is a control plane keeping two logs.
const DEPLOYMENT = '';

// idbStore keeps one record per meeting: {verifierKey, checkpoints}, and
// the deployment's: {verifierKey}.
export function idbStore() {
  let db;
  const open = () => (db ??= new Promise((resolve, reject) => {
    const req = indexedDB.open(DB, 1);
    req.onupgradeneeded = () => req.result.createObjectStore(STORE);
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  }));
  const run = async (mode, fn) => {
    const d = await open();
    return new Promise((resolve, reject) => {
      const t = d.transaction(STORE, mode);
      const req = fn(t.objectStore(STORE));
      t.oncomplete = () => resolve(req.result);
      t.onerror = () => reject(t.error);
      t.onabort = () => reject(t.error);
    });
  };
  return {
    get: (meeting) => run('readonly', (s) => s.get(meeting)),
    put: (meeting, rec) => run('readwrite', (s) => s.put(rec, meeting)),
  };
}

class Unavailable extends Error {}

export class AuditWatch extends EventTarget {
  // token () names the bearer for the meeting's entries (its join secret
  // or host token). staleFails and staleMinMs (also settable later, as
  // tests do) are when the log counts as not checked.
  constructor({ meeting, token, store = idbStore(), staleFails = STALE_FAILS, staleMinMs = STALE_MIN_MS }) {
    super();
    this.meeting = meeting;
    this.token = token;
    this.store = store;
    this.staleFails = staleFails;
    this.staleMinMs = staleMinMs;
    this.state = 'unchecked';
    this.reason = '';
    this.every = 2000;
    this.failures = 0; // checks in a row that could not be made
    this.lastFailure = '';
    this.held = []; // opened checkpoints, oldest first
    this.own = []; // {index, participant, node, country, included, since}
    this.policies = []; // the meeting's policy_change entries: {index, proved, since}
    this.policyChanges = 0; // policy_change entries of the meeting shown included
    this.read = new Map(); // the meeting's placements, migrations and policy changes read, by index
    this.head = null; // {seq, hash} of the meeting's chain as read so far
    this.nextEntry = 0; // the meeting's entries below this are all read
    this.queue = Promise.resolve();
    this.stopped = false;
  }

  // checkpoints are the signed notes held, oldest first.
  checkpoints() {
    return this.held.map((c) => c.note);
  }

  // size is the newest held checkpoint's number of entries.
  get size() {
    return this.held.at(-1)?.size ?? 0;
  }

  // ownIncluded: every placement of this browser is in a held checkpoint.
  get ownIncluded() {
    return this.own.length > 0 && this.own.every((o) => o.included);
  }

  // joined takes a join answer's audit state: the checkpoint (and the
  // verifier key, pinned by the first join) and this join's own entry.
  joined(answer) {
    const a = answer?.audit;
    if (!a?.checkpoint || !a?.verifier_key) {
      console.info('oakmeet: the join answer carries no audit checkpoint');
      return this.queue;
    }
    return this.enqueue(async () => {
      await this.pin(a.verifier_key);
      if (Number.isSafeInteger(a.index) && a.index >= 0) {
        this.own.push({ index: a.index, participant: answer.participant_id ?? '', node: answer.node?.id ?? '', country: answer.node?.country ?? '', included: false, since: Date.now() });
      }
      this.every = Math.max(MIN_POLL_MS, Number(a.every_ms) || 2000);
      await this.check(async () => {
        await this.consider(a.checkpoint, 'the join answer', true);
        await this.checkEntries();
      });
      this.schedule();
    });
  }

  // offer checks a checkpoint from elsewhere against what this browser
  // holds; it resolves to {ok, reason}.
  offer(note) {
    return this.enqueue(() => this.offered(note).catch((err) => {
      if (err instanceof Unavailable) return { ok: false, reason: `could not check it now: ${err.message}` };
      throw err;
    }));
  }

  // offered is offer's check, on the queue.
  async offered(note) {
    if (!this.verifier) return { ok: false, reason: 'no log key is pinned yet' };
    let cp;
    try {
      cp = await openCheckpoint(note, this.verifier);
    } catch (err) {
      return { ok: false, reason: `not a checkpoint of this log: ${err.message}` };
    }
    // A newer one than held: the server's latest first, which must be
    // at least as large as anything the log signed.
    if (cp.size > this.size) {
      let latest;
      try {
        latest = await openCheckpoint(await this.get('/api/audit/checkpoint', 'text'), this.verifier);
      } catch (err) {
        if (err instanceof Unavailable) return { ok: false, reason: `could not check it now: ${err.message}` };
        this.alarm(`the server’s latest checkpoint is not signed by the log's key: ${err.message}`);
        return { ok: false, reason: this.reason };
      }
      if (latest.size < cp.size) {
        this.alarm(`a checkpoint another party holds: the log signed a tree of ${cp.size} entries, yet its latest checkpoint has ${latest.size} (entries removed, or a forked log)`);
        return { ok: false, reason: this.reason };
      }
      await this.consider(latest.note, 'the server’s latest checkpoint');
      await this.checkEntries();
    }
    if (this.state === 'inconsistent') return { ok: false, reason: this.reason };
    const newest = this.held.at(-1);
    if (!newest) return { ok: false, reason: 'this browser holds no checkpoint yet' };
    // The server's latest could not be checked against what is held
    // just now (its proof did not come): asked again with the next.
    if (cp.size > newest.size) return { ok: false, reason: 'could not check it now: the server’s latest checkpoint is not held yet' };
    const proof = cp.size < newest.size && cp.size > 0 ? await this.consistency(cp.size, newest.size) : [];
    try {
      await checkConsistency(cp, newest, proof);
    } catch (err) {
      if (!(err instanceof AuditError)) throw err;
      this.alarm(`a checkpoint another party holds: ${err.message}`);
      return { ok: false, reason: this.reason };
    }
    return { ok: true, reason: '' };
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  enqueue(fn) {
    const p = this.queue.then(fn);
    this.queue = p.catch((err) => console.info(`oakmeet: audit check: ${err.message}`));
    return p;
  }

  emit() {
    this.dispatchEvent(new Event('change'));
  }

  // check runs fn, a check of the log, and settles the state on what came
  // of it: a check that could not be made (Unavailable) counts towards
  // 'stale'; one that could is 'consistent' unless an entry waits too
  // long for its proof.
  async check(fn) {
    let why = '';
    try {
      await fn();
    } catch (err) {
      if (!(err instanceof Unavailable)) throw err;
      why = err.message;
    }
    if (this.state === 'inconsistent') return;
    const late = this.overdue();
    if (why) {
      this.failures++;
      this.lastFailure = why;
      if (this.failures >= this.staleFails) this.markStale(`${this.failures} checks in a row failed, the last: ${why}`);
      else if (late) this.markStale(late);
      return;
    }
    this.failures = 0;
    if (late) this.markStale(late);
    else this.consistent();
  }

  // overdue names an entry of this browser's own or a policy change of
  // its meeting not proved in the log within the time it may take.
  overdue() {
    const wait = Math.max(10 * this.every, this.staleMinMs);
    const now = Date.now();
    const why = (what, index) => {
      const after = `after ${Math.round(wait / 1000)} s`;
      if (index >= this.size) return `${what} (entry ${index}) is in no checkpoint the server gave ${after}; its newest has ${this.size} entries`;
      return `${what} (entry ${index}) is not proved in the log ${after}${this.lastFailure ? ` (${this.lastFailure})` : ''}`;
    };
    const o = this.own.find((x) => !x.included && now - x.since > wait);
    if (o) return why('your placement', o.index);
    const p = this.policies.find((x) => !x.proved && now - x.since > wait);
    if (p) return why('the policy change', p.index);
    return '';
  }

  markStale(reason) {
    if (this.state === 'stale' && this.reason === reason) return;
    if (this.state !== 'stale') console.warn(`oakmeet: the audit log could not be checked: ${reason}`);
    this.state = 'stale';
    this.reason = reason;
    this.emit();
  }

  alarm(reason) {
    if (this.state === 'inconsistent') return;
    this.state = 'inconsistent';
    this.reason = reason;
    console.warn(`oakmeet: the audit log contradicts what this browser saw before: ${reason}`);
    this.stop();
    this.emit();
  }

  // pin loads what this browser holds for the meeting and pins the log's
  // key: the one held for the meeting, else the one held for the
  // deployment, else the first join's.
  async pin(vkey) {
    vkey = vkey.trim();
    if (!this.loaded) {
      this.loaded = true;
      const rec = (await this.store.get(this.meeting).catch(() => null)) ?? {};
      this.pinned = rec.verifierKey ?? '';
      this.stored = rec.checkpoints ?? [];
      const dep = (await this.store.get(DEPLOYMENT).catch(() => null)) ?? {};
      this.deployment = dep.verifierKey ?? '';
    }
    if (!this.pinned) {
      this.pinned = this.deployment || vkey;
      await this.save();
    }
    if (!this.deployment) {
      this.deployment = this.pinned;
      await this.store.put(DEPLOYMENT, { verifierKey: this.deployment }).catch((err) => console.info(`oakmeet: keep the audit log key: ${err.message}`));
    }
    if (!this.verifier) {
      this.verifier = await parseVerifier(this.pinned);
      this.key = await entryKey(this.verifier);
      // What this browser held, opened again: a record it cannot open is
      // not one it accepted.
      for (const note of this.stored) {
        try {
          this.held.push(await openCheckpoint(note, this.verifier));
        } catch {
          // dropped
        }
      }
    }
    if (this.pinned !== this.deployment) {
      this.alarm(`this meeting's log key (${this.pinned}) is not the one this browser holds for this deployment (${this.deployment}): one deployment has one log`);
    } else if (vkey !== this.pinned) {
      this.alarm(`the server names another key for the log (${vkey}) than the one this browser holds for this meeting and deployment (${this.pinned})`);
    }
  }

  async save() {
    await this.store.put(this.meeting, { verifierKey: this.pinned, checkpoints: this.checkpoints() }).catch((err) => console.info(`oakmeet: keep audit checkpoints: ${err.message}`));
  }

  // consider checks a checkpoint the server gave (from names where) and
  // holds it if it extends the newest held. A proof that does not come
  // is Unavailable.
  async consider(note, from, mayBeOlder = false) {
    if (this.state === 'inconsistent') return;
    const newest = this.held.at(-1);
    if (newest?.note === note) return;
    let cp;
    try {
      cp = await openCheckpoint(note, this.verifier);
    } catch (err) {
      this.alarm(`the checkpoint in ${from} is not signed by the log's key: ${err.message}`);
      return;
    }
    if (newest && cp.size < newest.size && mayBeOlder) {
      // A join answer is built with the newest checkpoint signed when it
      // was answered; a poll since may already have brought a newer one.
      // An older checkpoint is no alarm if the newer one held extends it.
      // (The server's latest checkpoint, polled, may never be older.)
      const proof = cp.size > 0 ? await this.consistency(cp.size, newest.size) : [];
      try {
        await checkConsistency(cp, newest, proof);
      } catch (err) {
        if (!(err instanceof AuditError)) throw err;
        this.alarm(`the checkpoint in ${from} (${cp.size} entries) is not a prefix of the one of ${newest.size} held: ${err.message}`);
      }
      return;
    }
    if (newest) {
      let proof = [];
      if (cp.size > newest.size && newest.size > 0) proof = await this.consistency(newest.size, cp.size);
      try {
        await checkConsistency(newest, cp, proof);
      } catch (err) {
        if (!(err instanceof AuditError)) throw err;
        this.alarm(err.message);
        return;
      }
      if (cp.size === newest.size) return;
    }
    this.held.push(cp);
    if (this.held.length > MAX_HELD) this.held.splice(1, this.held.length - MAX_HELD);
    await this.save();
    this.dispatchEvent(new Event('held'));
  }

  consistent() {
    if (this.state === 'inconsistent') return;
    this.failures = 0;
    this.state = 'consistent';
    this.reason = '';
    this.emit();
  }

  schedule() {
    if (this.stopped || this.timer !== undefined) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.enqueue(() => this.poll()).finally(() => this.schedule());
    }, this.every);
  }

  // poll takes the server's newest checkpoint and checks the entries it
  // newly covers.
  async poll() {
    if (this.stopped) return;
    await this.check(async () => {
      const note = await this.get('/api/audit/checkpoint', 'text');
      const before = this.size;
      await this.consider(note, 'the server\u2019s latest checkpoint');
      const waiting = this.own.some((o) => !o.included && o.index < this.size) || this.policies.some((p) => !p.proved && p.index < this.size);
      if (this.size !== before || waiting) await this.checkEntries();
    });
  }

  async get(path, as = 'json', token = '') {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    let resp;
    try {
      resp = await fetch(path, { headers, cache: 'no-store' });
    } catch (err) {
      throw new Unavailable(err.message);
    }
    if (!resp.ok) throw new Unavailable(`${path}: HTTP ${resp.status}`);
    return as === 'text' ? resp.text() : resp.json();
  }

  async consistency(from, to) {
    const r = await this.get(`/api/audit/consistency?from=${from}&to=${to}`);
    return this.hashes(r, `no consistency proof from size ${from} to ${to}`);
  }

  // hashes reads a proof the server sent; one it cannot read is one that
  // did not come.
  hashes(r, what) {
    try {
      return proofHashes(r?.proof ?? []);
    } catch (err) {
      throw new Unavailable(`${what}: ${err.message}`);
    }
  }

  async entries(start, limit) {
    const q = new URLSearchParams({ meeting: this.meeting, start: String(start) });
    if (limit) q.set('limit', String(limit));
    return this.get(`/api/audit/entries?${q}`, 'json', this.token?.() ?? '');
  }

  // included checks entry e against the newest held checkpoint.
  async included(e) {
    const cp = this.held.at(-1);
    const r = await this.get(`/api/audit/proof?index=${e.index}&size=${cp.size}`);
    await checkInclusion(cp, e.index, leafData(e), this.hashes(r, `no inclusion proof of entry ${e.index} in the tree of size ${cp.size}`));
  }

  // readEntries reads the meeting's entries below size not read yet, as
  // Go's AuditWatcher does: each of this meeting, after the one before,
  // and signed by the log's key in its chain.
  async readEntries(size) {
    while (this.nextEntry < size) {
      const start = this.nextEntry;
      const page = await this.entries(start, 0);
      if (!Array.isArray(page?.entries)) throw new Unavailable("the meeting's log entries: not a page of entries");
      for (const e of page.entries) {
        if (e?.meeting !== this.meeting) throw new AuditError('entry', `the log's entries of meeting ${this.meeting} include entry ${e?.index} of meeting ${JSON.stringify(e?.meeting)}`);
        if (!Number.isSafeInteger(e.index) || e.index < this.nextEntry) throw new AuditError('chain', `the log's entries of meeting ${this.meeting} go back from index ${this.nextEntry} to ${e.index}`);
        await checkEntry(this.key, e, this.head);
        this.head = { seq: e.seq, hash: e.hash };
        this.nextEntry = e.index + 1;
        if (OWN_KINDS.has(e.kind) || e.kind === 'policy_change') this.read.set(e.index, e);
        if (e.kind === 'policy_change') this.policies.push({ index: e.index, proved: false, since: Date.now() });
      }
      if (!page.more) {
        // No entry of the meeting between the last one and the log's
        // size when the page was read.
        this.nextEntry = Math.max(this.nextEntry, Number.isSafeInteger(page.size) ? page.size : 0);
        return;
      }
      if (!(page.next >= this.nextEntry) || !(page.next > start)) throw new Unavailable(`the meeting's log entries: a page ends before it starts (next ${page.next})`);
      this.nextEntry = page.next;
    }
  }

  // checkEntries checks this browser's own entries and its meeting's
  // policy changes that the newest held checkpoint covers. A proof or a
  // page that does not come is Unavailable; a contradiction, an alarm.
  async checkEntries() {
    if (this.state === 'inconsistent' || this.held.length === 0) return;
    const size = this.size;
    try {
      await this.readEntries(size);
      for (const o of this.own) {
        if (o.included || o.index >= size) continue;
        const e = this.read.get(o.index);
        if (!e) {
          if (o.index < this.nextEntry) throw new AuditError('not_included', `the log shows no entry ${o.index} among this meeting's entries, yet the join answer named it as your placement`);
          throw new Unavailable(`the meeting's log entries do not reach entry ${o.index} yet`);
        }
        if (!OWN_KINDS.has(e.kind) || e.participant !== o.participant || e.node !== o.node || e.node_country !== o.country) {
          throw new AuditError('not_included', `entry ${o.index} of the log says ${e.kind} of ${JSON.stringify(e.participant ?? '')} on ${e.node || 'no server'} (${e.node_country || '?'}), but your browser (${o.participant}) was placed on ${o.node} (${o.country})`);
        }
        await this.included(e);
        o.included = true;
        this.emit();
      }
      for (const p of this.policies) {
        if (p.proved || p.index >= size) continue;
        await this.included(this.read.get(p.index));
        p.proved = true;
        this.policyChanges++;
        this.emit();
      }
    } catch (err) {
      if (err instanceof AuditError) this.alarm(err.message);
      else throw err;
    }
  }
}
