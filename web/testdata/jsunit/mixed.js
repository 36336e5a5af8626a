// The browser's half of TestJSUnitGoAndJSMembers (web/jsunit_test.go): Go
// members and these JavaScript members form one group, the Go test
// carrying every key message between them and setting the clock. Each call
// takes the time (ms) and a member id and answers what the member sends
// ({to, payload} with the payload as JSON text) or what it holds.

import { fromHex, hex } from '/js/e2ee/bytes.js';
import { Member } from '/js/e2ee/group.js';
import { Identity } from '/js/e2ee/identity.js';
import * as sframe from '/js/e2ee/sframe.js';

const members = new Map();
let now = 0;
const wire = (outs) => outs.map((o) => ({ to: o.to, payload: JSON.stringify(o.payload) }));

async function add(pid, meeting, name, policyHash, nodeCert) {
  const sink = { receiver: new sframe.Receiver(), sender: null };
  const media = {
    async setSender(k, base) {
      sink.sender = k === null ? null : await sframe.Sender.create(k, base);
    },
    addKey: (k, base) => sink.receiver.addKey(k, base),
    removeKey: (k) => sink.receiver.removeKey(k),
  };
  const m = await Member.create({ meeting, participant: pid, name, policyHash, identity: await Identity.generate(), media, now: () => now });
  m.sink = sink;
  members.set(pid, m);
  if (nodeCert) await m.setNodeCert(nodeCert);
  return { intro: wire(m.withNode([m.announce()])), identity: hex(m.identity.publicKey) };
}

const ops = {
  add,
  roster: async (m, view) => wire(await m.onRosterChange(view)),
  tick: async (m) => wire(await m.tick()),
  handle: async (m, from, payload) => {
    const r = await m.handleMessage(from, payload);
    return { outs: wire(r.out), error: r.error ? String(r.error.code ?? r.error.message) : '' };
  },
  remove: async (m, pid, identity) => wire(await m.remove(pid, identity ? fromHex(identity) : null)),
  policy: async (m, h) => {
    await m.setPolicyHash(h);
    return true;
  },
  state: (m) => ({ epoch: m.epoch, code: m.securityCode, status: m.status(), people: m.people().map((p) => ({ ...p, identity: p.identity ? hex(p.identity) : '' })) }),
  // protect is an Opus frame under the member's sending key, hex; '' when
  // it sends nothing.
  protect: async (m, payload) => (m.sink.sender ? hex(await sframe.protect(m.sink.sender, sframe.OPUS, fromHex(payload))) : ''),
  unprotect: async (m, frame) => {
    try {
      return hex((await sframe.unprotect(m.sink.receiver, sframe.OPUS, fromHex(frame))).frame);
    } catch {
      return '';
    }
  },
};

window.__mixed = async (t, op, pid, ...args) => {
  now = t;
  if (op === 'add') return add(pid, ...args);
  return ops[op](members.get(pid), ...args);
};
window.__mixedReady = true;
