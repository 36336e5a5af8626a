// The host's signed statements (docs/E2EE.md §14), byte for byte as the Go
// package hoststmt: the wire form, the signed bytes and the fingerprint a
// meeting link carries of the host's public key. The host key is made in
// the creating browser as a non-extractable WebCrypto Ed25519 key and kept
// in IndexedDB under "oakmeet.hostkey.<meeting id>"; the page can sign with
// it but never read it.
//
// A statement here is a plain object: {kind, seq, policyHash, rules
// ({allowed_countries, blocked_regions}), enrollmentKey (Uint8Array),
// locked, lobby, ticket, name, participant, identity (Uint8Array), sig
// (Uint8Array)}, only the kind's fields set. A policy statement's rules are
// what its hash is computed over (policy.Rules in Go): the host signs the
// hash and the enrollment key, and verify recomputes the hash, so the
// rules a member checks its node against are the host's. Seq is a Number: the host's
// clock in Unix milliseconds; a wire seq beyond 2^53 is refused (no client
// makes one).

import { b64 as toB64, concat, equal, fromB64, lp16, u16, u64, utf8 } from './e2ee/bytes.js';
import { openDB as open, tx } from './keystore.js';

export const KIND_POLICY = 'policy';
export const KIND_SETTINGS = 'settings';
export const KIND_ADMIT = 'admit';
export const KIND_DENY = 'deny';
export const KIND_REMOVE = 'remove';

export const MAX_BYTES = 8192;
export const MAX_FIELD_LEN = 256;
const LABEL = 'oakmeet-host-v1';
const FP_LABEL = 'oakmeet-host-v1 fingerprint';

// The wire fields of each kind besides v, kind, seq and sig.
const FIELDS = {
  policy: ['policy_hash', 'allowed_countries', 'blocked_regions', 'enrollment_key'],
  settings: ['locked', 'lobby'],
  admit: ['ticket', 'name'],
  deny: ['ticket', 'name'],
  remove: ['participant', 'identity'],
};

export class StatementError extends Error {}

function lp16Bytes(b) {
  return concat(u16(b.length), b);
}

// tbs is what the signature covers:
// "oakmeet-host-v1" ‖ 0x00 ‖ lp16(kind) ‖ u64(seq) ‖ body.
export function tbs(s) {
  const head = concat(utf8(LABEL), new Uint8Array([0]), lp16(s.kind), u64(s.seq));
  switch (s.kind) {
    case KIND_POLICY:
      return concat(head, lp16(s.policyHash ?? ''), s.enrollmentKey ?? new Uint8Array(0));
    case KIND_SETTINGS:
      return concat(head, new Uint8Array([s.locked ? 1 : 0, s.lobby ? 1 : 0]));
    case KIND_ADMIT:
    case KIND_DENY:
      return concat(head, lp16(s.ticket ?? ''), lp16(s.name ?? ''));
    case KIND_REMOVE:
      return concat(head, lp16(s.participant ?? ''), lp16Bytes(s.identity ?? new Uint8Array(0)));
    default:
      return head;
  }
}

// check refuses what Go's Statement.check refuses.
function check(s) {
  for (const t of [s.policyHash, s.ticket, s.name, s.participant]) {
    if (t !== undefined && utf8(t).length > MAX_FIELD_LEN) throw new StatementError(`a field is over ${MAX_FIELD_LEN} bytes`);
  }
  if (!Number.isSafeInteger(s.seq) || s.seq <= 0) throw new StatementError('seq must be a positive integer');
  const id = s.identity ?? new Uint8Array(0);
  switch (s.kind) {
    case KIND_POLICY:
      if (!s.policyHash) throw new StatementError('a policy statement needs a policy_hash');
      if (!(s.enrollmentKey instanceof Uint8Array) || s.enrollmentKey.length !== 32) throw new StatementError('a policy statement needs a 32-byte enrollment_key');
      checkRules(s.rules);
      break;
    case KIND_SETTINGS:
      break;
    case KIND_ADMIT:
    case KIND_DENY:
      if (!s.ticket) throw new StatementError('a lobby decision needs a ticket');
      break;
    case KIND_REMOVE:
      if (!s.participant || (id.length !== 0 && id.length !== 32)) throw new StatementError('a removal needs a participant and a 32-byte identity or none');
      break;
    default:
      throw new StatementError(`unknown kind ${JSON.stringify(s.kind)}`);
  }
}

const COUNTRY = /^[A-Z]{2}$/;
const REGION = /^[a-z0-9][a-z0-9-]*$/;

// checkRules refuses lists that are not in the one canonical form Go's
// policy.Rules.Effective accepts: sorted, duplicate-free, upper-case
// country codes and lower-case region ids. (Go also looks each up in its
// catalogue; the hash check in verify binds them to what the host signed.)
function checkRules(r) {
  if (!r || !Array.isArray(r.allowed_countries) || !Array.isArray(r.blocked_regions)) throw new StatementError('a policy statement needs allowed_countries and blocked_regions lists');
  for (const [name, list, re] of [['allowed_countries', r.allowed_countries, COUNTRY], ['blocked_regions', r.blocked_regions, REGION]]) {
    for (let i = 0; i < list.length; i++) {
      if (typeof list[i] !== 'string' || !re.test(list[i])) throw new StatementError(`${name}: ${JSON.stringify(list[i])} is not in canonical form`);
      if (i > 0 && !(list[i - 1] < list[i])) throw new StatementError(`${name}: not sorted and duplicate-free`);
    }
  }
}

// rulesHash is the policy hash of rules (policy.Rules.Hash): hex SHA-256
// of "oakmeet routing policy v1\nallowed_countries=A\nblocked_regions=B\n",
// the lists joined by ",".
export async function rulesHash(r) {
  const text = `oakmeet routing policy v1\nallowed_countries=${r.allowed_countries.join(',')}\nblocked_regions=${r.blocked_regions.join(',')}\n`;
  const sum = new Uint8Array(await crypto.subtle.digest('SHA-256', utf8(text)));
  return [...sum].map((x) => x.toString(16).padStart(2, '0')).join('');
}

// allows is the rule a member checks a node by: its country is in the
// allowed list and its region (case-insensitive; "" never) is not blocked.
export function allows(rules, country, region) {
  if (!rules || !rules.allowed_countries.includes(country)) return false;
  const r = (region ?? '').toLowerCase();
  return r === '' || !rules.blocked_regions.some((b) => b.toLowerCase() === r);
}

// normal keeps only the fields of the statement's kind.
function normal(s) {
  const out = { kind: s.kind, seq: s.seq };
  switch (s.kind) {
    case KIND_POLICY:
      out.policyHash = s.policyHash ?? '';
      out.rules = { allowed_countries: [...(s.rules?.allowed_countries ?? [])], blocked_regions: [...(s.rules?.blocked_regions ?? [])] };
      out.enrollmentKey = s.enrollmentKey ? new Uint8Array(s.enrollmentKey) : new Uint8Array(0);
      break;
    case KIND_SETTINGS: out.locked = !!s.locked; out.lobby = !!s.lobby; break;
    case KIND_ADMIT:
    case KIND_DENY: out.ticket = s.ticket ?? ''; out.name = s.name ?? ''; break;
    case KIND_REMOVE: out.participant = s.participant ?? ''; out.identity = s.identity?.length ? new Uint8Array(s.identity) : new Uint8Array(0); break;
    default: break;
  }
  return out;
}

// toWire is the JSON object of the wire form, fields in Go's order.
export function toWire(s) {
  const w = { v: 1, kind: s.kind, seq: s.seq };
  switch (s.kind) {
    case KIND_POLICY:
      w.policy_hash = s.policyHash;
      w.allowed_countries = [...(s.rules?.allowed_countries ?? [])];
      w.blocked_regions = [...(s.rules?.blocked_regions ?? [])];
      w.enrollment_key = toB64(s.enrollmentKey ?? new Uint8Array(0));
      break;
    case KIND_SETTINGS: w.locked = !!s.locked; w.lobby = !!s.lobby; break;
    case KIND_ADMIT:
    case KIND_DENY: w.ticket = s.ticket; w.name = s.name; break;
    case KIND_REMOVE: w.participant = s.participant; w.identity = toB64(s.identity ?? new Uint8Array(0)); break;
    default: break;
  }
  w.sig = toB64(s.sig ?? new Uint8Array(0));
  return w;
}

const isString = (v) => typeof v === 'string';

// parse reads the wire form (a JSON object, or its text) strictly: another
// version, unknown fields, a kind's missing fields or another kind's
// fields are refused. The signature is not checked (verify does).
export function parse(wire) {
  if (typeof wire === 'string') {
    if (utf8(wire).length > MAX_BYTES) throw new StatementError(`over ${MAX_BYTES} bytes`);
    try {
      wire = JSON.parse(wire);
    } catch (err) {
      throw new StatementError(`not JSON: ${err.message}`);
    }
  }
  if (!wire || typeof wire !== 'object' || Array.isArray(wire)) throw new StatementError('not an object');
  if (wire.v !== 1) throw new StatementError(`version ${wire.v}`);
  const fields = FIELDS[wire.kind];
  if (!fields) throw new StatementError(`unknown kind ${JSON.stringify(wire.kind)}`);
  const allowed = new Set(['v', 'kind', 'seq', 'sig', ...fields]);
  for (const k of Object.keys(wire)) if (!allowed.has(k)) throw new StatementError(`field ${k} is not one of a ${wire.kind} statement`);
  for (const k of fields) if (!(k in wire)) throw new StatementError(`a ${wire.kind} statement needs ${k}`);
  if (!Number.isSafeInteger(wire.seq) || wire.seq < 0) throw new StatementError('seq must be an integer');
  let sig;
  try {
    sig = fromB64(wire.sig);
  } catch {
    sig = null;
  }
  if (!isString(wire.sig) || !sig || sig.length !== 64) throw new StatementError('sig must be 64 bytes of base64');
  const s = { kind: wire.kind, seq: wire.seq, sig };
  switch (wire.kind) {
    case KIND_POLICY:
      if (!isString(wire.policy_hash)) throw new StatementError('policy_hash must be a string');
      if (!Array.isArray(wire.allowed_countries) || !Array.isArray(wire.blocked_regions)) throw new StatementError('allowed_countries and blocked_regions must be lists');
      if (!isString(wire.enrollment_key)) throw new StatementError('enrollment_key must be a string');
      s.policyHash = wire.policy_hash;
      s.rules = { allowed_countries: [...wire.allowed_countries], blocked_regions: [...wire.blocked_regions] };
      try {
        s.enrollmentKey = fromB64(wire.enrollment_key);
      } catch {
        throw new StatementError('enrollment_key is not base64');
      }
      break;
    case KIND_SETTINGS:
      if (typeof wire.locked !== 'boolean' || typeof wire.lobby !== 'boolean') throw new StatementError('locked and lobby must be booleans');
      s.locked = wire.locked;
      s.lobby = wire.lobby;
      break;
    case KIND_ADMIT:
    case KIND_DENY:
      if (!isString(wire.ticket) || !isString(wire.name)) throw new StatementError('ticket and name must be strings');
      s.ticket = wire.ticket;
      s.name = wire.name;
      break;
    case KIND_REMOVE:
      if (!isString(wire.participant) || !isString(wire.identity)) throw new StatementError('participant and identity must be strings');
      s.participant = wire.participant;
      try {
        s.identity = fromB64(wire.identity);
      } catch {
        throw new StatementError('identity is not base64');
      }
      break;
    default:
      break;
  }
  check(s);
  return s;
}

async function importPublic(raw) {
  return crypto.subtle.importKey('raw', raw, { name: 'Ed25519' }, false, ['verify']);
}

// verify resolves to true if s (parsed) is well formed, signed by the
// 32-byte host public key and, for a policy, its rules hash to its
// policy_hash (what the host signed).
export async function verify(s, hostKey) {
  if (!hostKey || hostKey.length !== 32 || !s?.sig || s.sig.length !== 64) return false;
  try {
    check(s);
    if (s.kind === KIND_POLICY && (await rulesHash(s.rules)) !== s.policyHash) return false;
    return await crypto.subtle.verify({ name: 'Ed25519' }, await importPublic(hostKey), s.sig, tbs(normal(s)));
  } catch {
    return false;
  }
}

// fingerprint is base64url (unpadded) of the first 16 bytes of
// SHA-256("oakmeet-host-v1 fingerprint" ‖ 0x00 ‖ public key).
export async function fingerprint(hostKey) {
  const h = new Uint8Array(await crypto.subtle.digest('SHA-256', concat(utf8(FP_LABEL), new Uint8Array([0]), hostKey)));
  return toB64(h.subarray(0, 16)).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// checkKey resolves to true if hostKey is the key the link's fingerprint names.
export async function checkKey(hostKey, fp) {
  if (!hostKey || hostKey.length !== 32 || !fp) return false;
  return equal(utf8(await fingerprint(hostKey)), utf8(fp.trim()));
}

// HostKey is the host's key pair for one meeting: a non-extractable
// private CryptoKey and the 32 raw bytes of the public key.
export class HostKey {
  constructor(privateKey, publicKey) {
    this.privateKey = privateKey;
    this.publicKey = publicKey;
    this.lastSeq = 0;
  }

  static async generate() {
    const kp = await crypto.subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    return new HostKey(kp.privateKey, new Uint8Array(await crypto.subtle.exportKey('raw', kp.publicKey)));
  }

  // nextSeq is the host's clock in Unix ms, kept strictly growing.
  nextSeq() {
    this.lastSeq = Math.max(Date.now(), this.lastSeq + 1);
    return this.lastSeq;
  }

  // sign checks the statement's fields, gives it a seq unless it has one,
  // signs it and resolves to its wire object.
  async sign(fields) {
    const s = normal({ ...fields, seq: fields.seq ?? this.nextSeq() });
    check(s);
    if (s.kind === KIND_POLICY && (await rulesHash(s.rules)) !== s.policyHash) throw new StatementError('the policy\'s rules do not hash to its policy_hash');
    s.sig = new Uint8Array(await crypto.subtle.sign({ name: 'Ed25519' }, this.privateKey, tbs(s)));
    return toWire(s);
  }

  fingerprint() {
    return fingerprint(this.publicKey);
  }
}

// The host keys live in a database of their own, apart from the identity
// key's, one record per meeting.
const DB = 'oakmeet-host';

export function hostKeyName(meeting) {
  return `oakmeet.hostkey.${meeting}`;
}

// saveHostKey keeps the key for the meeting; the CryptoKey is stored as
// itself (structured clone), still non-extractable.
export async function saveHostKey(meeting, key) {
  const db = await open(DB);
  try {
    await tx(db, 'readwrite', (s) => s.put({ privateKey: key.privateKey, publicKey: key.publicKey }, hostKeyName(meeting)));
  } finally {
    db.close();
  }
}

// loadHostKey resolves to the meeting's host key kept in this browser, or null.
export async function loadHostKey(meeting) {
  let db;
  try {
    db = await open(DB);
    const r = await tx(db, 'readonly', (s) => s.get(hostKeyName(meeting)));
    if (r?.privateKey && r.publicKey?.length === 32) return new HostKey(r.privateKey, new Uint8Array(r.publicKey));
  } catch {
    // No IndexedDB: no host key here.
  } finally {
    db?.close();
  }
  return null;
}
