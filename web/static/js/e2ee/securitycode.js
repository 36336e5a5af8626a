// The security code people compare (docs/E2EE.md §7): 40 digits in eight
// groups of five, a hash of the meeting id, the meeting's policy hash and
// every roster entry's participant id, display name, identity key and HPKE
// key — so that equal codes also mean equal names and equal routing rules.

import { concat, lp16, u16, utf8 } from './bytes.js';
import { sha256 } from './hkdf.js';

const LABEL = 'oakmeet-e2ee-v2 security code';

// Bytewise order of the UTF-8, as Go's strings.Compare orders.
export function compareUTF8(a, b) {
  const x = utf8(a), y = utf8(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

// securityCode takes the roster's entries ({participant, name, identity,
// hpke}) in any order; policyHash is the host-signed effective policy hash
// ('' where the meeting has none).
export async function securityCode(meeting, roster, policyHash = '') {
  const sorted = [...roster].sort((a, b) => compareUTF8(a.participant, b.participant));
  const parts = [utf8(LABEL), new Uint8Array([0]), lp16(meeting), lp16(policyHash), u16(sorted.length)];
  for (const e of sorted) parts.push(lp16(e.participant), lp16(e.name ?? ''), e.identity, e.hpke);
  const h = await sha256(concat(...parts));
  const view = new DataView(h.buffer);
  const groups = [];
  for (let k = 0; k < 8; k++) groups.push(String(view.getUint32(4 * k) % 100000).padStart(5, '0'));
  return groups.join(' ');
}
