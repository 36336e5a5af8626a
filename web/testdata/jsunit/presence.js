// The presence key message (web/static/js/e2ee/keymsg.js) against Go's
// golden vector (e2ee/keymsg/testdata/presence.json, served at
// /vectors/presence.json), and how a member and presence.js take one:
// verified with the announced key, sender and meeting matching, seq
// strictly increasing.

import { b64, fromHex, hex } from '/js/e2ee/bytes.js';
import * as keymsg from '/js/e2ee/keymsg.js';
import { Identity } from '/js/e2ee/identity.js';
import { Member } from '/js/e2ee/group.js';
import { MAX_PRESENCE, MAX_PRESENCE_WAIT } from '/js/e2ee/grouppresence.js';
import { Presence } from '/js/presence.js';
import { eq, test, throwsAsync } from './testlib.js';

test('presence message: Go vector decodes, has Go\'s signed bytes, verifies, re-encodes', async () => {
  const v = await (await fetch('/vectors/presence.json')).json();
  const id = await Identity.fromSeed(fromHex(v.identity_seed));
  eq(b64(id.publicKey), v.identity, 'identity from seed');
  const p = keymsg.decode(JSON.stringify(v.message));
  eq(hex(keymsg.presenceTBS(p)), v.tbs, 'signed bytes');
  await keymsg.verifyPresence(p, id.publicKey);
  eq(JSON.stringify(keymsg.encode(p)), JSON.stringify(v.message), 're-encoded');
  const mine = await keymsg.newPresence('m1', 'alice', 7, { mic: false, camera: true, hand: true, screen: false }, id);
  eq(b64(mine.sig), v.message.sig, 'Ed25519 is deterministic: the same signature');
  for (const [what, alter] of [['another meeting', { meeting: 'm2' }], ['another participant', { participant: 'bob' }], ['another seq', { seq: 8 }],
    ['mic on', { mic: true }], ['camera off', { camera: false }], ['hand down', { hand: false }], ['screen on', { screen: true }]]) {
    await throwsAsync(() => keymsg.verifyPresence({ ...p, ...alter }, id.publicKey), `verifies with ${what}`);
  }
  const flipped = p.sig.slice();
  flipped[3] ^= 1;
  await throwsAsync(() => keymsg.verifyPresence({ ...p, sig: flipped }, id.publicKey), 'flipped signature');
  const other = await Identity.fromSeed(new Uint8Array(32).fill(2));
  await throwsAsync(() => keymsg.verifyPresence(p, other.publicKey), 'another key');
  const { hand, ...handless } = v.message;
  for (const [what, wire] of [['an extra field', { ...v.message, extra: 1 }], ['no hand', handless], ['mic as 1', { ...v.message, mic: 1 }],
    ['seq 0', { ...v.message, seq: 0 }], ['seq 2^48', { ...v.message, seq: 2 ** 48 }], ['seq 1.5', { ...v.message, seq: 1.5 }],
    ['a short signature', { ...v.message, sig: v.message.sig.slice(0, 40) }], ['null screen', { ...v.message, screen: null }]]) {
    await throwsAsync(() => keymsg.decode(JSON.stringify(wire)), `decodes with ${what}`);
  }
  await throwsAsync(() => keymsg.newPresence('m1', 'alice', 0, {}, id), 'signs seq 0');
});

// members makes members of meeting m1 with fixed identities (seed byte
// per name) on one clock, and an in-memory relay between them.
async function members(names) {
  let t = 0;
  const ms = new Map();
  const ids = new Map();
  for (const [i, name] of names.entries()) {
    const id = await Identity.fromSeed(new Uint8Array(32).fill(i + 1));
    ids.set(name, id);
    ms.set(name, await Member.create({ meeting: 'm1', participant: name, identity: id, now: () => t, schedule: () => {} }));
  }
  const queue = [];
  const send = (from, outs) => {
    for (const o of outs) {
      for (const [name, m] of ms) if (name !== from && (o.to === '' || o.to === name)) queue.push([m, from, JSON.parse(JSON.stringify(o.payload))]);
    }
  };
  const drain = async () => {
    for (let n = 0; queue.length && n < 1000; n++) {
      const [m, from, payload] = queue.shift();
      send(m.participant, (await m.handleMessage(from, payload)).out);
    }
  };
  // key runs the key schedule of those present until it settles.
  const key = async (present) => {
    for (const name of present) send(name, await ms.get(name).onRosterChange(present));
    await drain();
    t += 1000;
    for (const name of present) send(name, await ms.get(name).tick());
    await drain();
  };
  const announce = async (name) => {
    send(name, [ms.get(name).announce()]);
    await drain();
  };
  return { ms, ids, send, drain, key, announce };
}

// receiver is a Presence on a fake call whose one session is s (current).
function receiver(identity) {
  const events = [];
  const s = { id: 'bob', sendRelay() {} };
  const call = { meeting: 'm1', identity, sessions: new Set([s]), session: s, presence: new Map(), emit: (type, d) => events.push([type, d]) };
  return { s, call, events, pres: new Presence(call) };
}

const wire = async (seq, state, who, pid = 'alice') => keymsg.encode(await keymsg.newPresence('m1', pid, seq, state, who));

// A member hands on only presence that verifies with the key its sending
// epoch names for the sender (earlier ones wait for that epoch), names
// the sender, and carries a seq above the last it accepted.
test('presence: keyed by the sending epoch, sender-bound and replay-proof', async () => {
  const net = await members(['alice', 'bob']);
  const alice = net.ids.get('alice');
  const mallory = await Identity.fromSeed(new Uint8Array(32).fill(9));
  const mb = net.ms.get('bob');
  const { s, call, events, pres } = receiver(net.ids.get('bob'));
  mb.onPresence = (from, p, id) => pres.receive(s, from, p, id);
  let r = await mb.handleMessage('alice', await wire(1, { mic: false }, alice));
  eq(r.error?.code, 'unknown_sender', 'before the announcement');
  await net.announce('alice');
  await net.announce('bob');
  r = await mb.handleMessage('alice', await wire(2, { mic: false, camera: true }, alice));
  eq(r.error?.code, 'not_in_keys', 'announced, but in no sending epoch');
  eq(r.error?.deferred, true, 'kept for the epoch');
  eq(call.presence.has('alice'), false, 'not shown before the epoch');
  await net.key(['alice', 'bob']);
  eq(mb.epoch > 0 && mb.securityCode === net.ms.get('alice').securityCode, true, 'one epoch');
  eq(call.presence.get('alice')?.mic, false, 'alice muted once keyed');
  eq(call.presence.get('alice')?.camera, true, 'alice camera on');
  eq(events.length, 1, 'one presence event');
  r = await mb.handleMessage('alice', await wire(3, { mic: true }, mallory));
  eq(r.error?.code, 'bad_signature', 'signed by another key');
  r = await mb.handleMessage('carol', await wire(3, { mic: true }, alice));
  eq(r.error?.code, 'sender_mismatch', 'relayed as from another participant');
  r = await mb.handleMessage('alice', JSON.stringify({ ...(await wire(3, { mic: true }, alice)), meeting: 'm2' }));
  eq(r.error?.code, 'wrong_meeting', 'for another meeting');
  r = await mb.handleMessage('alice', await wire(1, { mic: true }, alice));
  eq(r.error?.code, 'replay', 'an older seq is a replay');
  r = await mb.handleMessage('alice', await wire(2, { mic: false, camera: true }, alice));
  eq(r.error?.code, 'duplicate', 'the same seq is a copy');
  eq(call.presence.get('alice').mic, false, 'still muted after the forgeries');
  await mb.handleMessage('alice', await wire(5, { mic: true, hand: true }, alice));
  eq(call.presence.get('alice').mic, true, 'unmuted by a newer seq');
  eq(call.presence.get('alice').hand, true, 'hand raised');
  eq(call.presence.get('alice').seq, 5, 'seq kept');
  // Leaving forgets what is shown, not the seq: an old one replayed to a
  // returning id is still refused.
  pres.prune(new Set());
  eq(call.presence.has('alice'), false, 'forgotten on leaving');
  r = await mb.handleMessage('alice', await wire(4, { mic: false }, alice));
  eq(r.error?.code, 'replay', 'an older seq after leaving');
  eq(call.presence.has('alice'), false, 'still forgotten');
});

// A server that announces alice's id afresh with its own key cannot sign
// her presence (only the sending epoch's key counts), and swapping her
// real announcement back does not start her seq over.
test('presence: a key the server announced counts for nothing; a key swap resets no seq', async () => {
  const net = await members(['alice', 'bob']);
  const alice = net.ids.get('alice');
  const mallory = await Identity.fromSeed(new Uint8Array(32).fill(9));
  const mb = net.ms.get('bob');
  const { s, call, pres } = receiver(net.ids.get('bob'));
  mb.onPresence = (from, p, id) => pres.receive(s, from, p, id);
  await net.announce('alice');
  await net.announce('bob');
  await net.key(['alice', 'bob']);
  const old = await wire(1, { mic: true, hand: true }, alice);
  eq((await mb.handleMessage('alice', old)).error, null, 'seq 1');
  eq((await mb.handleMessage('alice', await wire(2, { mic: false }, alice))).error, null, 'seq 2');
  const fake = await Member.create({ meeting: 'm1', participant: 'alice', identity: mallory, schedule: () => {} });
  await mb.handleMessage('alice', fake.announcement);
  let r = await mb.handleMessage('alice', await wire(3, { mic: true, hand: true, camera: true }, mallory));
  eq(r.error?.code, 'bad_signature', 'presence signed with the announced key');
  eq(call.presence.get('alice').seq, 2, 'shown unchanged');
  await mb.handleMessage('alice', net.ms.get('alice').announcement);
  r = await mb.handleMessage('alice', old);
  eq(r.error?.code, 'replay', 'alice\'s seq 1 after the swap back');
  eq(call.presence.get('alice').mic, false, 'still muted');
});

// Throw-away ids cannot push out the seq of someone present: their
// presence waits (bounded) for an epoch that never names them; and when
// the seqs kept are at their bound and all of someone the view lists, a
// new participant is refused rather than anyone's seq forgotten.
test('presence: the seq of those present is never forgotten', async () => {
  const net = await members(['alice', 'bob', 'cy']);
  const alice = net.ids.get('alice');
  const mallory = await Identity.fromSeed(new Uint8Array(32).fill(9));
  const mb = net.ms.get('bob');
  const { s, call, pres } = receiver(net.ids.get('bob'));
  mb.onPresence = (from, p, id) => pres.receive(s, from, p, id);
  for (const n of ['alice', 'bob']) await net.announce(n);
  await net.key(['alice', 'bob']);
  const old = await wire(1, { mic: true }, alice);
  await mb.handleMessage('alice', old);
  await mb.handleMessage('alice', await wire(2, { mic: false }, alice));
  const hpkePub = net.ms.get('cy').self.hpke;
  let full = 0; // refused: too many waiting, or too many announced
  for (let i = 0; i < MAX_PRESENCE_WAIT + 20; i++) {
    const pid = `f${i}`;
    await mb.handleMessage(pid, keymsg.encode(await keymsg.newAnnouncement('m1', pid, '', mallory, hpkePub)));
    const r = await mb.handleMessage(pid, await wire(1, { mic: true }, mallory, pid));
    if (r.error?.code === 'too_many' || r.error?.code === 'unknown_sender') full++;
  }
  eq(full > 0 && mb.presence.wait.size <= MAX_PRESENCE_WAIT, true, `waiting presence bounded (${mb.presence.wait.size} kept, ${full} refused)`);
  eq((await mb.handleMessage('alice', old)).error?.code, 'replay', 'alice\'s seq 1 after the flood');

  // The seqs at their bound, each of someone the view lists: cy, keyed
  // now, is refused, and alice's seq stays.
  const listed = ['alice', 'bob', 'cy'];
  for (let i = mb.presence.seq.size; i < MAX_PRESENCE; i++) {
    mb.presence.seq.set(`v${i}`, 1);
    listed.push(`v${i}`);
  }
  await net.announce('cy');
  await net.key(['alice', 'bob', 'cy']);
  mb.view = listed;
  const cy = net.ids.get('cy');
  let r = await mb.handleMessage('cy', await wire(1, { hand: true }, cy, 'cy'));
  eq(r.error?.code, 'too_many', 'a new participant with every seq taken');
  eq(mb.presence.seq.get('alice'), 2, 'alice\'s seq kept');
  mb.view = ['alice', 'bob', 'cy'];
  r = await mb.handleMessage('cy', await wire(2, { hand: true }, cy, 'cy'));
  eq(r.error, null, 'taken once the others left the view');
  eq(mb.presence.seq.get('alice'), 2, 'alice\'s seq still kept');
  eq(call.presence.get('cy')?.hand, true, 'cy shown');
});

// Presence is kept per session: what the session being left accepts does
// not show on the tiles of the current one, and activating a session
// shows only its own.
test('presence: only the current session shows', async () => {
  const me = await Identity.fromSeed(new Uint8Array(32).fill(2));
  const { s, call, pres } = receiver(me);
  const next = { id: 'bob2', sendRelay() {} };
  call.sessions.add(next);
  const p = (seq, hand) => ({ seq, mic: true, camera: true, hand, screen: false });
  pres.receive(s, 'alice', p(1, false), me.publicKey);
  pres.receive(next, 'alice', p(2, true), me.publicKey);
  pres.receive(next, 'dan', p(1, true), me.publicKey);
  eq(call.presence.get('alice').hand, false, 'the other session does not show');
  eq(call.presence.has('dan'), false, 'nor adds anyone');
  call.session = next;
  pres.activate(next);
  eq(call.presence.get('alice').hand, true, 'the new session\'s own');
  eq(call.presence.get('dan')?.hand, true, 'dan from the new session');
  pres.receive(s, 'alice', p(3, false), me.publicKey);
  pres.receive(s, 'eve', p(1, true), me.publicKey);
  eq(call.presence.get('alice').hand, true, 'the old session changes nothing');
  eq(call.presence.has('eve'), false, 'nor adds anyone');
  pres.receive(next, 'dan', null, null);
  eq(call.presence.has('dan'), false, 'taken back when its key is no longer the sending epoch\'s');
});

// Announcements replayed without end get one answer per participant per
// interval, and a burst of sends is signed once per session, with the
// latest state.
test('presence: answers limited, sends coalesced', async () => {
  const me = await Identity.fromSeed(new Uint8Array(32).fill(1));
  let t = 0;
  const sent = [];
  const s = { id: 'a1', sendRelay: (to, payload) => sent.push({ to, p: keymsg.decode(payload) }) };
  const call = { meeting: 'm1', identity: me, sessions: new Set([s]), session: s, presence: new Map(), emit() {} };
  const pres = new Presence(call, { mic: true }, { answerMs: 5000, now: () => t });
  for (let i = 0; i < 200; i++) pres.answer(s, 'bob');
  await pres.answer(s, 'cy');
  eq(sent.filter((x) => x.to === 'bob').length, 1, 'one answer to bob');
  eq(sent.filter((x) => x.to === 'cy').length, 1, 'one answer to cy');
  t += 5000;
  await pres.answer(s, 'bob');
  eq(sent.filter((x) => x.to === 'bob').length, 2, 'again after the interval');
  sent.length = 0;
  let last;
  for (let i = 0; i < 100; i++) last = pres.set({ hand: i % 2 === 0 });
  await last;
  eq(sent.length <= 2, true, `${sent.length} messages for 100 changes`);
  eq(sent.at(-1).p.hand, pres.state.hand, 'the last carries the latest state');
  const seqs = sent.map((x) => x.p.seq);
  eq(seqs.every((q, i) => i === 0 || q > seqs[i - 1]), true, 'seq rises');
});

// Presence sends a new seq for every change, once per change, to every
// live session, numbering per participant id.
test('presence: own state numbered per participant id', async () => {
  const alice = await Identity.fromSeed(new Uint8Array(32).fill(1));
  const sent = [];
  const session = (id) => ({ id, sendRelay: (to, payload) => sent.push({ id, to, p: keymsg.decode(payload) }) });
  const s1 = session('a1');
  const call = { meeting: 'm1', identity: alice, sessions: new Set([s1]), presence: new Map(), emit() {} };
  const pres = new Presence(call, { mic: true, camera: true });
  await pres.set({ mic: true });
  eq(sent.length, 0, 'no change, nothing sent');
  await pres.set({ mic: false });
  await pres.set({ hand: true });
  eq(sent.map((x) => `${x.id}:${x.to}:${x.p.seq}:${x.p.mic}:${x.p.hand}`).join(' '), 'a1::1:false:false a1::2:false:true', 'two changes');
  const s2 = session('a2');
  call.sessions.add(s2);
  await pres.sendTo(s2, ['b', 'c']);
  eq(sent.slice(2).map((x) => `${x.id}:${x.to}:${x.p.seq}`).join(' '), 'a2:b:1 a2:c:1', 'a new participant id starts over');
  for (const x of sent) await keymsg.verifyPresence(x.p, alice.publicKey);
});
