// The media Worker (web/static/js/e2ee/worker.js) driven as the app drives
// it, through transferred streams of encoded frames: it protects with the
// sender key it was given, sends nothing without one (or after
// setSender(null)), decrypts frames under its receiver keys, and drops a
// frame that arrives on one participant's track under another
// participant's KID as no key.

import { fromHex, hex } from '/js/e2ee/bytes.js';
import * as sframe from '/js/e2ee/sframe.js';
import { eq, test } from './testlib.js';

// transform runs frames (Uint8Arrays) through a Worker transform and
// resolves to what came out.
async function transform(worker, options, frames) {
  const out = [];
  const readable = new ReadableStream({
    start(c) {
      for (const f of frames) c.enqueue({ data: f.slice().buffer });
      c.close();
    },
  });
  let done;
  const closed = new Promise((r) => { done = r; });
  const writable = new WritableStream({ write(f) { out.push(new Uint8Array(f.data)); }, close() { done(); } });
  worker.postMessage({ type: 'stream', options, readable, writable }, [readable, writable]);
  await closed;
  return out;
}

function stats(worker, id) {
  return new Promise((resolve) => {
    const req = Math.random();
    const on = (e) => {
      if (e.data.req !== req) return;
      worker.removeEventListener('message', on);
      resolve(e.data.stats.find((s) => s.id === id));
    };
    worker.addEventListener('message', on);
    worker.postMessage({ type: 'stats', req });
  });
}

test('media worker: sender key, no sender, receiver keys and a KID of another participant', async () => {
  const w = new Worker('/js/e2ee/worker.js', { type: 'module' });
  try {
    const audio = fromHex('78010203');
    // No sender key yet: nothing goes out.
    eq((await transform(w, { operation: 'encode', kind: 'audio', participant: '', id: 1 }, [audio])).length, 0, 'no frames before a key');
    eq((await stats(w, 1)).noKey, 1, 'counted as no key');
    const kidA = (3n << 16n) | 1n, kidB = (3n << 16n) | 2n;
    const baseA = new Uint8Array(32).fill(0xa1), baseB = new Uint8Array(32).fill(0xb2);
    w.postMessage({ type: 'sender', kid: kidA, baseKey: baseA });
    const [sent] = await transform(w, { operation: 'encode', kind: 'audio', participant: '', id: 2 }, [audio]);
    const r = new sframe.Receiver();
    await r.addKey(kidA, baseA);
    eq(hex((await sframe.unprotect(r, sframe.OPUS, sent)).frame), hex(audio), 'the worker protects with the sender key');
    w.postMessage({ type: 'sender', kid: null, baseKey: null });
    eq((await transform(w, { operation: 'encode', kind: 'audio', participant: '', id: 3 }, [audio])).length, 0, 'nothing after setSender(null)');
    // Receiving: alice's KID on alice's track decrypts; bob's KID on
    // alice's track is dropped as no key, though the worker holds it.
    w.postMessage({ type: 'add', kid: kidA, baseKey: baseA, participant: 'alice' });
    w.postMessage({ type: 'add', kid: kidB, baseKey: baseB, participant: 'bob' });
    const fromAlice = await sframe.protect(await sframe.Sender.create(kidA, baseA), sframe.OPUS, audio);
    const underBob = await sframe.protect(await sframe.Sender.create(kidB, new Uint8Array(32).fill(0xcc)), sframe.OPUS, audio);
    const got = await transform(w, { operation: 'decode', kind: 'audio', participant: 'alice', id: 4 }, [fromAlice, underBob]);
    eq(got.length, 1, 'one frame through');
    eq(hex(got[0]), hex(audio), 'alice decrypted');
    const st = await stats(w, 4);
    eq(st.noKey, 1, 'the frame under bob\'s KID counts as no key');
    eq(st.auth, 0, 'and not as a failed authentication');
    // On bob's own track the same frame is tried and fails to authenticate.
    await transform(w, { operation: 'decode', kind: 'audio', participant: 'bob', id: 5 }, [underBob]);
    eq((await stats(w, 5)).auth, 1, 'a wrong key on the right track is an authentication failure');
  } finally {
    w.terminate();
  }
});
