// A participant's long-lived Ed25519 identity key. In the browser it is
// made once, kept in IndexedDB as a non-extractable CryptoKey (the page can
// sign with it but never read it), and reused across meetings, so people
// who compare security codes regularly see a stable identity.

import { concat, fromB64 } from './bytes.js';
import { openDB as open, tx } from '../keystore.js';

const subtle = crypto.subtle;
const ED25519_PKCS8 = new Uint8Array([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20]);

export class Identity {
  constructor(privateKey, publicKey) {
    this.privateKey = privateKey; // CryptoKey
    this.publicKey = publicKey; // 32 raw bytes
  }

  static async generate() {
    const kp = await subtle.generateKey({ name: 'Ed25519' }, false, ['sign', 'verify']);
    return new Identity(kp.privateKey, new Uint8Array(await subtle.exportKey('raw', kp.publicKey)));
  }

  // fromSeed imports an RFC 8032 seed (test vectors, or a key moved from
  // the Go client's text form). The public key is read back through JWK,
  // then the private key is imported again as non-extractable.
  static async fromSeed(seed) {
    const pkcs8 = concat(ED25519_PKCS8, seed);
    const tmp = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, true, ['sign']);
    const jwk = await subtle.exportKey('jwk', tmp);
    const pub = fromB64(jwk.x.replace(/-/g, '+').replace(/_/g, '/') + '=');
    const priv = await subtle.importKey('pkcs8', pkcs8, { name: 'Ed25519' }, false, ['sign']);
    return new Identity(priv, pub);
  }

  async sign(data) {
    return new Uint8Array(await subtle.sign({ name: 'Ed25519' }, this.privateKey, data));
  }
}

export async function verify(publicKey, data, signature) {
  try {
    const k = await subtle.importKey('raw', publicKey, { name: 'Ed25519' }, false, ['verify']);
    return await subtle.verify({ name: 'Ed25519' }, k, signature, data);
  } catch {
    return false;
  }
}

const DB = 'oakmeet', KEY = 'identity';

// loadIdentity returns the identity kept in this browser, making and
// storing one the first time. Where IndexedDB is unavailable (private
// windows of some browsers) the identity lives for this page only.
export async function loadIdentity() {
  let db;
  try {
    db = await open(DB);
    const stored = await tx(db, 'readonly', (s) => s.get(KEY));
    if (stored?.privateKey && stored.publicKey?.length === 32) {
      return new Identity(stored.privateKey, new Uint8Array(stored.publicKey));
    }
  } catch {
    db = null;
  }
  const id = await Identity.generate();
  if (db) {
    try {
      await tx(db, 'readwrite', (s) => s.put({ privateKey: id.privateKey, publicKey: id.publicKey }, KEY));
    } catch {
      // Not persisted: a fresh identity next time, which is safe.
    }
  }
  db?.close();
  return id;
}
