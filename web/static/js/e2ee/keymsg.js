// The three key messages of docs/E2EE.md §8 — announce, epoch, sync — as
// JSON values (what travels as a relay payload), their signed bytes and the
// HPKE sealing of the epoch secret. Decoding is as strict as the Go side:
// unknown or missing fields, wrong lengths and bad ids are refused.

import { b64, concat, equal, fromB64, isUTF8, lp16, u16, u64, utf8 } from './bytes.js';
import { sha256 } from './hkdf.js';
import * as hpke from './hpke.js';
import { verify } from './identity.js';

export const VERSION = 1;
export const MAX_ID_LEN = 256;
export const MAX_ROSTER = 1024;
export const MAX_EPOCH = 2 ** 48 - 1;
export const SECRET_SIZE = 32;
export const SEALED_SIZE = 32 + SECRET_SIZE + 16;

export class KeyMsgError extends Error {}

const ANNOUNCE_LABEL = 'oakmeet-e2ee-v1 announce';
const EPOCH_LABEL = 'oakmeet-e2ee-v1 epoch';
const SEAL_LABEL = 'oakmeet-e2ee-v1 epoch secret';
const ZERO = new Uint8Array([0]);

function checkID(field, s) {
  if (typeof s !== 'string' || s === '' || utf8(s).length > MAX_ID_LEN || !isUTF8(s)) {
    throw new KeyMsgError(`keymsg: ${field} must be 1 to ${MAX_ID_LEN} bytes of UTF-8`);
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

// An entry: {participant, identity (32), hpke (32), sig (64)}, as bytes.
function entryFromWire(w, what) {
  exactKeys(w, ['participant', 'identity', 'hpke', 'sig'], what);
  checkID('participant', w.participant);
  return { participant: w.participant, identity: bin('identity', w.identity, 32), hpke: bin('hpke', w.hpke, 32), sig: bin('sig', w.sig, 64) };
}

function entryToWire(e) {
  return { participant: e.participant, identity: b64(e.identity), hpke: b64(e.hpke), sig: b64(e.sig) };
}

export function sameKeys(a, b) {
  return a.participant === b.participant && equal(a.identity, b.identity) && equal(a.hpke, b.hpke);
}

// decode takes a relay payload (a parsed JSON value, or its text) and
// returns {type: 'announce'|'epoch'|'sync', ...} with binary fields as
// Uint8Arrays. It checks structure, not signatures.
export function decode(payload) {
  let m = payload;
  if (typeof m === 'string') {
    try {
      m = JSON.parse(m);
    } catch {
      throw new KeyMsgError('keymsg: not JSON');
    }
  }
  if (m === null || typeof m !== 'object') throw new KeyMsgError('keymsg: not an object');
  if (m.v !== VERSION) throw new KeyMsgError(`keymsg: v=${m.v}, want ${VERSION}`);
  switch (m.type) {
    case 'announce': {
      exactKeys(m, ['v', 'type', 'meeting', 'participant', 'identity', 'hpke', 'sig'], 'announce');
      checkID('meeting', m.meeting);
      const { v, type, meeting, ...rest } = m;
      return { type: 'announce', meeting, entry: entryFromWire(rest, 'announce') };
    }
    case 'epoch': {
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

// encode returns the JSON value of a message, field for field as Go writes it.
export function encode(m) {
  switch (m.type) {
    case 'announce':
      return { v: VERSION, type: 'announce', meeting: m.meeting, ...entryToWire(m.entry) };
    case 'epoch':
      return { v: VERSION, type: 'epoch', meeting: m.meeting, epoch: m.epoch, roster: m.roster.map(entryToWire), sealed: m.sealed.map(b64), sig: b64(m.sig) };
    case 'sync':
      return { v: VERSION, type: 'sync', meeting: m.meeting, epoch: m.epoch, leader: m.leader };
    default:
      throw new KeyMsgError(`keymsg: cannot encode ${m.type}`);
  }
}

export function announceTBS(meeting, e) {
  return concat(utf8(ANNOUNCE_LABEL), ZERO, lp16(meeting), lp16(e.participant), e.identity, e.hpke);
}

export async function epochTBS(meeting, epoch, roster, sealed) {
  const parts = [utf8(EPOCH_LABEL), ZERO, lp16(meeting), u64(epoch), u16(roster.length)];
  for (let i = 0; i < roster.length; i++) {
    parts.push(lp16(roster[i].participant), roster[i].identity, roster[i].hpke, await sha256(sealed[i]));
  }
  return concat(...parts);
}

export function sealInfo(meeting, epoch) {
  return concat(utf8(SEAL_LABEL), ZERO, lp16(meeting), u64(epoch));
}

export async function verifyEntry(meeting, e) {
  if (!(await verify(e.identity, announceTBS(meeting, e), e.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on the announcement of ${e.participant}`);
  }
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

export async function newAnnouncement(meeting, participant, identity, hpkePublic) {
  checkID('meeting', meeting);
  checkID('participant', participant);
  const entry = { participant, identity: identity.publicKey, hpke: hpkePublic, sig: null };
  entry.sig = await identity.sign(announceTBS(meeting, entry));
  return { type: 'announce', meeting, entry };
}

export async function verifyAnnouncement(a) {
  await verifyEntry(a.meeting, a.entry);
  await checkHPKEKey(a.entry.hpke);
}

// newEpoch seals secret to every roster entry and signs with the leader's
// identity, which must be roster[0]'s.
export async function newEpoch(meeting, epoch, roster, secret, leader) {
  checkEpoch(epoch);
  const info = sealInfo(meeting, epoch);
  const sealed = [];
  for (const e of roster) sealed.push(await hpke.seal(e.hpke, info, secret));
  const sig = await leader.sign(await epochTBS(meeting, epoch, roster, sealed));
  return { type: 'epoch', meeting, epoch, roster, sealed, sig };
}

// verifyEpoch checks every roster entry's signature and the leader's.
export async function verifyEpoch(m) {
  for (const e of m.roster) await verifyEntry(m.meeting, e);
  const tbs = await epochTBS(m.meeting, m.epoch, m.roster, m.sealed);
  if (!(await verify(m.roster[0].identity, tbs, m.sig))) {
    throw new KeyMsgError(`keymsg: bad signature on epoch ${m.epoch} by ${m.roster[0].participant}`);
  }
}

// openEpoch opens copy i with that member's HPKE private key.
export async function openEpoch(m, i, privateKey) {
  const secret = await hpke.open(privateKey, m.roster[i].hpke, sealInfo(m.meeting, m.epoch), m.sealed[i]);
  if (secret.length !== SECRET_SIZE) throw new KeyMsgError('keymsg: secret of wrong size');
  return secret;
}
