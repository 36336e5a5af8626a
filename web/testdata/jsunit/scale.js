// The browser's key schedule at 1,000 members (issue: E2EE at 1,000): a
// member installs an epoch of 1,000 entries, and a later epoch naming the
// same entries costs no signature check per entry (the verified-entry
// cache). The figures go to TestJSUnit's log.

import { Member } from '/js/e2ee/group.js';
import * as hpke from '/js/e2ee/hpke.js';
import { Identity } from '/js/e2ee/identity.js';
import * as keymsg from '/js/e2ee/keymsg.js';
import { eq, note, test } from './testlib.js';

const N = 1000;

test('scale: 1,000 members — an epoch installs, and the next verifies only new entries', async () => {
  let t = 0;
  const now = () => t;
  const meeting = 'm-1000';
  const made = [];
  const leader = await Member.create({ meeting, participant: 'p0000', name: 'Leader', identity: await Identity.generate(), now });
  const member = await Member.create({ meeting, participant: 'p0001', name: 'Member', identity: await Identity.generate(), now });
  const view = ['p0000', 'p0001'];
  const anns = [member.announcement];
  let start = performance.now();
  for (let i = 2; i < N; i++) {
    const pid = `p${String(i).padStart(4, '0')}`;
    const kp = await hpke.generateKeyPair();
    anns.push(keymsg.encode(await keymsg.newAnnouncement(meeting, pid, `Person ${i}`, await Identity.generate(), kp.publicKey)));
    view.push(pid);
  }
  note(`${N - 2} announcements made in ${Math.round(performance.now() - start)} ms`);
  start = performance.now();
  for (const a of anns) {
    const r = await leader.handleMessage(a.participant, a);
    eq(r.error, null, `leader hears ${a.participant}`);
  }
  note(`leader verified ${anns.length} announcements in ${Math.round(performance.now() - start)} ms`);
  await member.handleMessage('p0000', leader.announcement);
  start = performance.now();
  for (const o of await leader.onRosterChange(view)) if (o.payload.type === 'epoch') made.push(o.payload);
  note(`leader made epoch ${made[0]?.epoch} of ${made[0]?.roster.length} entries in ${Math.round(performance.now() - start)} ms (${JSON.stringify(made[0]).length} bytes)`);
  eq(made.length, 1, 'one epoch');
  eq(made[0].roster.length, N, 'roster of 1,000');
  await member.onRosterChange(view);
  let checks = member.cache.checks;
  start = performance.now();
  let r = await member.handleMessage('p0000', made[0]);
  const first = performance.now() - start;
  eq(member.cache.checks - checks, N - 1, 'first epoch: every entry but the leader\'s (its announcement was verified) checked');
  eq(r.error, null, 'member installs the epoch');
  eq(member.status().newest, made[0].epoch, 'installed');
  note(`member installed it in ${Math.round(first)} ms`);
  // The periodic re-key: the same entries, new secret and copies.
  t += leader.rekeyMs;
  const again = (await leader.tick()).filter((o) => o.payload.type === 'epoch').map((o) => o.payload);
  eq(again.length, 1, 'periodic re-key');
  checks = member.cache.checks;
  start = performance.now();
  r = await member.handleMessage('p0000', again[0]);
  const second = performance.now() - start;
  eq(r.error, null, 'member installs the second epoch');
  eq(member.cache.checks - checks, 0, 'second epoch: no entry verified again');
  note(`member installed the next one (cached entries) in ${Math.round(second)} ms`);
  // A tampered entry misses the cache and is caught.
  const bad = structuredClone(again[0]);
  bad.roster[500].name = 'Someone else';
  r = await member.handleMessage('p0000', bad);
  eq(r.error instanceof keymsg.KeyMsgError, true, 'renamed entry refused');
});

test('scale: the largest roster fits a key message; decoders refuse more than 1 MiB', async () => {
  // 1,024 entries with 256-byte ids and names: what the leader of the
  // largest meeting with the longest names sends.
  const id = await Identity.generate();
  const kp = await hpke.generateKeyPair();
  const roster = [];
  for (let i = 0; i < keymsg.MAX_ROSTER; i++) {
    const pid = String(i).padStart(4, '0') + 'p'.repeat(252);
    roster.push({ participant: pid, name: 'N'.repeat(256), identity: id.publicKey, hpke: kp.publicKey, sig: new Uint8Array(64) });
  }
  const sealed = roster.map(() => new Uint8Array(keymsg.SEALED_SIZE));
  const msg = { type: 'epoch', meeting: 'm', epoch: 1, roster, sealed, sig: new Uint8Array(64) };
  const text = JSON.stringify(keymsg.checkSize(keymsg.encode(msg)));
  note(`largest epoch message: ${text.length} bytes`);
  eq(keymsg.decode(text).roster.length, keymsg.MAX_ROSTER, 'decodes');
  const big = JSON.stringify({ ...JSON.parse(text), pad: 'x'.repeat(keymsg.MAX_MESSAGE_SIZE) });
  let refused = false;
  try {
    keymsg.decode(big);
  } catch (err) {
    refused = err instanceof keymsg.KeyMsgError && /over/.test(err.message);
  }
  eq(refused, true, 'over 1 MiB refused for its size');
});
