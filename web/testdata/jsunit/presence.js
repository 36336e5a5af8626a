// The presence key message (web/static/js/e2ee/keymsg.js) against Go's
// golden vector (e2ee/keymsg/testdata/presence.json, served at
// /vectors/presence.json), and how a member and presence.js take one:
// verified with the announced key, sender and meeting matching, seq
// strictly increasing.

import { b64, fromHex, hex } from '/js/e2ee/bytes.js';
import * as keymsg from '/js/e2ee/keymsg.js';
import { Identity } from '/js/e2ee/identity.js';
import { Member } from '/js/e2ee/group.js';
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

// A member hands on only presence that verifies with the sender's
// announced key and names the sender; presence.js takes only a seq above
// the last it accepted.
test('presence: verified, sender-bound and replay-proof', async () => {
  const alice = await Identity.fromSeed(new Uint8Array(32).fill(1));
  const bob = await Identity.fromSeed(new Uint8Array(32).fill(2));
  const mallory = await Identity.fromSeed(new Uint8Array(32).fill(3));
  const ma = await Member.create({ meeting: 'm1', participant: 'alice', identity: alice });
  const mb = await Member.create({ meeting: 'm1', participant: 'bob', identity: bob, schedule: () => {} });
  await mb.onRosterChange(['alice', 'bob']);
  const events = [];
  const call = { meeting: 'm1', identity: bob, sessions: new Set(), presence: new Map(), emit: (type, d) => events.push([type, d]) };
  const pres = new Presence(call);
  mb.onPresence = (from, p, id) => pres.receive(from, p, id);
  const wire = async (seq, state, who = alice, pid = 'alice') => keymsg.encode(await keymsg.newPresence('m1', pid, seq, state, who));
  // Before alice announced herself to bob: not taken.
  let r = await mb.handleMessage('alice', await wire(1, { mic: false }));
  eq(r.error?.code, 'unknown_sender', 'before the announcement');
  await mb.handleMessage('alice', ma.announcement);
  r = await mb.handleMessage('alice', await wire(2, { mic: false, camera: true }));
  eq(r.error, null, 'a good presence');
  eq(call.presence.get('alice')?.mic, false, 'alice muted');
  eq(call.presence.get('alice')?.camera, true, 'alice camera on');
  eq(events.length, 1, 'one presence event');
  r = await mb.handleMessage('alice', await wire(3, { mic: true }, mallory));
  eq(r.error?.code, 'bad_signature', 'signed by another key');
  r = await mb.handleMessage('carol', await wire(3, { mic: true }));
  eq(r.error?.code, 'sender_mismatch', 'relayed as from another participant');
  r = await mb.handleMessage('alice', JSON.stringify({ ...(await wire(3, { mic: true })), meeting: 'm2' }));
  eq(r.error?.code, 'wrong_meeting', 'for another meeting');
  const older = await wire(1, { mic: true });
  await mb.handleMessage('alice', older);
  eq(pres.drops.replay, 1, 'an older seq is a replay');
  eq(call.presence.get('alice').mic, false, 'still muted after the forgeries');
  r = await mb.handleMessage('alice', await wire(5, { mic: true, hand: true }));
  eq(call.presence.get('alice').mic, true, 'unmuted by a newer seq');
  eq(call.presence.get('alice').hand, true, 'hand raised');
  eq(call.presence.get('alice').seq, 5, 'seq kept');
  // Leaving forgets what is shown, not the seq: an old one replayed to a
  // returning id is still refused.
  pres.prune(new Set());
  eq(call.presence.has('alice'), false, 'forgotten on leaving');
  await mb.handleMessage('alice', await wire(4, { mic: false }));
  eq(call.presence.has('alice'), false, 'an older seq after leaving');
  eq(pres.drops.replay, 2, 'counted');
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
