// The key messages of docs/E2EE.md §8 — announce, epoch, ack, commit, sync,
// node, checkpoint, presence —
// as JSON values (what travels as a relay payload), their signed bytes, the
// epoch digest and the HPKE sealing of the epoch secret. Decoding is as
// strict as the Go side: unknown or missing fields, wrong lengths and bad
// ids or names are refused.

import { b64, concat, equal, fromB64, isUTF8, lp16, u16, u64, utf8 } from './bytes.js';
import { sha256 } from './hkdf.js';
import * as hpke from './hpke.js';
import { verify } from './identity.js';

export const VERSION = 2;
export const MAX_ID_LEN = 256;
export const MAX_NAME_LEN = 256;
export const MAX_ROSTER = 1024;
export const MAX_EPOCH = 2 ** 48 - 1;
export const SECRET_SIZE = 32;
export const SEALED_SIZE = 32 + SECRET_SIZE + 16;
export const DIGEST_SIZE = 32;
export const MAX_MESSAGE_SIZE = 1 << 20; // bytes of JSON text
// A node certificate's text, as Go's keymsg.MaxCertLen bounds it (nodecert's
// own limit is smaller).
export const MAX_CERT_LEN = 4096;
// A transparency-log checkpoint's text, as Go's keymsg.MaxCheckpointLen
// bounds it.
export const MAX_CHECKPOINT_LEN = 4096;
// A presence message's seq, as Go's keymsg.MaxPresenceSeq bounds it.
export const MAX_PRESENCE_SEQ = 2 ** 48 - 1;
const PRESENCE_FLAGS = ['mic', 'camera', 'hand', 'screen'];

export class KeyMsgError extends Error {}

const ANNOUNCE_LABEL = 'oakmeet-e2ee-v2 announce';
const EPOCH_LABEL = 'oakmeet-e2ee-v2 epoch';
const ACK_LABEL = 'oakmeet-e2ee-v2 ack';
const COMMIT_LABEL = 'oakmeet-e2ee-v2 commit';
const NODE_LABEL = 'oakmeet-e2ee-v2 node';
const CHECKPOINT_LABEL = 'oakmeet-e2ee-v2 checkpoint';
const PRESENCE_LABEL = 'oakmeet-e2ee-v2 presence';
const SEAL_LABEL = 'oakmeet-e2ee-v1 epoch secret';
const ZERO = new Uint8Array([0]);

function checkID(field, s) {
  if (typeof s !== 'string' || s === '' || utf8(s).length > MAX_ID_LEN || !isUTF8(s)) {
    throw new KeyMsgError(`keymsg: ${field} must be 1 to ${MAX_ID_LEN} bytes of UTF-8`);
  }
}

function checkName(s) {
  if (typeof s !== 'string' || utf8(s).length > MAX_NAME_LEN || !isUTF8(s)) {
    throw new KeyMsgError(`keymsg: name must be at most ${MAX_NAME_LEN} bytes of UTF-8`);
  }
}

function checkEpoch(e) {
  if (!Number.isSafeInteger(e) || e < 1 || e > MAX_EPOCH) throw new KeyMsgError(`keymsg: epoch ${e} outside 1..2^48-1`);
}

function bin(field, s, n) {
  let b;
  try {
    b = fromB64(s);
  } catch (err) {
    throw new KeyMsgError(`keymsg: ${field}: ${err.message}`);
  }
  if (n !== undefined && b.length !== n) throw new KeyMsgError(`keymsg: ${field} is ${b.length} bytes, want ${n}`);
  return b;
}

function exactKeys(o, keys, what) {
  if (o === null || typeof o !== 'object' || Array.isArray(o)) throw new KeyMsgError(`keymsg: ${what} is not an object`);
  const got = Object.keys(o);
  for (const k of got) if (!keys.includes(k)) throw new KeyMsgError(`keymsg: ${what}: unknown field ${k}`);
  for (const k of keys) if (!(k in o)) throw new KeyMsgError(`keymsg: ${what}: missing field ${k}`);
}

const ENTRY_FIELDS = ['participant', 'name', 'identity', 'hpke', 'sig'];

// An entry: {participant, name, identity (32), hpke (32), sig (64)}, as bytes.
function entryFromWire(w, what) {
  exactKeys(w, ENTRY_FIELDS, what);
  checkID('participant', w.participant);
  checkName(w.name);
  return { participant: w.participant, name: w.name, identity: bin('identity', w.identity, 32), hpke: bin('hpke', w.hpke, 32), sig: bin('sig', w.sig, 64) };
}

function entryToWire(e) {
  return { participant: e.participant, name: e.name, identity: b64(e.identity), hpke: b64(e.hpke), sig: b64(e.sig) };
}

// sameKeys: the same participant with the same identity and HPKE keys.
export function sameKeys(a, b) {
  return a.participant === b.participant && equal(a.identity, b.identity) && equal(a.hpke, b.hpke);
}

// sameEntry is sameKeys and the same display name.
export function sameEntry(a, b) {
  return sameKeys(a, b) && a.name === b.name;
}

function parse(payload) {
  if (typeof payload !== 'string') return payload;
  if (payload.length > MAX_MESSAGE_SIZE && utf8(payload).length > MAX_MESSAGE_SIZE) throw new KeyMsgError(`keymsg: message over ${MAX_MESSAGE_SIZE} bytes`);
  try {
    return JSON.parse(payload);
  } catch {
    throw new KeyMsgError('keymsg: not JSON');
  }
}

// decode takes a relay payload (a parsed JSON value, or its text) and
// returns {type: 'announce'|'epoch'|'ack'|'commit'|'sync', ...} with binary
// fields as Uint8Arrays. It checks structure, not signatures.
export function decode(payload) {
  const m = parse(payload);
  if (m === null || typeof m !== 'object') throw new KeyMsgError('keymsg: not an object');
  if (m.v !== VERSION) throw new KeyMsgError(`keymsg: v=${m.v}, want ${VERSION}`);
  switch (m.type) {
    case 'announce': {
      exactKeys(m, ['v', 'type', 'meeting', ...ENTRY_FIELDS], 'announce');
      checkID('meeting', m.meeting);
      const { v, type, meeting, ...rest } = m;
      return { type: 'announce', meeting, entry: entryFromWire(rest, 'announce') };
    }
    case 'epoch':
      return decodeEpoch(m);
    case 'ack':
      exactKeys(m, ['v', 'type', 'meeting', 'epoch', 'participant', 'digest', 'sig'], 'ack');
      checkID('meeting', m.meeting);
      checkEpoch(m.epoch);
      checkID('participant', m.participant);
      return { type: 'ack', meeting: m.meeting, epoch: m.epoch, participant: m.participant, digest: bin('digest', m.digest, DIGEST_SIZE), sig: bin('sig', m.sig, 64) };
    case 'commit':
      exactKeys(m, ['v', 'type', 'meeting', 'epoch', 'digest', 'sig'], 'commit');
      checkID('meeting', m.meeting);
      checkEpoch(m.epoch);
      return { type: 'commit', meeting: m.meeting, epoch: m.epoch, digest: bin('digest', m.digest, DIGEST_SIZE), sig: bin('sig', m.sig, 64) };
    case 'node':
      exactKeys(m, ['v', 'type', 'meeting', 'participant', 'cert', 'sig'], 'node');
      checkID('meeting', m.meeting);
      checkID('participant', m.participant);
      // Any text: whether it is a certificate the host's policy accepts is
      // the client's check (an invalid one is shown as such).
      if (typeof m.cert !== 'string' || m.cert === '' || utf8(m.cert).length > MAX_CERT_LEN || !isUTF8(m.cert)) {
        throw new KeyMsgError(`keymsg: cert must be 1 to ${MAX_CERT_LEN} bytes of UTF-8`);
      }
      return { type: 'node', meeting: m.meeting, participant: m.participant, cert: m.cert, sig: bin('sig', m.sig, 64) };
    case 'checkpoint':
      exactKeys(m, ['v', 'type', 'meeting', 'participant', 'checkpoint', 'sig'], 'checkpoint');
      checkID('meeting', m.meeting);
      checkID('participant', m.participant);
      // Any text: whether it is a checkpoint of the log, consistent with
      // what this member holds, is the audit log check's (auditwatch.js).
      if (typeof m.checkpoint !== 'string' || m.checkpoint === '' || utf8(m.checkpoint).length > MAX_CHECKPOINT_LEN || !isUTF8(m.checkpoint)) {
        throw new KeyMsgError(`keymsg: checkpoint must be 1 to ${MAX_CHECKPOINT_LEN} bytes of UTF-8`);
      }
      return { type: 'checkpoint', meeting: m.meeting, participant: m.participant, checkpoint: m.checkpoint, sig: bin('sig', m.sig, 64) };
    case 'presence':
      return decodePresence(m);
    case 'sync':
      exactKeys(m, ['v', 'type', 'meeting', 'epoch', 'leader'], 'sync');
      checkID('meeting', m.meeting);
      checkID('leader', m.leader);
      checkEpoch(m.epoch);
      return { type: 'sync', meeting: m.meeting, epoch: m.epoch, leader: m.leader };
    default:
      throw new KeyMsgError(`keymsg: unknown type ${JSON.stringify(m.type)}`);
  }
}

function checkPresence(p) {
  checkID('meeting', p.meeting);
  checkID('participant', p.participant);
  if (!Number.isSafeInteger(p.seq) || p.seq < 1 || p.seq > MAX_PRESENCE_SEQ) throw new KeyMsgError(`keymsg: presence seq ${p.seq} outside 1..2^48-1`);
  for (const f of PRESENCE_FLAGS) if (typeof p[f] !== 'boolean') throw new KeyMsgError(`keymsg: presence ${f} must be true or false`);
}

function decodePresence(m) {
  exactKeys(m, ['v', 'type', 'meeting', 'participant', 'seq', ...PRESENCE_FLAGS, 'sig'], 'presence');
  checkPresence(m);
  return { type: 'presence', meeting: m.meeting, participant: m.participant, seq: m.seq, mic: m.mic, camera: m.camera, hand: m.hand, screen: m.screen, sig: bin('sig', m.sig, 64) };
}

function decodeEpoch(m) {
  exactKeys(m, ['v', 'type', 'meeting', 'epoch', 'roster', 'sealed', 'sig'], 'epoch');
  checkID('meeting', m.meeting);
  checkEpoch(m.epoch);
  if (!Array.isArray(m.roster) || !Array.isArray(m.sealed)) throw new KeyMsgError('keymsg: roster and sealed must be arrays');
  if (m.roster.length === 0 || m.roster.length > MAX_ROSTER) throw new KeyMsgError(`keymsg: roster of ${m.roster.length} entries`);
  if (m.sealed.length !== m.roster.length) throw new KeyMsgError('keymsg: sealed copies do not match the roster');
  const roster = m.roster.map((w, i) => entryFromWire(w, `roster entry ${i}`));
  const seen = new Set();
  for (const e of roster) {
    if (seen.has(e.participant)) throw new KeyMsgError(`keymsg: participant ${e.participant} twice in the roster`);
    seen.add(e.participant);
  }
  const sealed = m.sealed.map((s, i) => bin(`sealed[${i}]`, s, SEALED_SIZE));
  return { type: 'epoch', meeting: m.meeting, epoch: m.epoch, roster, sealed, sig: bin('sig', m.sig, 64) };
}

// encode returns the JSON value of a message, field for field as Go writes
// it; checkSize refuses one whose JSON text decoders would refuse.
export function checkSize(value) {
  const n = utf8(JSON.stringify(value)).length;
  if (n > MAX_MESSAGE_SIZE) throw new KeyMsgError(`keymsg: ${n} bytes, limit ${MAX_MESSAGE_SIZE}`);
  return value;
}

export function encode(m) {
  switch (m.type) {
    case 'announce':
      return { v: VERSION, type: 'announce', meeting: m.meeting, ...entryToWire(m.entry) };
    case 'epoch':
      return { v: VERSION, type: 'epoch', meeting: m.meeting, epoch: m.epoch, roster: m.roster.map(entryToWire), sealed: m.sealed.map(b64), sig: b64(m.sig) };
    case 'ack':
      return { v: VERSION, type: 'ack', meeting: m.meeting, epoch: m.epoch, participant: m.participant, digest: b64(m.digest), sig: b64(m.sig) };
    case 'commit':
      return { v: VERSION, type: 'commit', meeting: m.meeting, epoch: m.epoch, digest: b64(m.digest), sig: b64(m.sig) };
    case 'sync':
      return { v: VERSION, type: 'sync', meeting: m.meeting, epoch: m.epoch, leader: m.leader };
    case 'node':
      return { v: VERSION, type: 'node', meeting: m.meeting, participant: m.participant, cert: m.cert, sig: b64(m.sig) };
    case 'checkpoint':
      return { v: VERSION, type: 'checkpoint', meeting: m.meeting, participant: m.participant, checkpoint: m.checkpoint, sig: b64(m.sig) };
    case 'presence':
      return { v: VERSION, type: 'presence', meeting: m.meeting, participant: m.participant, seq: m.seq, mic: m.mic, camera: m.camera, hand: m.hand, screen: m.screen, sig: b64(m.sig) };
    default:
      throw new KeyMsgError(`keymsg: cannot encode ${m.type}`);
  }
}

export function announceTBS(meeting, e) {
  return concat(utf8(ANNOUNCE_LABEL), ZERO, lp16(meeting), lp16(e.participant), lp16(e.name), e.identity, e.hpke);
}

export async function epochTBS(meeting, epoch, roster, sealed) {
  const parts = [utf8(EPOCH_LABEL), ZERO, lp16(meeting), u64(epoch), u16(roster.length)];
  const hashes = await Promise.all(sealed.map((s) => sha256(s)));
  for (let i = 0; i < roster.length; i++) {
    parts.push(lp16(roster[i].participant), lp16(roster[i].name), roster[i].identity, roster[i].hpke, hashes[i]);
  }
  return concat(...parts);
}

// epochDigest is SHA-256 of the epoch's signed bytes: what acks and the
// commit name, so that they hold for exactly this roster and these copies.
export async function epochDigest(m) {
  return sha256(await epochTBS(m.meeting, m.epoch, m.roster, m.sealed));
}

export function ackTBS(meeting, epoch, participant, digest) {
  return concat(utf8(ACK_LABEL), ZERO, lp16(meeting), u64(epoch), lp16(participant), digest);
}

export function commitTBS(meeting, epoch, digest) {
  return concat(utf8(COMMIT_LABEL), ZERO, lp16(meeting), u64(epoch), digest);
}

// nodeTBS is what a member signs to name the node it is on:
// "oakmeet-e2ee-v2 node" ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖ lp16(cert).
export function nodeTBS(meeting, participant, cert) {
  return concat(utf8(NODE_LABEL), ZERO, lp16(meeting), lp16(participant), lp16(cert));
}

// newNode is a member's signed node message: the certificate of the node
// it is on, for everyone to check against the host's policy.
export async function newNode(meeting, participant, cert, identity) {
  checkID('meeting', meeting);
  checkID('participant', participant);
  const sig = await identity.sign(nodeTBS(meeting, participant, cert));
  return { type: 'node', meeting, participant, cert, sig };
}

// verifyNode checks a node message's signature by the sender's identity key.
export async function verifyNode(n, identityKey) {
  if (!(await verify(identityKey, nodeTBS(n.meeting, n.participant, n.cert), n.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the node message of ${n.participant}`);
  }
}

// checkpointTBS is what a member signs to pass on a checkpoint of the
// transparency log it holds: "oakmeet-e2ee-v2 checkpoint" ‖ 0x00 ‖
// lp16(meeting) ‖ lp16(participant) ‖ lp16(checkpoint).
export function checkpointTBS(meeting, participant, checkpoint) {
  return concat(utf8(CHECKPOINT_LABEL), ZERO, lp16(meeting), lp16(participant), lp16(checkpoint));
}

// newCheckpoint is a member's signed checkpoint message.
export async function newCheckpoint(meeting, participant, checkpoint, identity) {
  checkID('meeting', meeting);
  checkID('participant', participant);
  if (typeof checkpoint !== 'string' || checkpoint === '' || utf8(checkpoint).length > MAX_CHECKPOINT_LEN || !isUTF8(checkpoint)) {
    throw new KeyMsgError(`keymsg: checkpoint must be 1 to ${MAX_CHECKPOINT_LEN} bytes of UTF-8`);
  }
  const sig = await identity.sign(checkpointTBS(meeting, participant, checkpoint));
  return { type: 'checkpoint', meeting, participant, checkpoint, sig };
}

// verifyCheckpoint checks a checkpoint message's signature by the
// sender's identity key.
export async function verifyCheckpoint(c, identityKey) {
  if (!(await verify(identityKey, checkpointTBS(c.meeting, c.participant, c.checkpoint), c.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the checkpoint message of ${c.participant}`);
  }
}

// presenceTBS is what a member signs to say whether its microphone and
// camera are on, its hand raised and its screen shared:
// "oakmeet-e2ee-v2 presence" ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖
// u64(seq) ‖ mic ‖ camera ‖ hand ‖ screen (one byte each, 1 or 0).
export function presenceTBS(p) {
  return concat(utf8(PRESENCE_LABEL), ZERO, lp16(p.meeting), lp16(p.participant), u64(p.seq), new Uint8Array(PRESENCE_FLAGS.map((f) => (p[f] ? 1 : 0))));
}

// newPresence is a member's signed presence message; state is {mic,
// camera, hand, screen} (booleans) and seq its number, above every one
// this participant sent before.
export async function newPresence(meeting, participant, seq, state, identity) {
  const p = { type: 'presence', meeting, participant, seq, mic: !!state.mic, camera: !!state.camera, hand: !!state.hand, screen: !!state.screen, sig: null };
  checkPresence(p);
  p.sig = await identity.sign(presenceTBS(p));
  return p;
}

// verifyPresence checks a presence message's signature by the sender's
// identity key. Whether its seq is new is the receiver's check.
export async function verifyPresence(p, identityKey) {
  if (!(await verify(identityKey, presenceTBS(p), p.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the presence message of ${p.participant}`);
  }
}

export function sealInfo(meeting, epoch) {
  return concat(utf8(SEAL_LABEL), ZERO, lp16(meeting), u64(epoch));
}

// VerifyCache remembers entries whose signatures verified (by their whole
// signed bytes and signature), so that a member checks each announcement
// once however many epochs list it: 1,000 members over many epochs stay
// cheap. It forgets the oldest beyond its bound.
export class VerifyCache {
  constructor(limit = 4 * MAX_ROSTER) {
    this.limit = limit;
    this.seen = new Set();
    this.checks = 0; // signatures verified for want of an entry here
  }

  has(k) {
    return this.seen.has(k);
  }

  add(k) {
    this.seen.add(k);
    if (this.seen.size > this.limit) this.seen.delete(this.seen.values().next().value);
  }
}

export async function verifyEntry(meeting, e, cache = null) {
  const tbs = announceTBS(meeting, e);
  const key = cache ? b64(tbs) + b64(e.sig) : '';
  if (cache?.has(key)) return;
  if (cache) cache.checks++;
  if (!(await verify(e.identity, tbs, e.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the announcement of ${e.participant}`);
  }
  cache?.add(key);
}

// probe is any X25519 key: a point of low order times any clamped scalar
// is zero, which WebCrypto refuses.
let probe;
export async function checkHPKEKey(pub) {
  probe ??= (await hpke.generateKeyPair()).privateKey;
  try {
    await hpke.dh(probe, pub);
  } catch {
    throw new KeyMsgError('keymsg: hpke key of low order');
  }
}

export async function newAnnouncement(meeting, participant, name, identity, hpkePublic) {
  checkID('meeting', meeting);
  checkID('participant', participant);
  checkName(name);
  const entry = { participant, name, identity: identity.publicKey, hpke: hpkePublic, sig: null };
  entry.sig = await identity.sign(announceTBS(meeting, entry));
  return { type: 'announce', meeting, entry };
}

export async function verifyAnnouncement(a, cache = null) {
  await verifyEntry(a.meeting, a.entry, cache);
  await checkHPKEKey(a.entry.hpke);
}

// newEpoch seals secret to every roster entry and signs with the leader's
// identity, which must be roster[0]'s. The result carries its digest.
export async function newEpoch(meeting, epoch, roster, secret, leader) {
  checkEpoch(epoch);
  const info = sealInfo(meeting, epoch);
  const sealed = await Promise.all(roster.map((e) => hpke.seal(e.hpke, info, secret)));
  const tbs = await epochTBS(meeting, epoch, roster, sealed);
  const sig = await leader.sign(tbs);
  return { type: 'epoch', meeting, epoch, roster, sealed, sig, digest: await sha256(tbs) };
}

// verifyEpoch checks every roster entry's signature and the leader's, and
// returns the epoch's digest.
export async function verifyEpoch(m, cache = null) {
  for (const e of m.roster) await verifyEntry(m.meeting, e, cache);
  const tbs = await epochTBS(m.meeting, m.epoch, m.roster, m.sealed);
  if (!(await verify(m.roster[0].identity, tbs, m.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on epoch ${m.epoch} by ${m.roster[0].participant}`);
  }
  return sha256(tbs);
}

// openEpoch opens copy i with that member's HPKE private key.
export async function openEpoch(m, i, privateKey) {
  const secret = await hpke.open(privateKey, m.roster[i].hpke, sealInfo(m.meeting, m.epoch), m.sealed[i]);
  if (secret.length !== SECRET_SIZE) throw new KeyMsgError('keymsg: secret of wrong size');
  return secret;
}

export async function newAck(meeting, epoch, participant, digest, identity) {
  const sig = await identity.sign(ackTBS(meeting, epoch, participant, digest));
  return { type: 'ack', meeting, epoch, participant, digest, sig };
}

// verifyAck checks an ack's signature by the identity key of the roster
// entry that sent it.
export async function verifyAck(a, identityKey) {
  if (!(await verify(identityKey, ackTBS(a.meeting, a.epoch, a.participant, a.digest), a.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the ack of epoch ${a.epoch} by ${a.participant}`);
  }
}

export async function newCommit(meeting, epoch, digest, identity) {
  const sig = await identity.sign(commitTBS(meeting, epoch, digest));
  return { type: 'commit', meeting, epoch, digest, sig };
}

// verifyCommit checks a commit's signature by the epoch leader's identity key.
export async function verifyCommit(c, identityKey) {
  if (!(await verify(identityKey, commitTBS(c.meeting, c.epoch, c.digest), c.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the commit of epoch ${c.epoch}`);
  }
}
