// What a member knows of the host's statements, and what the host does.
//
// HostView checks the host key the control plane hands out against the
// fingerprint in this participant's link, verifies every statement (from
// the join answer and from the node's "host" messages) against that key,
// keeps the newest of each kind and every removal, and ignores the rest: a
// server can withhold a statement but cannot forge one. A key that does
// not match the link is a loud warning, and then no statement counts.
//
// HostActions is the host's side: it signs statements with the meeting's
// host key (kept in this browser) and sends them with the host token.

import { api } from './api.js';
import { b64, fromB64 } from './e2ee/bytes.js';
import { GROUPS, REGION_COUNTRY } from './geodata.js';
import * as hs from './hoststmt.js';
import { keyID } from './nodecert.js';

export const LOBBY_POLL_MS = 2000;

// expand turns a picker's list (country codes and group names) into
// country codes, with the groups shipped in the app (geodata.js), never the
// control plane's: the check below must not rest on data the server gives.
function expand(list) {
  const out = new Set();
  for (const c of list ?? []) {
    const code = String(c).trim().toUpperCase();
    for (const m of GROUPS[code] ?? [code]) out.add(m);
  }
  return out;
}

// rulesWithin throws unless rules (what the server asks the host to sign)
// allow nothing the host's own policy rules out: no country it blocked,
// nothing outside its allow-list, no region it blocked (each such region
// must be in rules.blocked_regions or its country not allowed). The
// deployment's floor may only narrow what the host asked for. Groups and
// which country each region is in come from geodata.js only.
export function rulesWithin(rules, policy) {
  for (const c of expand(policy.blocked_countries)) {
    if (hs.allows(rules, c, '')) throw new Error(`The server's policy allows ${c}, which you blocked: not signed.`);
  }
  if (policy.allowed_countries?.length) {
    const allowed = expand(policy.allowed_countries);
    for (const c of rules.allowed_countries) {
      if (!allowed.has(c)) throw new Error(`The server's policy allows ${c}, which is not on your allow-list: not signed.`);
    }
  }
  for (const r of policy.blocked_regions ?? []) {
    const id = String(r).trim().toLowerCase();
    const country = Object.hasOwn(REGION_COUNTRY, id) ? REGION_COUNTRY[id] : undefined;
    const blocked = rules.blocked_regions.some((b) => String(b).toLowerCase() === id);
    if (!blocked && (country === undefined || hs.allows(rules, country, id))) {
      throw new Error(`The server's policy allows the region ${id}, which you blocked: not signed.`);
    }
  }
}

// signPolicy signs the policy statement of a preview (its rules, their
// hash and the deployment's enrollment key) after checking the rules
// allow nothing the host's policy rules out. pinned is the meeting's
// enrollment key (from the host's first policy statement, fixed at
// create: trust on first use); a preview naming another key is refused,
// since whoever holds an enrollment key decides where nodes claim to be.
// At create there is no pinned key yet (null).
export async function signPolicy(key, preview, policy, pinned = null) {
  const rules = { allowed_countries: [...(preview.rules?.allowed_countries ?? [])], blocked_regions: [...(preview.rules?.blocked_regions ?? [])] };
  rulesWithin(rules, policy);
  let enrollmentKey;
  try {
    enrollmentKey = fromB64(preview.enrollment_key ?? '');
  } catch {
    throw new Error('The server sent no valid enrollment key with its policy preview.');
  }
  if (enrollmentKey.length !== 32) throw new Error('The server sent no valid enrollment key with its policy preview.');
  if (pinned && !sameBytes(pinned, enrollmentKey)) {
    throw new Error(`The server asks to sign another enrollment key (${await keyID(enrollmentKey)}) than this meeting's (${await keyID(pinned)}): not signed.`);
  }
  return key.sign({ kind: hs.KIND_POLICY, policyHash: preview.policy_hash, rules, enrollmentKey });
}

function sameBytes(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

export class HostView extends EventTarget {
  // fingerprint is the link's (#h=…); empty for a link without one.
  constructor(fingerprint) {
    super();
    this.fingerprint = fingerprint ?? '';
    this.key = null; // the verified host key (32 bytes), or null
    this.keyProblem = ''; // why host statements are not accepted
    this.serverPolicyHash = '';
    this.policy = null; // newest verified policy statement
    this.settings = null; // newest verified settings statement
    this.removals = new Map(); // participant -> statement
    this.refused = 0;
    this.received = 0; // statements from "host" messages, accepted or not
    this.queue = Promise.resolve();
  }

  emit() {
    this.dispatchEvent(new CustomEvent('change'));
  }

  get locked() { return !!this.settings?.locked; }
  get lobby() { return !!this.settings?.lobby; }

  // policyHash is what the security code commits to: the host-signed hash,
  // else (a meeting without a host key) the one the server reports.
  get policyHash() {
    return this.policy?.policyHash ?? this.serverPolicyHash;
  }

  // policyMismatch: the server reports a policy other than the host signed.
  get policyMismatch() {
    return !!(this.policy && this.serverPolicyHash && this.policy.policyHash !== this.serverPolicyHash);
  }

  // adopt takes a join answer's host state ({key, policy_hash, statements}).
  adopt(state) {
    return this.serial(async () => {
      this.serverPolicyHash = state?.policy_hash ?? '';
      let key = null;
      try {
        key = state?.key ? fromB64(state.key) : null;
      } catch {
        key = null;
      }
      if (this.fingerprint) {
        if (!key) {
          this.keyProblem = 'The server sent no host key, but your link names one: host controls (lock, lobby, removals) are ignored.';
        } else if (!(await hs.checkKey(key, this.fingerprint))) {
          this.keyProblem = 'The server changed the host key: it is not the one your link names. Host controls are ignored; the meeting may not be what the host set up.';
          key = null;
        } else if (this.key && b64(this.key) !== b64(key)) {
          this.keyProblem = 'The server changed the host key during the meeting. Host controls are ignored.';
          key = null;
        } else {
          this.key = key;
        }
      } else if (key) {
        // A link without a fingerprint (made before host keys): the key is
        // only the server's word, so nothing it signs is trusted.
        this.keyProblem = 'Your link has no host key fingerprint, so host controls cannot be checked and are ignored. Ask the host for the whole link.';
      }
      for (const st of state?.statements ?? []) await this.accept(st);
      this.emit();
    });
  }

  // receive takes one statement from a "host" message.
  receive(wire) {
    this.received++;
    return this.serial(async () => {
      const s = await this.accept(wire);
      this.emit();
      return s;
    });
  }

  serial(fn) {
    const run = this.queue.then(fn);
    this.queue = run.catch(() => {});
    return run;
  }

  // accept verifies one statement and keeps it if it is new; it resolves
  // to the statement, or null if it was ignored.
  async accept(wire) {
    if (!this.key) return null;
    let s;
    try {
      s = hs.parse(wire);
    } catch {
      this.refused++;
      return null;
    }
    if (!(await hs.verify(s, this.key))) {
      this.refused++;
      return null;
    }
    switch (s.kind) {
      case hs.KIND_POLICY:
        if (this.policy && this.policy.seq >= s.seq) return null;
        // The first policy statement fixes the meeting's enrollment key: a
        // newer one naming another key would let whoever holds that key
        // certify any machine as anywhere.
        if (this.policy && !sameBytes(this.policy.enrollmentKey, s.enrollmentKey)) {
          this.refused++;
          this.enrollmentKeyChanged = true;
          return null;
        }
        this.policy = s;
        return s;
      case hs.KIND_SETTINGS:
        if (this.settings && this.settings.seq >= s.seq) return null;
        this.settings = s;
        return s;
      case hs.KIND_REMOVE:
        if (this.removals.has(s.participant)) return null;
        this.removals.set(s.participant, s);
        return s;
      default:
        return null;
    }
  }
}

// HostActions signs and sends the host's controls. key is the meeting's
// HostKey from this browser, or null (then only a meeting without a host
// key accepts them).
export class HostActions {
  constructor({ meeting, token, key, view }) {
    this.meeting = meeting;
    this.token = token;
    this.key = key;
    this.view = view;
  }

  async statement(fields) {
    return this.key ? this.key.sign(fields) : undefined;
  }

  // Each action applies its own statement to this page's view at once:
  // the node's "host" message for it may come later.
  async setSettings(locked, lobby) {
    const statement = await this.statement({ kind: hs.KIND_SETTINGS, locked, lobby });
    const m = await api.settings(this.meeting, { locked, lobby, statement }, this.token);
    if (statement) await this.view.receive(statement);
    return m;
  }

  async remove(participant, identity) {
    const statement = await this.statement({ kind: hs.KIND_REMOVE, participant, identity: identity ?? undefined });
    await api.remove(this.meeting, participant, { statement }, this.token);
    if (statement) await this.view.receive(statement);
  }

  async decide(entry, admit) {
    const statement = await this.statement({ kind: admit ? hs.KIND_ADMIT : hs.KIND_DENY, ticket: entry.ticket, name: entry.name ?? '' });
    await api.decide(this.meeting, entry.ticket, { admit, statement }, this.token);
  }

  lobby() {
    return api.lobby(this.meeting, this.token);
  }

  // setPolicy signs the rules the control plane will enforce, as its
  // preview computes them, once they are checked against what the host
  // asked for, with the meeting's enrollment key: the one of the newest
  // policy statement that verifies with this host key (the view keeps only
  // those). Without one it refuses to sign rather than trust the server's.
  async setPolicy(policy) {
    let statement;
    if (this.key) {
      const held = this.view?.policy;
      const pinned = held && await hs.verify(held, this.key.publicKey) ? held.enrollmentKey : null;
      if (!pinned) throw new Error('No policy statement signed with your host key is known for this meeting, so its enrollment key is unknown: not signed.');
      const p = await api.preview(policy);
      statement = await signPolicy(this.key, p, policy, pinned);
    }
    const m = await api.setPolicy(this.meeting, { policy, statement }, this.token);
    if (statement) await this.view.receive(statement);
    return m;
  }
}
