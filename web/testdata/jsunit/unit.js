// Unit tests of the browser's end-to-end encryption, run inside Chromium by
// TestJSUnit (web/jsunit_test.go). Vectors: RFC 9605 Appendix C (served at
// /vectors/sframe.json), RFC 9180 Appendix A.1.1 (written out below),
// e2ee/keymsg/testdata/example.json (/vectors/keymsg.json) and the worked
// examples of docs/E2EE.md §7 and §9.

import { b64, fromB64, fromHex, hex } from '/js/e2ee/bytes.js';
import * as hpke from '/js/e2ee/hpke.js';
import * as sframe from '/js/e2ee/sframe.js';
import * as keymsg from '/js/e2ee/keymsg.js';
import { Identity } from '/js/e2ee/identity.js';
import { securityCode } from '/js/e2ee/securitycode.js';
import { Member, kid, senderBaseKey } from '/js/e2ee/group.js';
import { MoveTracker } from '/js/movetracker.js';
import { rosterOf, tokenSince } from '/js/call.js';
import { rulesWithin } from '/js/hostcontrol.js';
import { eq, prng, runAll, test, throwsAsync } from './testlib.js';
import './groupsim.js';
import './scale.js';
import './worker.js';
import './presence.js';
import './layout.js';

// JSON numbers above 2^53 lose precision in JSON.parse: read KIDs and CTRs
// as strings.
async function loadVectors() {
  const text = await (await fetch('/vectors/sframe.json')).text();
  return JSON.parse(text.replace(/"(kid|ctr)":\s*(\d+)/g, '"$1":"$2"'));
}

test('sframe header vectors encode and parse', async () => {
  const v = await loadVectors();
  eq(v.header.length > 100, true, 'header vector count');
  for (const h of v.header) {
    const kidv = BigInt(h.kid), ctr = BigInt(h.ctr);
    eq(hex(sframe.encodeHeader(kidv, ctr)), h.encoded, `encode ${h.kid}/${h.ctr}`);
    const p = sframe.parseHeader(fromHex(h.encoded + 'ff'));
    eq(p.kid, kidv, 'kid');
    eq(p.ctr, ctr, 'ctr');
    eq(p.length, h.encoded.length / 2, 'length');
  }
});

test('sframe header: non-minimal encodings are refused', async () => {
  // KID 5 carried in one extra byte instead of the config byte.
  await throwsAsync(() => sframe.parseHeader(fromHex('800500')), 'kid 5 in a byte');
  // CTR 0x0100 with a leading zero byte.
  await throwsAsync(() => sframe.parseHeader(fromHex('0a000100')), 'leading zero');
  await throwsAsync(() => sframe.parseHeader(fromHex('88')), 'truncated');
});

test('sframe AES_128_GCM_SHA256_128 vectors (RFC 9605 Appendix C)', async () => {
  const v = await loadVectors();
  const gcm = v.sframe.filter((x) => x.cipher_suite === 4);
  eq(gcm.length, 1, 'vectors of suite 4');
  for (const x of gcm) {
    const ks = await sframe.deriveKeySalt(fromHex(x.base_key), BigInt(x.kid));
    eq(hex(ks.rawKey), x.sframe_key, 'sframe_key');
    eq(hex(ks.salt), x.sframe_salt, 'sframe_salt');
    eq(hex(sframe.nonce(ks.salt, BigInt(x.ctr))), x.nonce, 'nonce');
    const s = await sframe.Sender.create(BigInt(x.kid), fromHex(x.base_key));
    s.ctr = BigInt(x.ctr);
    const ct = await s.encrypt(fromHex(x.metadata), fromHex(x.pt));
    eq(hex(ct), x.ct, 'ciphertext');
    const r = new sframe.Receiver();
    await r.addKey(BigInt(x.kid), fromHex(x.base_key));
    const { plaintext } = await r.decrypt(fromHex(x.metadata), ct);
    eq(hex(plaintext), x.pt, 'plaintext');
    await throwsAsync(() => r.decrypt(fromHex(x.metadata), ct), 'replay');
    const bad = ct.slice();
    bad[bad.length - 1] ^= 1;
    const r2 = new sframe.Receiver();
    await r2.addKey(BigInt(x.kid), fromHex(x.base_key));
    await throwsAsync(() => r2.decrypt(fromHex(x.metadata), bad), 'tampered tag');
    await throwsAsync(() => r2.decrypt(fromHex('00'), ct), 'other metadata');
  }
});

// RFC 9180 Appendix A.1.1: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
// AES-128-GCM, base mode; values copied from the RFC's text (the same
// ikmE/skRm/pkRm/enc appear in Go's crypto/hpke testdata/rfc9180.json).
const A11 = {
  info: '4f6465206f6e2061204772656369616e2055726e',
  skEm: '52c4a758a802cd8b936eceea314432798d5baf2d7e9235dc084ab1b9cfa2f736',
  pkEm: '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431',
  skRm: '4612c550263fc8ad58375df3f557aac531d26850903e55a9f23f21d8534e8ac8',
  pkRm: '3948cfe0ad1ddb695d780e59077195da6c56506b027329794ab02bca80815c4d',
  enc: '37fda3567bdbd628e88668c3c8d7e97d1d1253b6d4ea6d44c150f741f1bf4431',
  sharedSecret: 'fe0e18c9f024ce43799ae393c7e8fe8fce9d218875e8227b0187c04e7d2ea1fc',
  keyScheduleContext: '00725611c9d98c07c03f60095cd32d400d8347d45ed67097bbad50fc56da742d07cb6cffde367bb0565ba28bb02c90744a20f5ef37f30523526106f637abb05449',
  secret: '12fff91991e93b48de37e7daddb52981084bd8aa64289c3788471d9a9712f397',
  key: '4531685d41d65f03dc48f6b8302c05b0',
  baseNonce: '56d890e5accaaf011cff4b7d',
  pt: '4265617574792069732074727574682c20747275746820626561757479',
  aad0: '436f756e742d30',
  ct0: 'f938558b5d72f1a23810b4be2ab4f84331acc02fc97babc53a52ae8218a355a96d8770ac83d07bea87e13c512a',
};

test('hpke RFC 9180 A.1.1 key schedule, seal and open', async () => {
  const eph = { privateKey: await hpke.importPrivateKey(fromHex(A11.skEm)), publicKey: fromHex(A11.pkEm) };
  const { enc, sharedSecret } = await hpke.encap(fromHex(A11.pkRm), eph);
  eq(hex(enc), A11.enc, 'enc');
  eq(hex(sharedSecret), A11.sharedSecret, 'shared_secret');
  const ks = await hpke.keySchedule(sharedSecret, fromHex(A11.info));
  eq(hex(ks.context), A11.keyScheduleContext, 'key_schedule_context');
  eq(hex(ks.secret), A11.secret, 'secret');
  eq(hex(ks.key), A11.key, 'key');
  eq(hex(ks.baseNonce), A11.baseNonce, 'base_nonce');
  const sealed = await hpke.seal(fromHex(A11.pkRm), fromHex(A11.info), fromHex(A11.pt), fromHex(A11.aad0), eph);
  eq(hex(sealed), A11.enc + A11.ct0, 'sealed');
  const skR = await hpke.importPrivateKey(fromHex(A11.skRm));
  const pt = await hpke.open(skR, fromHex(A11.pkRm), fromHex(A11.info), sealed, fromHex(A11.aad0));
  eq(hex(pt), A11.pt, 'opened');
  await throwsAsync(() => hpke.open(skR, fromHex(A11.pkRm), fromHex(A11.info), sealed), 'open with other aad');
});

test('hpke refuses a low-order public key', async () => {
  const kp = await hpke.generateKeyPair();
  await throwsAsync(() => hpke.dh(kp.privateKey, new Uint8Array(32)), 'zero point');
  await throwsAsync(() => keymsg.checkHPKEKey(fromHex('0100000000000000000000000000000000000000000000000000000000000000')), 'point 1');
});

test('key messages: example.json decodes, verifies, opens and re-encodes', async () => {
  const ex = await (await fetch('/vectors/keymsg.json')).json();
  const ann = keymsg.decode(ex.announcement);
  await keymsg.verifyAnnouncement(ann);
  eq(JSON.stringify(keymsg.encode(ann)), JSON.stringify(ex.announcement), 'announcement re-encoded');
  const ep = keymsg.decode(JSON.stringify(ex.epoch));
  eq(ep.epoch, ex.epoch.epoch, 'epoch');
  await keymsg.verifyEpoch(ep);
  eq(JSON.stringify(keymsg.encode(ep)), JSON.stringify(ex.epoch), 'epoch re-encoded');
  eq(hex(await keymsg.verifyEpoch(ep)), ex.epoch_digest, 'digest from verifyEpoch');
  eq(hex(await keymsg.epochDigest(ep)), ex.epoch_digest, 'digest');
  for (let i = 0; i < ex.members.length; i++) {
    const m = ex.members[i];
    const id = await Identity.fromSeed(fromHex(m.identity_seed));
    eq(b64(id.publicKey), ex.epoch.roster[i].identity, `identity of ${m.participant}`);
    eq(ep.roster[i].name, m.name, `name of ${m.participant}`);
    const sk = await hpke.importPrivateKey(fromHex(m.hpke_private));
    const secret = await keymsg.openEpoch(ep, i, sk);
    eq(hex(secret), ex.epoch_secret, `secret opened by ${m.participant}`);
  }
  // Bob's ack and Alice's commit name the digest and verify with the
  // roster's keys (and only with them).
  const ack = keymsg.decode(ex.ack);
  eq(JSON.stringify(keymsg.encode(ack)), JSON.stringify(ex.ack), 'ack re-encoded');
  eq(hex(ack.digest), ex.epoch_digest, 'ack digest');
  await keymsg.verifyAck(ack, ep.roster[1].identity);
  await throwsAsync(() => keymsg.verifyAck(ack, ep.roster[2].identity), 'ack with carol\'s key');
  await throwsAsync(() => keymsg.verifyAck({ ...ack, participant: 'carol' }, ep.roster[1].identity), 'ack for another participant');
  const commit = keymsg.decode(JSON.stringify(ex.commit));
  eq(JSON.stringify(keymsg.encode(commit)), JSON.stringify(ex.commit), 'commit re-encoded');
  eq(hex(commit.digest), ex.epoch_digest, 'commit digest');
  await keymsg.verifyCommit(commit, ep.roster[0].identity);
  await throwsAsync(() => keymsg.verifyCommit(commit, ep.roster[1].identity), 'commit with bob\'s key');
  await throwsAsync(() => keymsg.verifyCommit({ ...commit, epoch: 8 }, ep.roster[0].identity), 'commit of another epoch');
  // The labels differ: an ack's signature is no commit's.
  await throwsAsync(() => keymsg.verifyCommit({ ...commit, sig: ack.sig }, ep.roster[1].identity), 'ack signature as a commit');
  // A JS-made ack and commit verify the same way, and the name is signed.
  const bob = await Identity.fromSeed(fromHex(ex.members[1].identity_seed));
  const alice = await Identity.fromSeed(fromHex(ex.members[0].identity_seed));
  const myAck = await keymsg.newAck('m1', 7, 'bob', ack.digest, bob);
  eq(b64(myAck.sig), ex.ack.sig, 'Ed25519 is deterministic: the same ack signature');
  const myCommit = await keymsg.newCommit('m1', 7, commit.digest, alice);
  eq(b64(myCommit.sig), ex.commit.sig, 'the same commit signature');
  const renamed = { ...ex.announcement, name: 'Alicia' };
  await throwsAsync(() => keymsg.verifyAnnouncement(keymsg.decode(renamed)), 'renamed announcement');
  const { name, ...nameless } = ex.announcement;
  await throwsAsync(() => keymsg.decode(nameless), 'announcement without a name');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, name: null }), 'null name');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, name: 'x'.repeat(257) }), 'name over 256 bytes');
  eq(keymsg.decode({ ...ex.announcement, name: '' }).entry.name, '', 'empty name');
  // A tampered sealed copy breaks the leader's signature.
  const bad = structuredClone(ex.epoch);
  const s = fromB64(bad.sealed[1]);
  s[40] ^= 1;
  bad.sealed[1] = b64(s);
  await throwsAsync(() => keymsg.verifyEpoch(keymsg.decode(bad)), 'tampered sealed copy');
  // Strictness, as in Go: unknown fields, bad lengths, non-canonical base64.
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, extra: 1 }), 'unknown field');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, v: 1 }), 'version 1');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, v: 3 }), 'version 3');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, hpke: b64(new Uint8Array(31)) }), 'short key');
  await throwsAsync(() => keymsg.decode({ ...ex.announcement, sig: ex.announcement.sig.replace('==', 'A=') }), 'non-canonical base64');
  const forged = { ...ex.announcement, participant: 'mallory' };
  await throwsAsync(() => keymsg.verifyAnnouncement(keymsg.decode(forged)), 'forged participant');
});

test('security code worked example (docs/E2EE.md §7)', async () => {
  const rows = [
    ['alice', 'Alice', '01', '8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c', 'fb41b1fcf75c1227fa08876056a5ed07ac44fe0c116ec2de80b8e523959d7824'],
    ['bob', 'Bob', '02', '8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394', '219e4d800da968d2a5fcb009c784f4746c7138edb9ee4844b739e830b05cf424'],
    ['carol', 'Carol', '03', 'ed4928c628d1c2c6eae90338905995612959273a5c63f93636c14614ac8737d1', '6ca3bf39d976ab36a808531bd7ec2e4b4f8aae3a90134534d50f411d377a2c05'],
  ];
  const roster = [];
  for (const [participant, name, seedByte, identity, hpkeKey] of rows) {
    const id = await Identity.fromSeed(fromHex(seedByte.repeat(32)));
    eq(hex(id.publicKey), identity, `identity of ${participant}`);
    roster.push({ participant, name, identity: id.publicKey, hpke: fromHex(hpkeKey) });
  }
  const policy = '0'.repeat(64);
  const want = '42688 83323 55770 99121 67783 82360 49570 38199';
  eq(await securityCode('demo', roster, policy), want, 'code');
  eq(await securityCode('demo', roster.slice().reverse(), policy), want, 'code does not depend on roster order');
  eq(await securityCode('demo2', roster, policy) === want, false, 'another meeting has another code');
  eq(await securityCode('demo', roster, '1'.repeat(64)) === want, false, 'another policy hash has another code');
  const renamed = roster.map((e) => (e.participant === 'bob' ? { ...e, name: 'Rob' } : e));
  eq(await securityCode('demo', renamed, policy) === want, false, 'another name has another code');
});

test('epoch secret to wire bytes worked example (docs/E2EE.md §9)', async () => {
  const secret = new Uint8Array(32).map((_, i) => i);
  const base = await senderBaseKey(secret, 1);
  eq(hex(base), 'd7ccc9fdcd795a9410a673f5bac932dcc171488184580343d0cf7143dc97ca59', 'base_key_1');
  const k = kid(3, 1);
  eq(k, 0x30001n, 'KID');
  const ks = await sframe.deriveKeySalt(base, k);
  eq(hex(ks.rawKey), 'd5ca9560dda3b960464d1e682e64412f', 'sframe_key');
  eq(hex(ks.salt), 'ed7b5801bef39e6b9a0615b9', 'sframe_salt');
  const s = await sframe.Sender.create(k, base);
  const out = await sframe.protect(s, sframe.OPUS, fromHex('78010203'));
  eq(hex(out), '78' + 'a0030001' + 'e86fd8' + '9e140f40d323b42a6b7be5e892f1a8ee', 'protected');
  const r = new sframe.Receiver();
  await r.addKey(k, base);
  const back = await sframe.unprotect(r, sframe.OPUS, out);
  eq(hex(back.frame), '78010203', 'unprotected');
});

test('media frames: VP8 clear prefix lengths', async () => {
  eq(sframe.prefixLen(sframe.VP8, fromHex('10')), 10, 'key frame');
  eq(sframe.prefixLen(sframe.VP8, fromHex('11')), 3, 'inter frame');
  eq(sframe.prefixLen(sframe.OPUS, fromHex('78')), 1, 'opus');
  const s = await sframe.Sender.create(1n, new Uint8Array(16));
  await throwsAsync(() => sframe.protect(s, sframe.VP8, fromHex('1000')), 'short key frame');
});

// relayNet delivers key messages between members in memory, in order.
function relayNet(members, onSend = () => {}) {
  const queue = [];
  const send = (from, outs) => {
    for (const o of outs) {
      onSend(from, o);
      for (const m of members) {
        if (m.participant !== from && (o.to === '' || o.to === m.participant)) queue.push([m, from, JSON.parse(JSON.stringify(o.payload))]);
      }
    }
  };
  const drain = async () => {
    for (let n = 0; queue.length && n < 1000; n++) {
      const [m, from, payload] = queue.shift();
      const r = await m.handleMessage(from, payload);
      send(m.participant, r.out);
    }
  };
  return { send, drain };
}

async function makeMember(meeting, participant, now) {
  const sink = { keys: new Map(), sender: null };
  const media = {
    setSender(k, base) { sink.sender = { k, base }; },
    addKey(k, base) { sink.keys.set(k, base); },
    removeKey(k) { sink.keys.delete(k); },
  };
  const m = await Member.create({ meeting, participant, name: participant.toUpperCase(), identity: await Identity.generate(), media, now });
  m.sink = sink;
  return m;
}

test('group: three members converge on one epoch and one code; a leaver is cut off', async () => {
  let t = 0;
  const now = () => t;
  const names = ['ann', 'bob', 'cy'];
  const ms = [];
  for (const n of names) ms.push(await makeMember('m-1', n, now));
  const net = relayNet(ms);
  for (const m of ms) net.send(m.participant, [m.announce()]);
  for (const m of ms) net.send(m.participant, await m.onRosterChange(names));
  await net.drain();
  t += 1000;
  for (const m of ms) net.send(m.participant, await m.tick());
  await net.drain();
  const code = ms[0].securityCode;
  eq(/^\d{5}( \d{5}){7}$/.test(code), true, 'code format');
  for (const m of ms) {
    eq(m.epoch, ms[0].epoch, `${m.participant} epoch`);
    eq(m.securityCode, code, `${m.participant} code`);
    eq(m.roster.length, 3, `${m.participant} roster`);
  }
  // Every member holds the other two senders' keys of this epoch, which are
  // the keys the others send with.
  for (const m of ms) {
    for (const o of ms) {
      if (o === m) continue;
      eq(hex(m.sink.keys.get(o.sink.sender.k)), hex(o.sink.sender.base), `${m.participant} has ${o.participant}'s key`);
    }
  }
  // cy leaves: the leader re-keys without it; cy gets nothing.
  const before = ms[0].epoch;
  const rest = ms.slice(0, 2);
  const net2 = relayNet(rest);
  for (const m of rest) net2.send(m.participant, await m.onRosterChange(['ann', 'bob']));
  await net2.drain();
  eq(ms[0].epoch > before, true, 'new epoch after a leave');
  eq(ms[1].epoch, ms[0].epoch, 'bob follows');
  eq(ms[2].epoch, before, 'cy stays behind');
  eq(ms[0].securityCode === code, false, 'code changes on leave');
  eq(ms[1].securityCode, ms[0].securityCode, 'codes agree');
  // The old epoch's keys go after the grace window.
  t += 11000;
  await ms[1].tick();
  eq(ms[1].sink.keys.size, 1, 'bob keeps only ann\'s current key');
});

test('group: node messages follow every announcement, verify with the sender\'s identity, wait for it, and go with a leaver', async () => {
  let t = 0;
  const now = () => t;
  const names = ['ann', 'bob', 'cy'];
  const ms = [];
  for (const n of names) ms.push(await makeMember('m-n', n, now));
  for (const m of ms) await m.setNodeCert(`cert-of-${m.participant}`);
  const sent = [];
  const net = relayNet(ms, (from, o) => sent.push({ from, to: o.to, type: o.payload.type }));
  // A node message sent before its sender's announcement waits for it.
  net.send('cy', [{ to: 'ann', payload: ms[2].nodeMsg }]);
  await net.drain();
  eq(ms[0].nodeOf('cy'), '', 'not known before cy\'s identity');
  eq(ms[0].pendingNodes.size, 1, 'one waiting');
  for (const m of ms) net.send(m.participant, m.withNode([m.announce()]));
  for (const m of ms) net.send(m.participant, await m.onRosterChange(names));
  await net.drain();
  t += 1000;
  for (const m of ms) net.send(m.participant, await m.tick());
  await net.drain();
  for (const m of ms) {
    for (const o of ms) eq(m.nodeOf(o.participant), `cert-of-${o.participant}`, `${m.participant} knows ${o.participant}'s node`);
    const ps = m.people();
    eq(ps.length, 3, 'people');
    for (const p of ps) eq(p.node, `cert-of-${p.participant}`, `${m.participant}'s people() names ${p.participant}'s node`);
  }
  eq(ms[0].pendingNodes.size, 0, 'the waiting one verified');
  // Every announcement is followed, at once, by a node message to the same recipients.
  for (let i = 0; i < sent.length; i++) {
    if (sent[i].type !== 'announce') continue;
    eq(sent[i + 1]?.type, 'node', `announcement ${i} followed by a node message`);
    eq(sent[i + 1].to, sent[i].to, `node message ${i} to the same recipients`);
  }
  // Wire form: strict, and as Go encodes it.
  const wire = ms[1].nodeMsg;
  eq(JSON.stringify(Object.keys(wire)), JSON.stringify(['v', 'type', 'meeting', 'participant', 'cert', 'sig']), 'fields in order');
  const dec = keymsg.decode(JSON.stringify(wire));
  eq(JSON.stringify(keymsg.encode(dec)), JSON.stringify(wire), 're-encodes');
  await keymsg.verifyNode(dec, ms[1].self.identity);
  await throwsAsync(() => keymsg.verifyNode(dec, ms[0].self.identity), 'another identity');
  for (const bad of [{ ...wire, extra: 1 }, { ...wire, cert: '' }, { ...wire, sig: 'AAAA' }, { ...wire, v: 1 }]) {
    await throwsAsync(async () => keymsg.decode(JSON.stringify(bad)), `malformed ${JSON.stringify(bad).slice(0, 60)}`);
  }
  // A forged one (bob's message, cert swapped) and one sent by someone else are refused.
  const forged = { ...wire, cert: 'cert-of-elsewhere' };
  const r1 = await ms[0].handleMessage('bob', forged);
  eq(!!r1.error, true, 'forged node message refused');
  eq(ms[0].nodeOf('bob'), 'cert-of-bob', 'forged one changed nothing');
  const r2 = await ms[0].handleMessage('cy', wire);
  eq(r2.error?.code, 'sender_mismatch', 'bob\'s node message from cy');
  // cy leaves: its node goes too.
  await ms[0].onRosterChange(['ann', 'bob']);
  eq(ms[0].nodeOf('cy'), '', 'leaver\'s node dropped');
});

test('host: the server\'s rules are signed only if they allow nothing the host ruled out', async () => {
  // Groups and regions come from geodata.js (package geo's catalogue).
  const ok = (rules, policy) => { try { rulesWithin(rules, policy); return 'ok'; } catch (e) { return e.message; } };
  const r = (a, b = []) => ({ allowed_countries: a, blocked_regions: b });
  eq(ok(r(['DE', 'US']), { blocked_countries: ['CN'] }), 'ok', 'CN blocked and not allowed');
  eq(ok(r(['CN', 'DE']), { blocked_countries: ['CN'] }).includes('CN'), true, 'a blocked country allowed');
  eq(ok(r(['DE', 'FR']), { blocked_countries: [], allowed_countries: ['EU'] }), 'ok', 'the EU allow-list');
  eq(ok(r(['DE', 'FR', 'US']), { allowed_countries: ['EU'] }).includes('US'), true, 'outside the allow-list');
  eq(ok(r(['DE']), { blocked_countries: ['EU'] }).includes('DE'), true, 'a group member');
  eq(ok(r(['FR'], ['eu-west-3']), { blocked_regions: ['eu-west-3'] }), 'ok', 'the region blocked');
  eq(ok(r(['DE']), { blocked_regions: ['eu-west-3'] }), 'ok', 'the region\'s country not allowed at all');
  eq(ok(r(['FR']), { blocked_regions: ['EU-WEST-3'] }).includes('eu-west-3'), true, 'a blocked region allowed');
});

test('group: a replayed epoch and a rogue epoch are refused', async () => {
  let t = 0;
  const now = () => t;
  const a = await makeMember('m-2', 'a', now), b = await makeMember('m-2', 'b', now);
  const epochs = [];
  const net = relayNet([a, b], (from, o) => {
    if (from === 'a' && o.payload.type === 'epoch') epochs.push(o.payload);
  });
  net.send('a', [a.announce()]);
  net.send('b', [b.announce()]);
  net.send('a', await a.onRosterChange(['a', 'b']));
  net.send('b', await b.onRosterChange(['a', 'b']));
  await net.drain();
  t += 1000;
  net.send('a', await a.tick());
  await net.drain();
  eq(b.epoch > 0, true, 'b keyed');
  eq(a.epoch, b.epoch, 'converged');
  eq(b.securityCode, a.securityCode, 'same code');
  const last = epochs[epochs.length - 1];
  eq(last.epoch, a.epoch, 'captured the current epoch');
  // The current epoch again changes nothing; an older one is refused.
  const r0 = await b.handleMessage('a', last);
  eq(r0.error, null, 'the same epoch again');
  eq(b.epoch, a.epoch, 'b keeps its epoch');
  eq(epochs.length >= 2, true, 'a made an epoch before this one');
  const r = await b.handleMessage('a', epochs[0]);
  eq(r.error?.code, 'stale_epoch', 'replay refused');
  // b signs an epoch of its own although a leads; a refuses it.
  const rogue = await keymsg.newEpoch('m-2', b.epoch + 5, [b.self, a.self], new Uint8Array(32), b.identity);
  const r2 = await a.handleMessage('b', keymsg.encode(rogue));
  eq(r2.error?.code, 'unexpected_leader', 'a refuses an epoch b signed');
  eq(a.epoch, b.epoch, 'a keeps its epoch');
  const r3 = await a.handleMessage('b', { ...keymsg.encode(rogue), epoch: rogue.epoch + 1 });
  eq(r3.error !== null, true, 'altered epoch number breaks the signature');
});

test('move tracker: a move keeps the old session until the new one carries media', async () => {
  const log = [];
  let carriesMedia;
  const ready = new Promise((resolve) => {
    carriesMedia = () => { log.push('ready p2'); resolve(); };
  });
  const t = new MoveTracker({
    join: async (replaces) => { log.push(`join replaces=${replaces}`); return { id: 'p2' }; },
    connect: async (j) => { log.push(`connect ${j.id}`); return { id: j.id, ready, close: (r) => log.push(`close ${j.id} ${r}`) }; },
  });
  t.adopt({ id: 'p1', close: (r) => log.push(`close p1 ${r}`) });
  const moved = t.move('policy_change');
  // A task later, every step that does not wait on ready has run (join and
  // connect settle in microtasks).
  await new Promise((r) => setTimeout(r, 0));
  eq(t.current.id, 'p1', 'current before the new session carries media');
  carriesMedia();
  const next = await moved;
  eq(next.id, 'p2', 'new session');
  eq(t.current.id, 'p2', 'current switched');
  eq(log.join('; '), 'join replaces=p1; connect p2; ready p2; close p1 moved', 'order: join, connect, ready, then close the old');
});

test('roster order: by since then id; arrival order without since', async () => {
  const b64url = (o) => btoa(JSON.stringify(o)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  const tok = `v1.${b64url({ mtg: 'm', pid: 'p1', iat: '2026-11-27T06:12:41.123456789Z' })}.sig`;
  eq(tokenSince(tok), Date.UTC(2026, 10, 27, 6, 12, 41, 123), 'since from the token');
  eq(tokenSince('garbage'), 0, 'unreadable token');
  const s = {
    id: 'me', since: 2000, selfSeq: 0.5,
    participants: new Map([['zed', { id: 'zed', since: 1000, seq: 0 }], ['amy', { id: 'amy', since: 2000, seq: 1 }], ['bo', { id: 'bo', since: 3000, seq: 2 }]]),
  };
  eq(rosterOf(s).join(), 'zed,amy,me,bo', 'by since, ties by id');
  s.participants.get('bo').since = 0;
  eq(rosterOf(s).join(), 'zed,me,amy,bo', 'arrival order when a since is missing');
});

// A small deterministic fuzzer for the two parsers that read what other
// participants and servers send: random bytes and mutated real messages
// either parse into values that re-encode the same way, or are refused
// with the parsers' own error types — never anything else.
test('fuzz: sframe.parseHeader and keymsg.decode refuse garbage cleanly', async () => {
  const rnd = prng(20261127);
  for (let i = 0; i < 3000; i++) {
    const b = new Uint8Array(Math.floor(rnd() * 20)).map(() => Math.floor(rnd() * 256));
    try {
      const h = sframe.parseHeader(b);
      eq(hex(sframe.encodeHeader(h.kid, h.ctr)), hex(b.subarray(0, h.length)), 'header round trip');
    } catch (err) {
      if (!(err instanceof sframe.SFrameError)) throw err;
    }
  }
  const ex = await (await fetch('/vectors/keymsg.json')).json();
  const seeds = [JSON.stringify(ex.announcement), JSON.stringify(ex.epoch), JSON.stringify(ex.ack), JSON.stringify(ex.commit), '{"v":2,"type":"sync","meeting":"m1","epoch":3,"leader":"alice"}'];
  let accepted = 0;
  for (let i = 0; i < 1500; i++) {
    const text = seeds[i % seeds.length].split('');
    for (let k = 0, n = 1 + Math.floor(rnd() * 4); k < n; k++) {
      const at = Math.floor(rnd() * text.length);
      const op = rnd();
      if (op < 0.4) text[at] = String.fromCharCode(32 + Math.floor(rnd() * 95));
      else if (op < 0.7) text.splice(at, 1);
      else text.splice(at, 0, '"{}[],:0A='[Math.floor(rnd() * 10)]);
    }
    let m;
    try {
      m = keymsg.decode(text.join(''));
    } catch (err) {
      if (!(err instanceof keymsg.KeyMsgError)) throw err;
      continue;
    }
    accepted++;
    eq(JSON.stringify(keymsg.decode(keymsg.encode(m))), JSON.stringify(m, (k, v) => v), 'decode(encode(m)) is m');
  }
  eq(accepted < 1500, true, 'mutations are mostly refused');
});

window.__unit = runAll();
