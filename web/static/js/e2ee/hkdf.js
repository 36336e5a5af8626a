// HKDF with SHA-256 (RFC 5869) on WebCrypto. WebCrypto's own HKDF only does
// Extract-then-Expand in one step, which is what SFrame and the per-sender
// keys need; HPKE's labelled functions need the two halves separately, so
// they are built from HMAC here (docs/E2EE.md §10).

import { concat, EMPTY } from './bytes.js';

const subtle = crypto.subtle;
// An empty HMAC key is the same key as HashLen zero bytes, and WebCrypto
// refuses zero-length HMAC keys.
const ZERO_KEY = new Uint8Array(32);

export async function hmac(key, data) {
  const k = await subtle.importKey('raw', key.length ? key : ZERO_KEY, { name: 'HMAC', hash: 'SHA-256' }, false, ['sign']);
  return new Uint8Array(await subtle.sign('HMAC', k, data));
}

export function extract(salt, ikm) {
  return hmac(salt, ikm);
}

export async function expand(prk, info, length) {
  if (length > 255 * 32) throw new Error('hkdf: output too long');
  const out = new Uint8Array(length);
  let t = EMPTY;
  for (let i = 1, off = 0; off < length; i++) {
    t = await hmac(prk, concat(t, info, new Uint8Array([i])));
    out.set(t.subarray(0, Math.min(32, length - off)), off);
    off += 32;
  }
  return out;
}

// hkdf is Extract (with salt, empty by default) then Expand.
export async function hkdf(ikm, info, length, salt = EMPTY) {
  const k = await subtle.importKey('raw', ikm, 'HKDF', false, ['deriveBits']);
  return new Uint8Array(await subtle.deriveBits({ name: 'HKDF', hash: 'SHA-256', salt, info }, k, 8 * length));
}

export async function sha256(data) {
  return new Uint8Array(await subtle.digest('SHA-256', data));
}
