// A simulation of the browser's key schedule, like e2ee/group's: several
// Members over an in-memory relay the test controls (who reaches whom, in
// which order) with a fake clock. The server is the adversary: it decides
// each member's roster view and which messages arrive.

import { hex } from '/js/e2ee/bytes.js';
import { Member } from '/js/e2ee/group.js';
import { Identity } from '/js/e2ee/identity.js';
import { TAKEOVER_JUMP } from '/js/e2ee/leader.js';
import * as keymsg from '/js/e2ee/keymsg.js';
import * as sframe from '/js/e2ee/sframe.js';
import { securityCode } from '/js/e2ee/securitycode.js';
import { eq, prng, test } from './testlib.js';

export class Sim {
  constructor(meeting, { seed = 1, shuffle = false, chaos = false, cfg = {} } = {}) {
    this.meeting = meeting;
    this.t = 0;
    this.now = () => this.t;
    this.members = new Map();
    this.queue = [];
    this.rnd = prng(seed);
    this.shuffle = shuffle;
    // chaos duplicates some deliveries and drops some of the messages the
    // protocol repeats (announcements, acks, commits).
    this.chaos = chaos;
    // A key a member sends under must be the key every member present
    // holds for that KID as that member's (checked as keys arrive): else
    // its frames fail to authenticate there, not merely lack a key. The
    // media Worker tries a frame only with a key it holds as the track's
    // participant's; receivers alone may hold two leaders' uncommitted
    // epochs of one number, as nobody sends under an epoch until everyone
    // in it acked it.
    this.violations = [];
    this.cfg = cfg;
    this.link = () => true; // link(from, to, payload): does the relay carry it
    this.senders = []; // every setSender: {who, kid, t}
    this.made = new Map(); // "leader/epoch" -> roster participant ids
    this.errors = [];
    this.committed = new Set(); // epoch numbers a leader committed
  }

  async add(pid, cfg = {}) {
    const sink = { keys: new Map(), owners: new Map(), sender: null };
    const media = {
      setSender: (k, base) => {
        sink.sender = k === null ? null : { k, base: base.slice() };
        this.senders.push({ who: pid, kid: k, t: this.t });
        if (k !== null) this.holds(pid, k, base, true);
      },
      addKey: (k, base, owner) => {
        sink.keys.set(k, base.slice());
        sink.owners.set(k, owner);
        this.holds(pid, k, base, false, owner);
      },
      removeKey: (k) => {
        sink.keys.delete(k);
        sink.owners.delete(k);
      },
    };
    const randomU32 = () => Math.floor(this.rnd() * 2 ** 32); // epoch number jumps follow the seed
    const m = await Member.create({ meeting: this.meeting, participant: pid, name: pid, identity: await Identity.generate(), media, now: this.now, randomU32, ...this.cfg, ...cfg });
    m.sink = sink;
    this.members.set(pid, m);
    return m;
  }

  holds(pid, k, base, sending, owner) {
    const h = hex(base);
    for (const [other, m] of this.members) {
      if (other === pid) continue;
      let theirs = null;
      if (sending && m.sink.owners.get(k) === pid) theirs = m.sink.keys.get(k);
      if (!sending && other === owner && m.sink.sender?.k === k) theirs = m.sink.sender.base;
      if (theirs && hex(theirs) !== h) this.violations.push(`KID ${k}: ${sending ? pid : other} sends under another key than ${sending ? other : pid} holds for it`);
    }
  }

  get(pid) {
    return this.members.get(pid);
  }

  send(from, outs) {
    for (const o of outs) {
      if (o.payload.type === 'epoch') this.made.set(`${from}/${o.payload.epoch}`, o.payload.roster.map((e) => e.participant));
      if (o.payload.type === 'commit') this.committed.add(o.payload.epoch);
      for (const [pid, m] of this.members) {
        if (pid === from || (o.to !== '' && o.to !== pid) || !this.link(from, pid, o.payload)) continue;
        this.queue.push([m, from, JSON.parse(JSON.stringify(o.payload))]);
      }
    }
  }

  async drain(limit = 200000) {
    for (let n = 0; this.queue.length; n++) {
      if (n > limit) throw new Error('the relay does not go quiet');
      const i = this.shuffle ? Math.floor(this.rnd() * this.queue.length) : 0;
      const [m, from, payload] = this.queue.splice(i, 1)[0];
      if (this.members.get(m.participant) !== m) continue;
      if (this.chaos) {
        const r = this.rnd();
        if (r < 0.1) this.queue.push([m, from, payload]);
        else if (r < 0.2 && ['announce', 'ack', 'commit'].includes(payload.type)) continue;
      }
      const r = await m.handleMessage(from, payload);
      if (r.error) this.errors.push(`${m.participant} <- ${from} ${payload.type}: ${r.error.code ?? r.error.message}`);
      this.send(m.participant, r.out);
    }
  }

  // views gives every member the roster view fn(pid) (join order).
  async views(fn) {
    for (const [pid, m] of this.members) this.send(pid, await m.onRosterChange(fn(pid)));
    await this.drain();
  }

  async tick(ms) {
    this.t += ms;
    for (const [pid, m] of this.members) this.send(pid, await m.tick());
    await this.drain();
  }

  async run(ms, step = 100) {
    for (let done = 0; done < ms; done += step) await this.tick(step);
  }

  // join adds participants one after the other, as clients join: each
  // announces itself to those present, then everyone's view lists all
  // members in join order.
  async join(...pids) {
    for (const pid of pids) {
      const m = await this.add(pid);
      this.send(pid, [m.announce()]);
      const all = [...this.members.keys()];
      await this.views(() => all);
    }
  }

  leave(pid) {
    this.members.delete(pid);
  }

  epochsWith(pid) {
    const out = new Set();
    for (const [k, roster] of this.made) if (roster.includes(pid)) out.add(Number(k.split('/')[1]));
    return out;
  }
}

const kidEpoch = (k) => Number(BigInt(k) >> 16n);

// frame is an Opus frame protected with m's current sender key, or null
// when m sends nothing.
async function frame(m) {
  if (!m.sink.sender) return null;
  const s = await sframe.Sender.create(m.sink.sender.k, m.sink.sender.base);
  return sframe.protect(s, sframe.OPUS, new Uint8Array([0x78, 1, 2, 3]));
}

// opens reports whether m's receiver keys decrypt f.
async function opens(m, f) {
  const r = new sframe.Receiver();
  for (const [k, base] of m.sink.keys) await r.addKey(k, base);
  try {
    await sframe.unprotect(r, sframe.OPUS, f);
    return true;
  } catch {
    return false;
  }
}

function converged(ms, what) {
  const [first] = ms;
  eq(first.epoch > 0, true, `${what}: ${first.participant} has an epoch`);
  for (const m of ms) {
    eq(m.epoch, first.epoch, `${what}: ${m.participant}'s sending epoch`);
    eq(m.securityCode, first.securityCode, `${what}: ${m.participant}'s code`);
  }
  eq(first.roster.map((e) => e.participant).sort().join(), ms.map((m) => m.participant).sort().join(), `${what}: roster`);
}

async function mutualFrames(ms, outsiders, what) {
  for (const s of ms) {
    const f = await frame(s);
    eq(f !== null, true, `${what}: ${s.participant} sends`);
    for (const r of ms) if (r !== s) eq(await opens(r, f), true, `${what}: ${r.participant} decrypts ${s.participant}`);
    for (const o of outsiders) eq(await opens(o, f), false, `${what}: ${o.participant} decrypts ${s.participant}`);
  }
}

test('group sim: three members converge; acks and commit gate sending', async () => {
  const sim = new Sim('m-sim');
  await sim.join('a', 'b', 'c');
  await sim.run(2000);
  const ms = ['a', 'b', 'c'].map((p) => sim.get(p));
  converged(ms, 'settled');
  await mutualFrames(ms, [], 'settled');
  // Everyone sent only under committed epochs.
  for (const s of sim.senders) if (s.kid !== null) eq(sim.committed.has(kidEpoch(s.kid)), true, `${s.who} sent under epoch ${kidEpoch(s.kid)}, committed`);
  eq(sim.senders.filter((s) => s.who !== 'a').length, 2, 'b and c set a sender once each');
  const st = sim.get('a').status();
  eq(st.epoch, st.newest, 'leader: sending is newest');
  eq(st.awaitingAcks.length, 0, 'leader awaits no acks');
  eq(st.unheard.length, 0, 'nobody unheard');
  for (const m of ms) {
    const ps = m.people();
    eq(ps.length, 3, `${m.participant} sees 3 people`);
    for (const p of ps) {
      eq(p.inKeys && p.listed && p.heard && !p.pending && !p.removed, true, `${m.participant} sees ${p.participant} in keys, listed, heard`);
      eq(p.name, p.participant, 'name from the roster');
      eq(p.leader, p.participant === 'a', 'leader flag');
      eq(p.self, p.participant === m.participant, 'self flag');
    }
  }
});

test('group sim: a ghost shown to the leader alone is never sent under, and is flagged', async () => {
  const sim = new Sim('m-ghost');
  await sim.join('a', 'b', 'c');
  await sim.run(2000);
  const honest = ['a', 'b', 'c'].map((p) => sim.get(p));
  converged(honest, 'before the ghost');
  const before = honest[0].epoch;
  // The server makes a ghost, lists it to the leader only, and lets it talk
  // to the leader only (it hears everyone).
  const ghost = await sim.add('ghost');
  sim.link = (from, to) => from !== 'ghost' || to === 'a';
  sim.send('ghost', [ghost.announce()]);
  await sim.views((pid) => (pid === 'a' || pid === 'ghost' ? ['a', 'b', 'c', 'ghost'] : ['a', 'b', 'c']));
  await sim.run(12000);
  const withGhost = sim.epochsWith('ghost');
  eq(withGhost.size > 0, true, 'the leader keyed the ghost');
  for (const s of sim.senders) {
    if (s.kid !== null && s.who !== 'ghost') eq(withGhost.has(kidEpoch(s.kid)), false, `${s.who} sends under epoch ${kidEpoch(s.kid)}, which names the ghost`);
  }
  for (const m of honest) eq(m.epoch, before, `${m.participant} keeps sending under the epoch without the ghost`);
  await mutualFrames(honest, [ghost], 'with a ghost around');
  const pb = sim.get('b').people().find((p) => p.participant === 'ghost');
  eq(!!pb, true, 'b lists the ghost');
  eq(pb.pending && !pb.inKeys && !pb.listed && !pb.heard, true, 'b: ghost pending, not listed, not heard');
  const pa = sim.get('a').people().find((p) => p.participant === 'ghost');
  eq(pa.pending && !pa.inKeys && pa.listed, true, 'a: ghost pending and listed');
  eq(sim.get('a').status().awaitingAcks.sort().join(), 'b,c', 'a awaits acks from b and c');
  eq(sim.get('b').status().unheard.join(), 'ghost', 'b has not heard the ghost');
  eq(sim.get('b').status().newest > before, true, 'b installed the ghost epoch (it may receive under it)');
  // The server gives up: the leader re-keys without the ghost and the
  // group goes on.
  sim.leave('ghost');
  sim.link = () => true;
  await sim.views(() => ['a', 'b', 'c']);
  await sim.run(2000);
  converged(honest, 'after the ghost');
  eq(honest[0].epoch > Math.max(...withGhost), true, 'a newer epoch without the ghost');
  await mutualFrames(honest, [ghost], 'after the ghost');
});

test('group sim: a removed member decrypts nothing sent after its removal', async () => {
  const sim = new Sim('m-remove');
  await sim.join('a', 'b', 'c', 'd');
  await sim.run(2000);
  const ms = ['a', 'b', 'c', 'd'].map((p) => sim.get(p));
  converged(ms, 'before the removal');
  const d = sim.get('d');
  const rest = ms.slice(0, 3);
  // The host removes d; a malicious node keeps listing d and forwarding to
  // it. Each client applies the verified removal.
  for (const m of rest) sim.send(m.participant, await m.remove('d', d.identity.publicKey));
  const removedAt = sim.t;
  for (const m of rest) eq(m.sink.sender, null, `${m.participant} stops sending at once`);
  await sim.drain();
  await sim.run(3000);
  sim.send('d', [d.announce()]);
  await sim.drain();
  converged(rest, 'after the removal');
  for (const s of sim.senders) {
    if (s.kid === null || s.who === 'd' || s.t < removedAt) continue;
    eq(sim.epochsWith('d').has(kidEpoch(s.kid)), false, `${s.who} sends under epoch ${kidEpoch(s.kid)}, which names d`);
  }
  await mutualFrames(rest, [d], 'after the removal');
  const pd = sim.get('b').people().find((p) => p.participant === 'd');
  eq(pd.removed && pd.listed && !pd.inKeys, true, 'b shows d removed, listed, not in the keys');
  eq(sim.errors.some((e) => e.startsWith('b <- d announce: removed')), true, 'd\'s announcement is ignored');
});

test('group sim: 20 joins within 1 s make at most 5 epochs', async () => {
  const sim = new Sim('m-batch');
  await sim.join('a');
  await sim.run(500);
  const before = sim.made.size;
  for (let i = 0; i < 20; i++) {
    await sim.join(`j${i}`);
    await sim.tick(50);
  }
  await sim.run(4000);
  const made = sim.made.size - before;
  eq(made >= 1 && made <= 5, true, `${made} epochs for 20 joins`);
  converged([...sim.members.values()], 'after the joins');
  eq(sim.get('a').roster.length, 21, 'roster');
  await mutualFrames([sim.get('a'), sim.get('j7'), sim.get('j19')], [], 'after the joins');
});

// The churn run's seeds: the first 40, and those that once found a bug
// (1,200 seeds passed when this was written).
const CHURN_SEEDS = [...Array(40).keys()].map((i) => i + 1).concat([605]);

test('group sim: churn under a lying relay (seeded); nobody sends under a key another member holds otherwise', async () => {
  for (const seed of CHURN_SEEDS) {
    const sim = new Sim(`m-churn-${seed}`, { seed, shuffle: true, chaos: true });
    const what = `seed ${seed}`;
    await sim.join('a', 'b', 'c');
    await sim.run(1000);
    await sim.join('d', 'e');
    await sim.run(200);
    // The leader leaves in the middle of keying the joins.
    sim.leave('a');
    await sim.views(() => ['b', 'c', 'd', 'e']);
    await sim.run(300);
    sim.leave('d');
    await sim.views(() => ['b', 'c', 'e']);
    await sim.join('f');
    await sim.run(500);
    // For a while the server shows c itself first, and e another order.
    await sim.views((pid) => (pid === 'c' ? ['c', 'b', 'e', 'f'] : pid === 'e' ? ['b', 'f', 'e', 'c'] : ['b', 'c', 'e', 'f']));
    await sim.run(700);
    await sim.views(() => ['b', 'c', 'e', 'f']);
    // The churn stops; so do the drops.
    sim.chaos = false;
    await sim.run(12000, 250);
    eq(sim.violations.join('; '), '', `${what}: keys under one KID`);
    const ms = [...sim.members.values()];
    converged(ms, what);
    await mutualFrames(ms, [], what);
  }
});

test('security code: changes with a name and with the policy hash', async () => {
  const sim = new Sim('m-code');
  await sim.join('a', 'b');
  await sim.run(1000);
  const [a, b] = [sim.get('a'), sim.get('b')];
  converged([a, b], 'settled');
  const code0 = a.securityCode;
  eq(await securityCode('m-code', a.roster, ''), code0, 'code of the roster and an empty policy hash');
  await a.setPolicyHash('sha256:1111');
  eq(a.securityCode === code0, false, 'code changes with the policy hash');
  eq(b.securityCode, code0, 'b still has the old policy hash');
  await b.setPolicyHash('sha256:1111');
  eq(b.securityCode, a.securityCode, 'same policy hash, same code');
  eq(await securityCode('m-code', a.roster, 'sha256:1111'), a.securityCode, 'code from the policy hash');
  // The same keys under another display name give another code.
  const renamed = a.roster.map((e) => (e.participant === 'b' ? { ...e, name: 'b.' } : e));
  eq(await securityCode('m-code', renamed, 'sha256:1111') === a.securityCode, false, 'code changes with a name');
  // A member made with a policy hash and a name uses both.
  const id = await Identity.generate();
  const solo = await Member.create({ meeting: 'm-solo', participant: 'x', name: 'Xavier', policyHash: 'p', identity: id, now: () => 0 });
  await solo.onRosterChange(['x']);
  // Its first epoch takes the numbering over from nothing: a jump.
  eq(solo.epoch >= TAKEOVER_JUMP && solo.epoch < 2 * TAKEOVER_JUMP, true, 'a lone member commits its own epoch, numbered by a jump');
  eq(solo.roster[0].name, 'Xavier', 'name in the roster');
  eq(solo.securityCode, await securityCode('m-solo', [solo.self], 'p'), 'lone member code');
  eq(keymsg.decode(solo.announcement).entry.name, 'Xavier', 'name in the announcement');
});

test('group sim: forged announcements, acks and commits are refused', async () => {
  const sim = new Sim('m-forge');
  await sim.join('a', 'b');
  await sim.run(1000);
  const [a, b] = [sim.get('a'), sim.get('b')];
  converged([a, b], 'settled');
  // An announcement for c whose signature does not verify is not heard.
  const c = await sim.add('c');
  const forged = structuredClone(c.announcement);
  forged.sig = forged.sig.replace(/^./, (ch) => (ch === 'A' ? 'B' : 'A'));
  const r1 = await b.handleMessage('c', forged);
  eq(r1.error instanceof keymsg.KeyMsgError, true, 'forged announcement refused');
  eq(b.heard.has('c'), false, 'c not heard');
  eq((await b.handleMessage('c', c.announcement)).error, null, 'the real one is accepted');
  eq(b.heard.has('c'), true, 'c heard');
  // An epoch a does not hold yet: make one with c, and forge its ack and
  // commit with the wrong keys.
  sim.leave('c');
  const st = a.sending;
  const ack = await keymsg.newAck('m-forge', st.number, 'b', st.digest, c.identity);
  const r2 = await a.handleMessage('b', keymsg.encode(ack));
  eq(r2.error instanceof keymsg.KeyMsgError, true, 'ack signed with another key refused');
  const commit = await keymsg.newCommit('m-forge', st.number + 1, st.digest, b.identity);
  const r3 = await b.handleMessage('a', keymsg.encode(commit));
  eq(r3.error?.code, 'unknown_epoch', 'commit of an epoch b does not hold refused');
  // d joins; a's commits are lost for a while. A commit of a's epoch
  // signed by b is refused; the real one comes when d acks again.
  sim.link = (from, to, p) => p.type !== 'commit';
  await sim.join('d');
  await sim.run(1000);
  const d = sim.get('d');
  const pending = d.newest();
  eq(pending !== null && !pending.committed && d.epoch === 0, true, 'd holds a\'s epoch, not committed');
  const bad = await keymsg.newCommit('m-forge', pending.number, pending.digest, b.identity);
  eq((await d.handleMessage('a', keymsg.encode(bad))).error instanceof keymsg.KeyMsgError, true, 'commit signed by a non-leader refused');
  eq(d.epoch, 0, 'd still sends nothing');
  sim.link = () => true;
  await sim.run(6000);
  converged([a, b, d], 'after d joined');
});

test('group sim: a removed leader is skipped; a removed identity stays out under a new id', async () => {
  const sim = new Sim('m-remove-leader');
  await sim.join('a', 'b', 'c');
  await sim.run(2000);
  converged(['a', 'b', 'c'].map((p) => sim.get(p)), 'settled');
  const a = sim.get('a');
  // The host removes the leader; the node keeps it first in every view.
  for (const p of ['b', 'c']) sim.send(p, await sim.get(p).remove('a', a.identity.publicKey));
  await sim.drain();
  await sim.run(3000);
  const [b, c] = [sim.get('b'), sim.get('c')];
  eq(b.leader, 'b', 'b leads once a is removed');
  converged([b, c], 'after removing the leader');
  await mutualFrames([b, c], [a], 'after removing the leader');
  eq(b.people().find((p) => p.participant === 'b').leader, true, 'b shown as leader');
  // a comes back under a new participant id with the same identity key.
  const again = await sim.add('a2', { identity: a.identity });
  sim.send('a2', [again.announce()]);
  await sim.views(() => ['a', 'b', 'c', 'a2']);
  await sim.run(3000);
  eq(sim.errors.some((e) => e.startsWith('b <- a2 announce: removed')), true, 'a2\'s announcement refused: its identity was removed');
  converged([b, c], 'a2 stays out');
  await mutualFrames([b, c], [a, again], 'a2 stays out');
  const p2 = c.people().find((p) => p.participant === 'a2');
  eq(p2.listed && !p2.inKeys && !p2.pending, true, 'c lists a2 as not in the encryption');
});

test('group: onChange runs once for a burst of changes', async () => {
  const later = [];
  const sim = new Sim('m-notify', { cfg: { schedule: (fn) => later.push(fn) } });
  await sim.join('a', 'b');
  await sim.run(1000);
  const a = sim.get('a');
  later.splice(0).forEach((fn) => fn());
  let calls = 0;
  a.onChange(() => calls++);
  for (const p of ['x1', 'x2', 'x3', 'x4']) await a.onRosterChange(['a', 'b', p]);
  eq(calls, 0, 'not at once');
  eq(later.length, 1, 'one run scheduled for four changes');
  later.shift()();
  eq(calls, 1, 'listeners ran once');
  await a.onRosterChange(['a', 'b']);
  eq(later.length, 1, 'a later change schedules again');
});
