// HPKE (RFC 9180) for the one suite oakmeet seals epoch secrets with: base
// mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-128-GCM, single shot
// (sequence number 0). Written out step by step on WebCrypto, as
// docs/E2EE.md §8.5 lists the steps.

import { concat, EMPTY, u16, utf8 } from './bytes.js';
import { expand, extract } from './hkdf.js';

const subtle = crypto.subtle;

const SUITE_KEM = concat(utf8('KEM'), u16(0x0020));
const SUITE = concat(utf8('HPKE'), u16(0x0020), u16(0x0001), u16(0x0001));
const V1 = utf8('HPKE-v1');

export const ENC_SIZE = 32;
const NK = 16, NN = 12, NT = 16;

function labeledExtract(sid, salt, label, ikm) {
  return extract(salt, concat(V1, sid, utf8(label), ikm));
}

function labeledExpand(sid, prk, label, info, length) {
  return expand(prk, concat(u16(length), V1, sid, utf8(label), info), length);
}

// X25519 private keys import as PKCS#8 (RFC 8410).
const X25519_PKCS8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);

export function importPrivateKey(raw, extractable = false) {
  return subtle.importKey('pkcs8', concat(X25519_PKCS8, raw), { name: 'X25519' }, extractable, ['deriveBits']);
}

export function importPublicKey(raw) {
  return subtle.importKey('raw', raw, { name: 'X25519' }, true, []);
}

// generateKeyPair returns a fresh key pair: the private key stays inside
// WebCrypto (not extractable), the public key as its 32 raw bytes.
export async function generateKeyPair() {
  const kp = await subtle.generateKey({ name: 'X25519' }, false, ['deriveBits']);
  const pub = new Uint8Array(await subtle.exportKey('raw', kp.publicKey));
  return { privateKey: kp.privateKey, publicKey: pub };
}

// dh is X25519; WebCrypto refuses (and we check again) an all-zero result,
// which a public key of low order gives.
export async function dh(privateKey, publicRaw) {
  const pub = await importPublicKey(publicRaw);
  const out = new Uint8Array(await subtle.deriveBits({ name: 'X25519', public: pub }, privateKey, 256));
  if (out.every((b) => b === 0)) throw new Error('hpke: X25519 result is zero');
  return out;
}

async function extractAndExpand(dhOut, kemContext) {
  const eaePrk = await labeledExtract(SUITE_KEM, EMPTY, 'eae_prk', dhOut);
  return labeledExpand(SUITE_KEM, eaePrk, 'shared_secret', kemContext, 32);
}

// keySchedule is RFC 9180 §5.1 for base mode; it returns the intermediate
// values too, for the test vectors.
export async function keySchedule(sharedSecret, info) {
  const pskIDHash = await labeledExtract(SUITE, EMPTY, 'psk_id_hash', EMPTY);
  const infoHash = await labeledExtract(SUITE, EMPTY, 'info_hash', info);
  const context = concat(new Uint8Array([0x00]), pskIDHash, infoHash);
  const secret = await labeledExtract(SUITE, sharedSecret, 'secret', EMPTY);
  const key = await labeledExpand(SUITE, secret, 'key', context, NK);
  const baseNonce = await labeledExpand(SUITE, secret, 'base_nonce', context, NN);
  return { context, secret, key, baseNonce };
}

// encap makes the shared secret for pkR. ephemeral ({privateKey,
// publicKey}) is for test vectors; normally a fresh pair is made.
export async function encap(pkR, ephemeral) {
  const eph = ephemeral ?? (await generateKeyPair());
  const dhOut = await dh(eph.privateKey, pkR);
  const enc = eph.publicKey;
  return { enc, sharedSecret: await extractAndExpand(dhOut, concat(enc, pkR)) };
}

export async function decap(enc, skR, pkR) {
  return extractAndExpand(await dh(skR, enc), concat(enc, pkR));
}

async function aesGCM(op, key, nonce, aad, data) {
  const k = await subtle.importKey('raw', key, 'AES-GCM', false, [op]);
  return new Uint8Array(await subtle[op]({ name: 'AES-GCM', iv: nonce, additionalData: aad, tagLength: 8 * NT }, k, data));
}

// seal returns enc ‖ ciphertext ‖ tag.
export async function seal(pkR, info, plaintext, aad = EMPTY, ephemeral = undefined) {
  const { enc, sharedSecret } = await encap(pkR, ephemeral);
  const { key, baseNonce } = await keySchedule(sharedSecret, info);
  return concat(enc, await aesGCM('encrypt', key, baseNonce, aad, plaintext));
}

// open takes the recipient's private key and its public key's raw bytes
// (the KEM context needs them).
export async function open(skR, pkR, info, sealed, aad = EMPTY) {
  if (sealed.length < ENC_SIZE + NT) throw new Error('hpke: sealed message too short');
  const enc = sealed.subarray(0, ENC_SIZE);
  const sharedSecret = await decap(enc, skR, pkR);
  const { key, baseNonce } = await keySchedule(sharedSecret, info);
  try {
    return await aesGCM('decrypt', key, baseNonce, aad, sealed.subarray(ENC_SIZE));
  } catch {
    throw new Error('hpke: open failed');
  }
}
