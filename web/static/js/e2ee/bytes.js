// Byte helpers shared by the end-to-end encryption modules: the big-endian
// integers, length-prefixed strings and base64 that docs/E2EE.md's byte
// formats are built from.

const encoder = new TextEncoder();

export const EMPTY = new Uint8Array(0);

export function utf8(s) {
  return encoder.encode(s);
}

export function concat(...parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

export function u16(n) {
  return new Uint8Array([(n >>> 8) & 0xff, n & 0xff]);
}

// u64 takes a number (an exact integer) or a BigInt.
export function u64(n) {
  const out = new Uint8Array(8);
  new DataView(out.buffer).setBigUint64(0, BigInt(n));
  return out;
}

// lp16 is a 2-byte big-endian length followed by the UTF-8 of s.
export function lp16(s) {
  const b = utf8(s);
  return concat(u16(b.length), b);
}

export function equal(a, b) {
  if (!a || !b || a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i] ^ b[i];
  return d === 0;
}

export function hex(b) {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(s) {
  if (s.length % 2 !== 0 || /[^0-9a-fA-F]/.test(s)) throw new Error('bad hex');
  const out = new Uint8Array(s.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(s.substr(2 * i, 2), 16);
  return out;
}

// b64 is standard base64 with padding (RFC 4648 §4), as Go's
// base64.StdEncoding writes it.
export function b64(b) {
  let s = '';
  for (let i = 0; i < b.length; i += 0x8000) s += String.fromCharCode(...b.subarray(i, i + 0x8000));
  return btoa(s);
}

// fromB64 refuses anything but canonical padded standard base64, as Go's
// strict decoder does: the same value must not have two spellings.
export function fromB64(s) {
  if (typeof s !== 'string' || s.length % 4 !== 0 || /[^A-Za-z0-9+/=]/.test(s)) throw new Error('bad base64');
  let bin;
  try {
    bin = atob(s);
  } catch {
    throw new Error('bad base64');
  }
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  if (b64(out) !== s) throw new Error('non-canonical base64');
  return out;
}

// isUTF8 reports whether b decodes as UTF-8 without replacement.
export function isUTF8(s) {
  return typeof s === 'string' && !/[\uD800-\uDFFF]/.test(s.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, ''));
}
