// SFrame (RFC 9605) with the one cipher suite oakmeet uses,
// AES_128_GCM_SHA256_128 (0x0004), and the codec-aware clear prefix of
// docs/E2EE.md §3. Runs in the page and in the media Worker: no DOM here.
// KIDs and CTRs are BigInts (they are 64-bit values).

import { concat, u16, u64, utf8 } from './bytes.js';
import { hkdf } from './hkdf.js';

export const SUITE = 0x0004;
const NK = 16, NN = 12, NT = 16;
export const REPLAY_WINDOW = 1024;

// Errors, by the name the stats count them under.
export class SFrameError extends Error {
  constructor(reason, message) {
    super(message ?? reason);
    this.reason = reason;
  }
}

function fieldLen(v) {
  if (v < 8n) return 0;
  let n = 0;
  for (let x = v; x > 0n; x >>= 8n) n++;
  return n;
}

function putBE(out, off, v, n) {
  for (let i = n - 1; i >= 0; i--) {
    out[off + i] = Number(v & 0xffn);
    v >>= 8n;
  }
}

// encodeHeader is the minimal encoding of (kid, ctr) (RFC 9605 §4.3).
export function encodeHeader(kid, ctr) {
  kid = BigInt(kid);
  ctr = BigInt(ctr);
  const kl = fieldLen(kid), cl = fieldLen(ctr);
  const out = new Uint8Array(1 + kl + cl);
  let config = kl === 0 ? Number(kid) << 4 : 0x80 | ((kl - 1) << 4);
  config |= cl === 0 ? Number(ctr) : 0x08 | (cl - 1);
  out[0] = config;
  putBE(out, 1, kid, kl);
  putBE(out, 1 + kl, ctr, cl);
  return out;
}

function readField(b, off, l) {
  if (b.length - off < l) throw new SFrameError('malformed', 'sframe: truncated header');
  let v = 0n;
  for (let i = 0; i < l; i++) v = (v << 8n) | BigInt(b[off + i]);
  if (fieldLen(v) !== l) throw new SFrameError('malformed', 'sframe: header not minimally encoded');
  return v;
}

// parseHeader returns {kid, ctr, length}; headers that are not minimally
// encoded are refused, so each header has exactly one encoding.
export function parseHeader(b) {
  if (b.length === 0) throw new SFrameError('malformed', 'sframe: truncated header');
  const config = b[0];
  let n = 1, kid, ctr;
  if ((config & 0x80) === 0) {
    kid = BigInt((config >> 4) & 0x07);
  } else {
    const l = ((config >> 4) & 0x07) + 1;
    kid = readField(b, n, l);
    n += l;
  }
  if ((config & 0x08) === 0) {
    ctr = BigInt(config & 0x07);
  } else {
    const l = (config & 0x07) + 1;
    ctr = readField(b, n, l);
    n += l;
  }
  return { kid, ctr, length: n };
}

// deriveKeySalt is RFC 9605 §4.4.2 for the suite: the key and salt of kid
// from a base key. It returns the raw key too, for test vectors.
export async function deriveKeySalt(baseKey, kid) {
  const tail = concat(u64(BigInt(kid)), u16(SUITE));
  const rawKey = await hkdf(baseKey, concat(utf8('SFrame 1.0 Secret key '), tail), NK);
  const salt = await hkdf(baseKey, concat(utf8('SFrame 1.0 Secret salt '), tail), NN);
  const key = await crypto.subtle.importKey('raw', rawKey, 'AES-GCM', false, ['encrypt', 'decrypt']);
  return { key, salt, rawKey };
}

export function nonce(salt, ctr) {
  const out = salt.slice();
  const c = u64(ctr);
  for (let i = 0; i < 8; i++) out[NN - 8 + i] ^= c[i];
  return out;
}

// Sender encrypts under one KID; its counter is shared by every track of
// the sender (audio and video), so one Sender serves them all.
export class Sender {
  static async create(kid, baseKey) {
    const s = new Sender();
    s.kid = BigInt(kid);
    s.ctr = 0n;
    Object.assign(s, await deriveKeySalt(baseKey, kid));
    return s;
  }

  // encrypt returns header ‖ ciphertext ‖ tag, with metadata authenticated.
  async encrypt(metadata, plaintext) {
    if (this.ctr >= 0xffffffffffffffffn) throw new SFrameError('exhausted', 'sframe: counter exhausted');
    const ctr = this.ctr++;
    const header = encodeHeader(this.kid, ctr);
    const ct = await crypto.subtle.encrypt(
      { name: 'AES-GCM', iv: nonce(this.salt, ctr), additionalData: concat(header, metadata), tagLength: 8 * NT },
      this.key, plaintext);
    return concat(header, new Uint8Array(ct));
  }
}

// ReplayWindow accepts a counter at most once, and only within
// REPLAY_WINDOW of the highest accepted one.
class ReplayWindow {
  constructor() {
    this.top = -1n;
    this.seen = new Uint8Array(REPLAY_WINDOW);
  }

  fresh(ctr) {
    if (this.top < 0n || ctr > this.top) return true;
    if (this.top - ctr >= BigInt(REPLAY_WINDOW)) return false;
    return this.seen[Number(ctr % BigInt(REPLAY_WINDOW))] === 0;
  }

  accept(ctr) {
    const W = BigInt(REPLAY_WINDOW);
    if (this.top < 0n) {
      this.top = ctr;
    } else if (ctr > this.top) {
      if (ctr - this.top >= W) this.seen.fill(0);
      else for (let v = this.top + 1n; v < ctr; v++) this.seen[Number(v % W)] = 0;
      this.top = ctr;
    }
    this.seen[Number(ctr % W)] = 1;
  }
}

// Receiver decrypts frames under any KID it holds a key for.
export class Receiver {
  constructor() {
    this.keys = new Map(); // kid (BigInt) -> {key, salt, window}
  }

  async addKey(kid, baseKey) {
    const k = await deriveKeySalt(baseKey, kid);
    this.keys.set(BigInt(kid), { key: k.key, salt: k.salt, window: new ReplayWindow() });
  }

  removeKey(kid) {
    this.keys.delete(BigInt(kid));
  }

  hasKey(kid) {
    return this.keys.has(BigInt(kid));
  }

  // decrypt checks header ‖ ciphertext ‖ tag against metadata and returns
  // {plaintext, kid}; failures throw an SFrameError whose reason is
  // malformed, noKey, replay or auth.
  async decrypt(metadata, frame) {
    const h = parseHeader(frame);
    const k = this.keys.get(h.kid);
    if (!k) throw new SFrameError('noKey', 'sframe: unknown KID');
    if (frame.length - h.length < NT) throw new SFrameError('malformed', 'sframe: truncated');
    if (!k.window.fresh(h.ctr)) throw new SFrameError('replay', 'sframe: replayed frame');
    const header = frame.subarray(0, h.length);
    let pt;
    try {
      pt = await crypto.subtle.decrypt(
        { name: 'AES-GCM', iv: nonce(k.salt, h.ctr), additionalData: concat(header, metadata), tagLength: 8 * NT },
        k.key, frame.subarray(h.length));
    } catch {
      throw new SFrameError('auth', 'sframe: authentication failed');
    }
    // The key may have been replaced while this frame was decrypting.
    if (this.keys.get(h.kid) === k) k.window.accept(h.ctr);
    return { plaintext: new Uint8Array(pt), kid: h.kid };
  }
}

// Codecs with a clear prefix (docs/E2EE.md §3.2).
export const VP8 = 'vp8', OPUS = 'opus', OTHER = 'other';

// prefixLen is how many leading bytes of a frame stay clear: a VP8 key
// frame's 10 header bytes, a VP8 inter frame's 3-byte tag, Opus's TOC byte.
export function prefixLen(codec, frame) {
  switch (codec) {
    case VP8: return frame.length > 0 && (frame[0] & 0x01) === 0 ? 10 : 3;
    case OPUS: return 1;
    default: return 0;
  }
}

// protect is clear prefix ‖ SFrame of the rest, the prefix as metadata.
export async function protect(sender, codec, frame) {
  const n = prefixLen(codec, frame);
  if (frame.length < n) throw new SFrameError('short', 'mediaframe: frame shorter than its clear prefix');
  const prefix = frame.subarray(0, n);
  return concat(prefix, await sender.encrypt(prefix, frame.subarray(n)));
}

export async function unprotect(receiver, codec, frame) {
  const n = prefixLen(codec, frame);
  if (frame.length < n) throw new SFrameError('short', 'mediaframe: frame shorter than its clear prefix');
  const prefix = frame.subarray(0, n);
  const { plaintext, kid } = await receiver.decrypt(prefix, frame.subarray(n));
  return { frame: concat(prefix, plaintext), kid };
}
