// The media Worker: every outgoing encoded frame is protected and every
// incoming one unprotected here (docs/E2EE.md §3–4), off the page's main
// thread. One Worker serves all of a participant's transforms, so its audio
// and video share one sender key and one counter, as the spec requires.
// A frame that cannot be protected or unprotected is dropped, never passed
// on in the clear.

import { OPUS, parseHeader, prefixLen, protect, Receiver, Sender, unprotect, VP8 } from './sframe.js';

let sender = null;
const receiver = new Receiver();
const transforms = new Map(); // id -> {options, stats, transformer}
// Whose key each KID is, and how many KIDs each participant has: a frame
// that arrives on one participant's track under another participant's KID
// is dropped for want of a key, never tried with the other's key. Two
// leaders that once minted one epoch number each (one alone, having heard
// nobody) give one KID two keys; a frame of the one is then no key at the
// other's members, not a failed authentication.
const owners = new Map(); // kid (BigInt) -> participant
const keyCount = new Map(); // participant -> KIDs held

function own(kid, participant) {
  disown(kid);
  owners.set(kid, participant);
  keyCount.set(participant, (keyCount.get(participant) ?? 0) + 1);
}

function disown(kid) {
  const p = owners.get(kid);
  if (p === undefined) return;
  owners.delete(kid);
  const n = keyCount.get(p) - 1;
  if (n > 0) keyCount.set(p, n);
  else keyCount.delete(p);
}

// foreign reports whether a protected frame on participant p's track names
// a KID this Worker holds as someone else's.
function foreign(codec, data, p) {
  if (!p || !keyCount.has(p)) return false;
  let kid;
  try {
    kid = parseHeader(data.subarray(prefixLen(codec, data))).kid;
  } catch {
    return false; // unprotect refuses it, and counts why
  }
  const owner = owners.get(kid);
  return owner !== undefined && owner !== p;
}
let keyQueue = Promise.resolve();

// Key changes are applied in order, and each waits for the derivation
// before the next, so a frame never sees half an epoch.
function keyOp(fn) {
  keyQueue = keyQueue.then(fn).catch(() => {});
}

self.onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case 'sender':
      // A null key stops sending: the sending epoch names a removed
      // participant, and nothing goes out until a newer one is committed.
      keyOp(async () => {
        sender = m.kid === null || m.kid === undefined ? null : await Sender.create(m.kid, m.baseKey);
      });
      break;
    case 'add':
      keyOp(async () => {
        await receiver.addKey(m.kid, m.baseKey);
        if (m.participant) own(BigInt(m.kid), m.participant);
        // Receivers that dropped frames for want of this key ask the
        // sender for a key frame, so the picture starts at once.
        for (const t of transforms.values()) {
          if (t.options.operation === 'decode' && t.needKey && t.options.participant === m.participant) {
            t.needKey = false;
            t.transformer?.sendKeyFrameRequest?.().catch(() => {});
          }
        }
      });
      break;
    case 'remove':
      keyOp(() => {
        receiver.removeKey(m.kid);
        disown(BigInt(m.kid));
      });
      break;
    case 'stream':
      run(m.readable, m.writable, m.options, null);
      break;
    case 'ping':
      // The page attaches transforms only after this answer (media.js).
      self.postMessage({ type: 'ready' });
      break;
    case 'stats':
      self.postMessage({ req: m.req, stats: [...transforms.values()].map((t) => ({ ...t.options, ...t.stats })) });
      break;
    default:
      break;
  }
};

self.onrtctransform = (e) => {
  const t = e.transformer;
  run(t.readable, t.writable, t.options, t);
};

function run(readable, writable, options, transformer) {
  const codec = options.kind === 'video' ? VP8 : OPUS;
  const stats = { frames: 0, bytes: 0, noKey: 0, empty: 0, auth: 0, malformed: 0, replay: 0, short: 0, other: 0 };
  const entry = { options, stats, transformer, needKey: false };
  transforms.set(options.id, entry);
  const encode = options.operation === 'encode';
  readable
    .pipeThrough(new TransformStream({
      async transform(frame, controller) {
        const data = new Uint8Array(frame.data);
        if (data.length === 0) {
          // Not a frame anyone sent: an RTP packet that carried only
          // padding. Nothing to decrypt, and nothing to pass on.
          stats.empty++;
          return;
        }
        try {
          let out;
          if (encode) {
            if (!sender) {
              stats.noKey++;
              return;
            }
            out = await protect(sender, codec, data);
          } else {
            if (foreign(codec, data, options.participant)) {
              stats.noKey++;
              entry.needKey = true;
              return;
            }
            out = (await unprotect(receiver, codec, data)).frame;
          }
          frame.data = out.buffer;
          stats.frames++;
          stats.bytes += out.length;
          controller.enqueue(frame);
        } catch (err) {
          const reason = err?.reason in stats ? err.reason : 'other';
          stats[reason]++;
          if (reason === 'noKey' && !encode) entry.needKey = true;
        }
      },
    }))
    .pipeTo(writable)
    .catch(() => {})
    .finally(() => {
      stats.ended = true;
    });
}
