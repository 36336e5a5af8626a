// Node certificates (the Go package nodecert, docs in nodecert/doc.go),
// checked in the browser: the deployment's enrollment authority signs, for
// each media node, its id, the country and region it runs in and its
// Ed25519 identity key. A member checks the certificate of the node it is
// placed on against the enrollment key of the host-signed policy, and each
// offer and answer that node sends against the certified identity key
// (nodecert.SDPTBS): the control plane's word on where a node is does not
// count, the host's policy and the authority's signature do.
//
// Envelope: TAG "." B64URL(payload) "." B64URL(sig), unpadded base64url,
// one encoding only; sig is Ed25519 over TAG "\n" payload; payload is
// canonical JSON (keys sorted, no whitespace, no escapes).

import { concat, equal, fromB64, hex, u16, utf8 } from './e2ee/bytes.js';

export const CERT_TAG = 'oakmeet-node-cert-v1';
const SDP_LABEL = 'oakmeet-node-sdp-v1';
const MAX_CERT_LEN = 2048;
// A certificate's not_before may be this far ahead of the verifier's
// clock (nodecert.MaxClockSkew); not_after is never stretched.
export const MAX_CLOCK_SKEW_S = 5 * 60;
const MIN_UNIX = 1;
const MAX_UNIX = 253402300799;

// Why a certificate is refused.
export const MALFORMED = 'malformed';
export const WRONG_KEY = 'wrong_key';
export const BAD_SIGNATURE = 'bad_signature';
export const NOT_YET_VALID = 'not_yet_valid';
export const EXPIRED = 'expired';

export class CertError extends Error {
  constructor(reason, message) {
    super(message);
    this.reason = reason;
  }
}

const B64URL = /^[A-Za-z0-9_-]*$/;
const SAFE = /^[A-Za-z0-9_-]*$/;

// fromB64URL decodes unpadded base64url and insists it is the one encoding
// of its bytes (trailing bits zero).
export function fromB64URL(s) {
  if (typeof s !== 'string' || !B64URL.test(s) || s.length % 4 === 1) throw new Error('not base64url');
  const std = s.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (s.length % 4)) % 4);
  let out;
  try {
    out = fromB64(std);
  } catch {
    throw new Error('not canonical base64url');
  }
  if (toB64URL(out) !== s) throw new Error('not canonical base64url');
  return out;
}

export function toB64URL(b) {
  let s = '';
  for (const x of b) s += String.fromCharCode(x);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

// keyID is the id of an enrollment key that certificates name: hex of the
// first 16 bytes of SHA-256 of the raw key.
export async function keyID(pub) {
  return hex(new Uint8Array(await crypto.subtle.digest('SHA-256', pub)).subarray(0, 16));
}

const isHex = (s, n) => typeof s === 'string' && s.length === 2 * n && /^[0-9a-f]*$/.test(s);
const isTime = (t) => Number.isSafeInteger(t) && t >= MIN_UNIX && t <= MAX_UNIX;

// parseCert reads a certificate's text and checks its syntax and every
// field's rule, but not its signature or times (verifyCert does). It
// throws a CertError (reason MALFORMED).
export function parseCert(text) {
  const bad = (m) => new CertError(MALFORMED, `node certificate is malformed: ${m}`);
  if (typeof text !== 'string' || text.length === 0) throw bad('missing');
  if (text.length > MAX_CERT_LEN) throw bad(`${text.length} bytes, at most ${MAX_CERT_LEN}`);
  if (!text.startsWith(`${CERT_TAG}.`)) throw bad(`does not start with ${CERT_TAG}.`);
  const parts = text.slice(CERT_TAG.length + 1).split('.');
  if (parts.length !== 2) throw bad('not tag.payload.signature');
  let payload;
  let sig;
  try {
    payload = fromB64URL(parts[0]);
    sig = fromB64URL(parts[1]);
  } catch (err) {
    throw bad(err.message);
  }
  if (sig.length !== 64) throw bad('signature is not 64 bytes');
  let payloadText;
  let w;
  try {
    payloadText = new TextDecoder('utf-8', { fatal: true }).decode(payload);
    w = JSON.parse(payloadText);
  } catch {
    throw bad('payload is not JSON');
  }
  if (!w || typeof w !== 'object' || Array.isArray(w)) throw bad('payload is not an object');
  for (const k of ['country', 'enrollment_key', 'identity_key', 'node', 'region', 'serial']) {
    if (typeof w[k] !== 'string' || !SAFE.test(w[k])) throw bad(`${k} must be a string of [A-Za-z0-9_-]`);
  }
  // Canonical form: rebuilding the object in key order gives the bytes
  // back, which rules out unknown or duplicate keys, whitespace, escapes
  // and other number spellings.
  const canon = JSON.stringify({
    country: w.country, enrollment_key: w.enrollment_key, identity_key: w.identity_key, node: w.node,
    not_after: w.not_after, not_before: w.not_before, region: w.region, serial: w.serial,
  });
  if (canon !== payloadText) throw bad('payload is not in canonical form');
  if (w.node.length < 1 || w.node.length > 64) throw bad('node id must be 1-64 characters');
  if (!/^[A-Z]{2}$/.test(w.country)) throw bad('country is not an upper-case ISO 3166-1 alpha-2 code');
  if (w.region !== '' && !/^[a-z0-9][a-z0-9-]*$/.test(w.region)) throw bad('region is not a catalogue region id');
  let identityKey;
  try {
    identityKey = fromB64URL(w.identity_key);
  } catch {
    identityKey = null;
  }
  if (!identityKey || identityKey.length !== 32) throw bad('identity key is not 32 base64url bytes');
  if (!isHex(w.serial, 16)) throw bad('serial is not 32 lower-case hex digits');
  if (!isHex(w.enrollment_key, 16)) throw bad('enrollment key id is not 32 lower-case hex digits');
  if (!isTime(w.not_before) || !isTime(w.not_after)) throw bad('times out of range');
  if (w.not_after < w.not_before) throw bad('not_after is before not_before');
  return {
    node: w.node, country: w.country, region: w.region, serial: w.serial, identityKey,
    notBefore: w.not_before, notAfter: w.not_after, enrollmentKeyID: w.enrollment_key,
    payload, sig, text,
  };
}

// verifyCert resolves to the certificate if text is one signed by the
// 32-byte enrollment key and valid at nowS (Unix seconds); else it rejects
// with a CertError naming why.
export async function verifyCert(text, enrollmentKey, nowS = Date.now() / 1000) {
  const c = parseCert(text);
  if (!(enrollmentKey instanceof Uint8Array) || enrollmentKey.length !== 32) throw new CertError(WRONG_KEY, 'no enrollment key to check the node certificate with');
  const want = await keyID(enrollmentKey);
  if (c.enrollmentKeyID !== want) throw new CertError(WRONG_KEY, `node certificate names enrollment key ${c.enrollmentKeyID}, the host's policy names ${want}`);
  const key = await crypto.subtle.importKey('raw', enrollmentKey, { name: 'Ed25519' }, false, ['verify']);
  const ok = await crypto.subtle.verify({ name: 'Ed25519' }, key, c.sig, concat(utf8(`${CERT_TAG}\n`), c.payload));
  if (!ok) throw new CertError(BAD_SIGNATURE, 'node certificate signature does not verify');
  if (nowS < c.notBefore - MAX_CLOCK_SKEW_S) throw new CertError(NOT_YET_VALID, `node certificate is valid only from ${new Date(c.notBefore * 1000).toISOString()}`);
  if (nowS > c.notAfter) throw new CertError(EXPIRED, `node certificate expired at ${new Date(c.notAfter * 1000).toISOString()}`);
  return c;
}

function lp16Bytes(b) {
  return concat(u16(b.length), b);
}

// sdpTBS is what a node signs over each SDP it sends a participant:
// "oakmeet-node-sdp-v1" ‖ 0x00 ‖ lp16(meeting) ‖ lp16(participant) ‖
// lp16(nonce) ‖ lp16(kind) ‖ u32(len(sdp)) ‖ sdp, nonce as raw bytes.
export function sdpTBS(meeting, participant, nonce, kind, sdp) {
  const body = utf8(sdp);
  const len = new Uint8Array(4);
  new DataView(len.buffer).setUint32(0, body.length);
  return concat(utf8(SDP_LABEL), new Uint8Array([0]), lp16Bytes(utf8(meeting)), lp16Bytes(utf8(participant)),
    lp16Bytes(nonce), lp16Bytes(utf8(kind)), len, body);
}

// verifySDP resolves to true if sig is the node's signature (with its
// certified identity key) over an SDP of kind sent to participant.
export async function verifySDP(identityKey, sig, meeting, participant, nonce, kind, sdp) {
  if (!(identityKey instanceof Uint8Array) || identityKey.length !== 32 || !(sig instanceof Uint8Array) || sig.length !== 64) return false;
  try {
    const key = await crypto.subtle.importKey('raw', identityKey, { name: 'Ed25519' }, false, ['verify']);
    return await crypto.subtle.verify({ name: 'Ed25519' }, key, sig, sdpTBS(meeting, participant, nonce, kind, sdp));
  } catch {
    return false;
  }
}

// sameKey reports whether two raw keys are equal.
export function sameKey(a, b) {
  return equal(a, b);
}
