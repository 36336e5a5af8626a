// The deployment's transparency log as this browser checks it (issue 13,
// docs/WEB.md "The audit log"): signed checkpoints (C2SP tlog-checkpoint
// bodies in golang.org/x/mod/sumdb/note signed notes, Ed25519), RFC 6962
// Merkle hashing, and inclusion and consistency proofs checked exactly as
// golang.org/x/mod/sumdb/tlog checks them (CheckRecord, CheckTree: the same
// proof order). An entry's leaf is the line Go's json.Encoder (HTML
// escaping off) writes for audit.Entry, without its newline (entryJSON).
//
// Everything here is pure but for WebCrypto (SHA-256, Ed25519). The page's
// side — checkpoints kept per meeting in IndexedDB, polling, the entries
// of its own meeting — is auditwatch.js.

import { b64, concat, equal, fromB64, hex, u64, utf8 } from './e2ee/bytes.js';

export const HASH_SIZE = 32;
// A signed checkpoint is a body of three short lines and a few signatures
// (audit.maxCheckpoint).
export const MAX_CHECKPOINT = 4096;
const SIG_PREFIX = '— ';
const ALG_ED25519 = 1;

export class AuditError extends Error {
  // kind is 'checkpoint' (malformed, or not signed by the log's key),
  // 'inconsistent' (two checkpoints no one append-only log can have
  // signed), 'not_included' (an entry the tree does not hold), 'entry'
  // (an entry its hash or the log's signature does not vouch for) or
  // 'chain' (an entry out of its chain), as audit.ErrCheckpoint,
  // ErrInconsistent, ErrNotIncluded, ErrEntry and ErrChain.
  constructor(kind, message) {
    super(message);
    this.kind = kind;
  }
}

const bad = (msg) => new AuditError('checkpoint', msg);

async function sha256(...parts) {
  return new Uint8Array(await crypto.subtle.digest('SHA-256', concat(...parts)));
}

// validName is note's isValidName: non-empty, no white space, no "+".
function validName(name) {
  return typeof name === 'string' && name !== '' && !/[\t\n\v\f\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000+]/.test(name) && !/[\uD800-\uDFFF]/.test(name);
}

function u32(b) {
  return ((b[0] << 24) | (b[1] << 16) | (b[2] << 8) | b[3]) >>> 0;
}

// keyHash is note's key hash: the first four bytes, big-endian, of
// SHA-256(name "\n" alg‖key).
async function keyHash(name, key) {
  return u32(await sha256(utf8(`${name}\n`), key));
}

// parseVerifier reads a note verifier string name+hash+base64(0x01‖key),
// as GET /api/config names audit_verifier_key, checking its hash.
export async function parseVerifier(vkey) {
  if (typeof vkey !== 'string') throw bad('no verifier key');
  // name+hash+key: the key's base64 may hold "+" too.
  const m = /^([^+]*)\+([^+]*)\+(.*)$/s.exec(vkey.trim());
  if (!m || !/^[0-9a-f]{8}$/i.test(m[2]) || !validName(m[1])) throw bad(`malformed verifier key ${JSON.stringify(vkey)}`);
  const [, name, hash16, key64] = m;
  let key;
  try {
    key = fromB64(key64);
  } catch {
    throw bad('malformed verifier key: its key is not base64');
  }
  if (key.length !== 33 || key[0] !== ALG_ED25519) throw bad('verifier key: not an Ed25519 key');
  const hash = parseInt(hash16, 16) >>> 0;
  if (hash !== (await keyHash(name, key))) throw bad('verifier key: its hash does not match its key');
  return { name, hash, key: key.subarray(1), text: vkey.trim() };
}

// parseNote splits a signed note as note.Open does: its text (ending in a
// newline), a blank line, then signature lines "— name base64(hash‖sig)".
export function parseNote(msg) {
  if (typeof msg !== 'string') throw bad('not a note');
  if (utf8(msg).length > MAX_CHECKPOINT) throw bad(`a checkpoint longer than ${MAX_CHECKPOINT} bytes`);
  // Valid UTF-8, no control characters but newlines.
  if (/[\x00-\x09\x0b-\x1f]/.test(msg) || /[\uD800-\uDFFF]/.test(msg.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''))) throw bad('malformed note');
  const split = msg.lastIndexOf('\n\n');
  if (split < 0) throw bad('malformed note: no signatures');
  const text = msg.slice(0, split + 1);
  let rest = msg.slice(split + 2);
  if (rest === '' || !rest.endsWith('\n')) throw bad('malformed note: no signatures');
  const sigs = [];
  while (rest !== '') {
    const i = rest.indexOf('\n');
    let line = rest.slice(0, i);
    rest = rest.slice(i + 1);
    if (!line.startsWith(SIG_PREFIX)) throw bad('malformed note: a line that is not a signature');
    line = line.slice(SIG_PREFIX.length);
    const sp = line.indexOf(' ');
    const name = sp < 0 ? line : line.slice(0, sp);
    const enc = sp < 0 ? '' : line.slice(sp + 1);
    let raw;
    try {
      raw = fromB64(enc);
    } catch {
      raw = null;
    }
    if (!raw || !validName(name) || enc === '' || raw.length < 5) throw bad('malformed note: a bad signature line');
    if (sigs.length >= 100) throw bad('malformed note: too many signatures');
    sigs.push({ name, hash: u32(raw), sig: raw.subarray(4), line });
  }
  return { text, sigs };
}

// verifyNote checks that the note carries a valid signature by v (same
// name and key hash), as note.Open with v among its verifiers: the first
// signature under v's name and hash must verify (note drops repeats).
export async function verifyNote(msg, v) {
  const n = parseNote(msg);
  const s = n.sigs.find((x) => x.name === v.name && x.hash === v.hash);
  if (!s) throw bad(`not signed by ${v.name}`);
  const key = await crypto.subtle.importKey('raw', v.key, { name: 'Ed25519' }, false, ['verify']);
  if (s.sig.length !== 64 || !(await crypto.subtle.verify({ name: 'Ed25519' }, key, s.sig, utf8(n.text)))) {
    throw bad(`invalid signature for key ${v.name}+${v.hash.toString(16).padStart(8, '0')}`);
  }
  return n;
}

// checkpointText is a checkpoint's note body (audit.Checkpoint.Text).
export function checkpointText(c) {
  return `${c.origin}\n${c.size}\n${b64(c.root)}\n`;
}

// parseCheckpoint reads a checkpoint body as strictly as
// audit.ParseCheckpoint: three lines, no extensions, no leading zeros,
// canonical base64, so one tree head has one text.
export function parseCheckpoint(body) {
  const lines = String(body).split('\n');
  if (lines.length !== 4 || lines[3] !== '') throw bad('want three lines (origin, size, root hash)');
  const origin = lines[0];
  if (origin === '' || /[ \t+]/.test(origin)) throw bad(`origin ${JSON.stringify(origin)}`);
  if (!/^(0|[1-9][0-9]{0,15})$/.test(lines[1]) || !Number.isSafeInteger(Number(lines[1]))) throw bad(`size ${JSON.stringify(lines[1])}`);
  const size = Number(lines[1]);
  let root;
  try {
    root = fromB64(lines[2]);
  } catch {
    root = null;
  }
  if (!root || root.length !== HASH_SIZE) throw bad(`root hash ${JSON.stringify(lines[2])}`);
  const c = { origin, size, root };
  if (checkpointText(c) !== body) throw bad('not in canonical form');
  return c;
}

// openCheckpoint checks a signed checkpoint against the log's verifier
// (parseVerifier) and reads it, as audit.OpenCheckpoint: signed by the
// log's key under its name, which must be the checkpoint's origin.
// note is the signed text itself, kept to be handed on.
export async function openCheckpoint(note, v) {
  const n = await verifyNote(note, v);
  const c = parseCheckpoint(n.text);
  if (c.origin !== v.name) throw bad(`checkpoint of ${JSON.stringify(c.origin)} signed as ${JSON.stringify(v.name)}`);
  return { ...c, note };
}

// leafHash is RFC 6962's SHA-256(0x00‖leaf) (tlog.RecordHash).
export function leafHash(leaf) {
  return sha256(new Uint8Array([0]), leaf);
}

// nodeHash is RFC 6962's SHA-256(0x01‖left‖right) (tlog.NodeHash).
export function nodeHash(left, right) {
  return sha256(new Uint8Array([1]), left, right);
}

// maxpow2 is the largest power of two below n (n ≥ 2), as tlog's.
function maxpow2(n) {
  let k = 1;
  while (k * 2 < n) k *= 2;
  return k;
}

const proofFailed = () => new Error('invalid proof');

async function runRecordProof(p, lo, hi, n, leaf) {
  if (lo + 1 === hi) {
    if (p.length !== 0) throw proofFailed();
    return leaf;
  }
  if (p.length === 0) throw proofFailed();
  const k = maxpow2(hi - lo);
  const last = p[p.length - 1];
  if (n < lo + k) return nodeHash(await runRecordProof(p.slice(0, -1), lo, lo + k, n, leaf), last);
  return nodeHash(last, await runRecordProof(p.slice(0, -1), lo + k, hi, n, leaf));
}

// checkRecord is tlog.CheckRecord: proof p shows that leaf hash h is
// record n of the tree of size t with hash th.
export async function checkRecord(p, t, th, n, h) {
  if (!(t >= 0 && n >= 0 && n < t)) throw new Error('invalid inputs in checkRecord');
  if (!equal(await runRecordProof(p, 0, t, n, h), th)) throw proofFailed();
}

async function runTreeProof(p, lo, hi, n, old) {
  if (n === hi) {
    if (lo === 0) {
      if (p.length !== 0) throw proofFailed();
      return [old, old];
    }
    if (p.length !== 1) throw proofFailed();
    return [p[0], p[0]];
  }
  if (p.length === 0) throw proofFailed();
  const k = maxpow2(hi - lo);
  const last = p[p.length - 1];
  if (n <= lo + k) {
    const [oh, th] = await runTreeProof(p.slice(0, -1), lo, lo + k, n, old);
    return [oh, await nodeHash(th, last)];
  }
  const [oh, th] = await runTreeProof(p.slice(0, -1), lo + k, hi, n, old);
  return [await nodeHash(last, oh), await nodeHash(last, th)];
}

// checkTree is tlog.CheckTree: proof p shows that the tree of size n with
// hash h is a prefix of the tree of size t with hash th.
export async function checkTree(p, t, th, n, h) {
  if (!(t >= 1 && n >= 1 && n <= t)) throw new Error('invalid inputs in checkTree');
  const [h2, th2] = await runTreeProof(p, 0, t, n, h);
  if (!equal(th2, th) || !equal(h2, h)) throw proofFailed();
}

// proofHashes reads a proof's hashes as the API spells them (tlog.Hash's
// JSON: standard base64 of 32 bytes).
export function proofHashes(list) {
  if (!Array.isArray(list)) throw new Error('a proof is a list of hashes');
  return list.map((s) => {
    const h = fromB64(s);
    if (h.length !== HASH_SIZE) throw new Error('a proof hash is not 32 bytes');
    return h;
  });
}

// checkInclusion is audit.CheckInclusion: leaf (bytes) is entry index of
// the tree checkpoint cp names.
export async function checkInclusion(cp, index, leaf, proof) {
  if (!(index >= 0 && index < cp.size)) throw new AuditError('not_included', `entry ${index} is not in a tree of size ${cp.size}`);
  try {
    await checkRecord(proof, cp.size, cp.root, index, await leafHash(leaf));
  } catch (err) {
    throw new AuditError('not_included', `entry ${index} is not in the tree of size ${cp.size}: ${err.message}`);
  }
}

// checkConsistency is audit.CheckConsistency: next extends old, the same
// log grown. Two checkpoints of one size must be identical; a smaller
// next is a log that lost entries.
export async function checkConsistency(old, next, proof) {
  const inc = (m) => new AuditError('inconsistent', m);
  if (old.origin !== next.origin) throw inc(`checkpoints of two logs (${old.origin} and ${next.origin})`);
  if (next.size < old.size) throw inc(`the log has ${next.size} entries, fewer than the ${old.size} of an earlier checkpoint (entries removed, or the log rebuilt)`);
  if (next.size === old.size) {
    if (!equal(next.root, old.root)) throw inc(`two different trees of size ${old.size} (a forked or rewritten log)`);
    return;
  }
  if (old.size === 0) return;
  try {
    await checkTree(proof, next.size, next.root, old.size, old.root);
  } catch (err) {
    throw inc(`the tree of size ${next.size} does not extend the one of size ${old.size} (a forked or rewritten log): ${err.message}`);
  }
}

// jsonString is s as Go's encoding/json writes a string with HTML
// escaping off: \" \\ \b \f \n \r \t, other control characters as \u00xx,
// U+2028 and U+2029 escaped, invalid UTF-16 (a lone surrogate, which
// Go's decoder would have made U+FFFD) as U+FFFD, nothing else.
export function jsonString(s) {
  let out = '"';
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        out += s[i] + s[i + 1];
        i++;
        continue;
      }
    }
    if (c >= 0xd800 && c <= 0xdfff) out += '\ufffd';
    else if (c === 0x22) out += '\\"';
    else if (c === 0x5c) out += '\\\\';
    else if (c < 0x20) {
      const named = { 8: '\\b', 9: '\\t', 10: '\\n', 12: '\\f', 13: '\\r' }[c];
      out += named ?? `\\u00${c.toString(16).padStart(2, '0')}`;
    } else if (c === 0x2028 || c === 0x2029) out += `\\u${c.toString(16)}`;
    else out += s[i];
  }
  return out + '"';
}

function jsonInt(n) {
  if (!Number.isSafeInteger(n)) throw new Error(`not an integer: ${n}`);
  return String(n);
}

// entryJSON is the line audit.LeafData writes for an entry as the API
// gave it (field order and omitempty of audit.Entry; the time string as
// received, which is how Go wrote it).
export function entryJSON(e) {
  const str = (v) => jsonString(typeof v === 'string' ? v : '');
  let out = `{"seq":${jsonInt(e.seq ?? 0)},"index":${jsonInt(e.index ?? 0)},"time":${str(e.time)},"kind":${str(e.kind)},"meeting":${str(e.meeting)}`;
  for (const [k, v] of [['participant', e.participant], ['node', e.node], ['node_country', e.node_country], ['policy_hash', e.policy_hash], ['reason', e.reason]]) {
    if (typeof v === 'string' && v !== '') out += `,"${k}":${str(v)}`;
  }
  return `${out},"prev_hash":${str(e.prev_hash)},"hash":${str(e.hash)},"sig":${str(e.sig)}}`;
}

// leafData is the entry's Merkle leaf (audit.LeafData).
export function leafData(e) {
  return utf8(entryJSON(e));
}

// GENESIS_HASH is the prev_hash of the first entry of every chain.
export const GENESIS_HASH = '0'.repeat(64);
const ENTRY_DOMAIN = 'oakmeet-audit-entry/2';

// goTime is the time string audit's entry digest hashes for the time the
// JSON carries: Go's RFC3339Nano of the instant in UTC (no trailing zeros
// in the fraction, none at all for whole seconds, "Z"). A sealed entry
// carries exactly that; another spelling of the same instant (an
// offset, zeros) is read as Go's time.Time.UnmarshalJSON reads it.
export function goTime(s) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d{1,9}))?(Z|([+-])(\d\d):(\d\d))$/.exec(typeof s === 'string' ? s : '');
  if (!m) throw new AuditError('entry', `time ${JSON.stringify(s)} is not RFC 3339`);
  const [, y, mo, d, hh, mi, ss, frac = '', zone, sign, oh, om] = m;
  const leap = Number(y) % 4 === 0 && (Number(y) % 100 !== 0 || Number(y) % 400 === 0);
  const monthDays = [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][Number(mo) - 1];
  if (Number(mo) < 1 || Number(mo) > 12 || Number(d) < 1 || Number(d) > monthDays || Number(hh) > 23 || Number(mi) > 59 || Number(ss) > 59 || (zone !== 'Z' && (Number(oh) > 23 || Number(om) > 59))) {
    throw new AuditError('entry', `time ${JSON.stringify(s)} is out of range`);
  }
  const t = new Date(0);
  t.setUTCFullYear(Number(y), Number(mo) - 1, Number(d));
  t.setUTCHours(Number(hh), Number(mi), Number(ss), 0);
  if (zone !== 'Z') t.setTime(t.getTime() - (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om)) * 60000);
  const year = t.getUTCFullYear();
  if (year < 0 || year > 9999) throw new AuditError('entry', `time ${JSON.stringify(s)} is out of range`);
  const p2 = (n) => String(n).padStart(2, '0');
  const f = frac.padEnd(9, '0').replace(/0+$/, '');
  return `${String(year).padStart(4, '0')}-${p2(t.getUTCMonth() + 1)}-${p2(t.getUTCDate())}T${p2(t.getUTCHours())}:${p2(t.getUTCMinutes())}:${p2(t.getUTCSeconds())}${f ? `.${f}` : ''}Z`;
}

function entryUint(n, what) {
  if (!Number.isSafeInteger(n) || n < 0) throw new AuditError('entry', `${what} ${JSON.stringify(n)} is not a whole number`);
  return u64(n);
}

// entryDigest is audit's entryDigest: SHA-256 of the encoding v2 of the
// entry (its domain, seq and index as 8-byte big-endian, then the time
// and each string field as an 8-byte length and its UTF-8). A lone
// surrogate is U+FFFD, as Go reads it.
export function entryDigest(e) {
  const field = (s) => {
    const b = utf8(typeof s === 'string' ? s : '');
    return concat(u64(b.length), b);
  };
  const parts = [field(ENTRY_DOMAIN), entryUint(e.seq, 'seq'), entryUint(e.index, 'index'), field(goTime(e.time))];
  for (const s of [e.kind, e.meeting, e.participant, e.node, e.node_country, e.policy_hash, e.reason, e.prev_hash]) parts.push(field(s));
  return sha256(...parts);
}

// entryKey imports the log's Ed25519 key (parseVerifier's) for checkEntry.
export function entryKey(v) {
  return crypto.subtle.importKey('raw', v.key, { name: 'Ed25519' }, false, ['verify']);
}

// checkEntry is audit's checkEntry: e follows prev ({seq, hash} of its
// chain's entry before, or null for the first) and is the entry the log's
// key (entryKey) signed: its hash is its digest in lowercase hex, its sig
// canonical base64 of an Ed25519 signature over the 32 digest bytes.
export async function checkEntry(key, e, prev) {
  const at = `entry ${e?.index} (seq ${e?.seq}) of meeting ${JSON.stringify(e?.meeting ?? '')}`;
  const wantSeq = (prev?.seq ?? 0) + 1;
  const wantPrev = prev ? prev.hash : GENESIS_HASH;
  if (e?.seq !== wantSeq) throw new AuditError('chain', `${at}: seq ${e?.seq} follows seq ${prev?.seq ?? 0} in this chain (removed, reordered or inserted entry)`);
  if (e.prev_hash !== wantPrev) throw new AuditError('chain', `${at}: prev_hash does not match the previous entry of this chain`);
  if (typeof e.hash !== 'string' || !/^[0-9a-f]{64}$/.test(e.hash)) throw new AuditError('entry', `${at}: hash is not 64 lowercase hex digits`);
  const sum = await entryDigest(e);
  if (hex(sum) !== e.hash) throw new AuditError('entry', `${at}: hash does not match the entry's content (edited entry)`);
  let sig = null;
  try {
    if (typeof e.sig === 'string') sig = fromB64(e.sig);
  } catch {
    sig = null;
  }
  if (!sig || sig.length !== 64 || b64(sig) !== e.sig) throw new AuditError('entry', `${at}: sig is not a base64 Ed25519 signature`);
  if (!(await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, sum))) throw new AuditError('entry', `${at}: signature does not verify with the log key`);
}
