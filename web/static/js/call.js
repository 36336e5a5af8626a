// Call is one participant in one meeting, without any user interface: it
// joins through the control plane, keeps a NodeSession to the node it was
// placed on (moving make-before-break when the node asks), runs the
// end-to-end key schedule over the node's relay messages, and tells the
// page what changed through events:
//
//   state         {state: connecting|connected|reconnecting|moving|ended, reason}
//   participants  the participant list changed
//   track         a remote track arrived {participant, kind, track}
//   chat          {from, name, text, time, self}
//   security      the epoch, security code or roster changed
//   node          the node this participant is on changed
//   lobby         the join waits in the lobby for the host {ticket}
//   host          the host's verified statements changed (call.host)
//   refused       this browser refused a node {node, code, message}
//   audit         what this browser checked of the audit log changed
//                 (call.auditLog: state, reason, checkpoints(), offer());
//                 the newest checkpoint held goes to the others as a
//                 checkpoint key message, and theirs are offered to it
//
// Before it opens a connection to a node, the call checks that node by
// itself against the host-signed policy (nodecheck.js): a node the policy
// does not allow, one without a valid certificate, or one that cannot
// prove its certified key (nodesession.js) is refused, the refusal is
// reported in the next join (refused), and after MAX_REFUSALS in a row the
// call gives up with the last refusal. A newer host policy that no longer
// allows the node this call is on moves it by itself.
//
// Each session is a participant of its own (a move joins again under a new
// participant id), so each has its own key schedule member and its own
// SFrame Worker: the epochs of the meeting the new participant joins start
// over, and their key ids must never meet the old participant's keys.

import { api, refusalMessage } from './api.js';
import { b64 } from './e2ee/bytes.js';
import { Member } from './e2ee/group.js';
import { HostView } from './hostcontrol.js';
import { MediaCrypto } from './e2ee/media.js';
import { MoveTracker } from './movetracker.js';
import { NodeSession } from './nodesession.js';
import { NODE_NOT_ALLOWED, NodeRefusal, checkNode, hostPolicy, nodeStatus } from './nodecheck.js';
import { allows } from './hoststmt.js';
import { AuditWatch } from './auditwatch.js';
import { Presence, isAnnouncement, isPresence } from './presence.js';
import { Backoff, FAIL_ICE, FAIL_JOIN, FAIL_LOST, FAIL_NEGOTIATION, FAIL_NODE_ERROR, FAIL_OFFLINE, FAIL_TIMEOUT, failureMessage } from './recovery.js';

// How long a session may take to carry media after it was placed before
// it counts as failed (the node checked fine, but ICE never connects);
// the page's tuning (window.oakmeetTuning, set before the app loads)
// shortens it and the back-off for tests.
export const MEDIA_CONNECT_MS = 15000;
// A join answered 429 (a limit of the control plane's: during a mass move,
// this address's join bucket) is asked again after its Retry-After, for at
// most this long in all; the tests shorten it.
export const RATE_LIMITED_BUDGET_MS = 30000;
// Refusals of the nodes a call is placed on, in a row, before it gives up.
export const MAX_REFUSALS = 3;
// How long the call waits for the node's move message before it moves off
// a node the host's newest policy rules out by itself.
export const SELF_MOVE_MS = 3000;
// How often, at most, a call passes on the newest checkpoint it holds.
export const GOSSIP_MS = 2000;
// signal.ReasonNegotiationTimeout: the reason of the node's leave when no
// media connection came up within its deadline.
const NEGOTIATION_TIMEOUT = 'negotiation_timeout';
const TICK_MIN_MS = 50;
const TICK_MAX_MS = 1000;

// tokenSince reads the issue time of a join token (the Since the node
// orders this participant by), in Unix milliseconds; 0 if unreadable.
export function tokenSince(token) {
  try {
    const payload = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(payload + '='.repeat((4 - (payload.length % 4)) % 4)));
    return Math.floor(Date.parse(claims.iat)) || 0;
  } catch {
    return 0;
  }
}

// rosterOf is everyone's participant id in join order as session s sees
// it: by the Since the node reports (the join token's issue time), then
// id; in arrival order where a node does not report Since.
export function rosterOf(s) {
  const all = [...s.participants.values(), { id: s.id, since: s.since, seq: s.selfSeq ?? -1 }];
  const bySince = all.every((p) => p.since > 0);
  all.sort((a, b) => (bySince ? a.since - b.since || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0) : a.seq - b.seq));
  return all.map((p) => p.id);
}

export class Call extends EventTarget {
  // link is {secret, fingerprint} from the meeting link's fragment.
  constructor({ meeting, name, country, identity, local, link }) {
    super();
    this.meeting = meeting;
    this.link = link ?? {};
    this.host = new HostView(this.link.fingerprint);
    this.rejoinSecrets = new Map(); // participant id -> the rejoin secret its join answer gave
    this.host.addEventListener('change', () => this.hostChanged());
    this.name = name;
    this.country = country || '';
    this.identity = identity;
    this.local = local; // {audio, video, stream}
    this.tracks = new Map(); // participant -> {audio, video}
    // Others' verified mute, camera, hand and screen, and this page's own.
    this.presence = new Map(); // participant -> {mic, camera, hand, screen, seq}
    this.ownPresence = new Presence(this, { mic: !!local?.audio, camera: !!local?.video },
      { answerMs: globalThis.oakmeetTuning?.presenceAnswerMs });
    this.chat = [];
    this.state = 'connecting';
    this.self = { id: '', since: 0, node: null };
    this.sessions = new Set();
    this.pastStats = [];
    this.refusals = []; // {node, code, message}, every node this call refused
    this.refusedInARow = 0;
    // Every join answer's checkpoint and own entry go to the audit log's
    // check, which reads the meeting's entries as a member does.
    this.auditLog = new AuditWatch({ meeting, token: () => this.link.secret || this.link.hostToken || '' });
    this.auditLog.addEventListener('change', () => this.emit('audit'));
    // Members pass on the checkpoints they hold (checkpoint key
    // messages), so that a log forked between them shows.
    this.auditLog.addEventListener('held', () => this.gossipSoon());
    this.gossip = { sent: 0, received: 0, offered: 0 };
    this.offered = new Set();
    const tuning = globalThis.oakmeetTuning ?? {};
    this.mediaConnectMs = tuning.mediaConnectMs ?? MEDIA_CONNECT_MS;
    this.backoff = new Backoff(tuning.backoff ?? {});
    this.retry = null; // {attempt, max, at, reason} while a retry waits
    this.onOffline = () => this.fail(this.session, { kind: FAIL_OFFLINE });
    this.onOnline = () => this.wake?.();
    globalThis.addEventListener?.('offline', this.onOffline);
    globalThis.addEventListener?.('online', this.onOnline);
    this.tracker = new MoveTracker({
      join: (replaces, refused) => this.joinAPI(replaces, refused),
      connect: (answer) => this.place(answer),
    });
  }

  emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.emit('state', { state, reason });
  }

  get session() {
    return this.tracker.current;
  }

  // member is the key schedule of the current session's participant.
  get member() {
    return this.session?.member ?? null;
  }

  // participants are the others, as the current session's node reports them.
  get participants() {
    return this.session?.participants ?? new Map();
  }

  // joinAPI joins through the control plane, with the link's secret and
  // this browser's identity key; a join that replaces a participant of
  // this call proves it with that participant's rejoin secret. A join
  // held in the lobby asks again with its ticket until the host decides.
  // refused ({code, message}) reports that this client refused the node
  // the replaced participant was placed on.
  // askJoin is one join ask, asked again after the Retry-After of a 429
  // (rate_limited) until RATE_LIMITED_BUDGET_MS has passed.
  async askJoin(body, hostToken) {
    const until = Date.now() + (this.rateLimitedBudgetMs ?? RATE_LIMITED_BUDGET_MS);
    for (;;) {
      try {
        return await api.join(this.meeting, body, hostToken);
      } catch (err) {
        const left = until - Date.now();
        if (err.status !== 429 || left <= 0 || this.state === 'ended') throw err;
        this.rateLimitedAsks = (this.rateLimitedAsks ?? 0) + 1;
        const wait = Math.min(left, Math.max(1, err.retryAfter || 1) * 1000);
        console.info(`oakmeet: join refused for now (${err.message}); asking again in ${Math.round(wait / 1000)} s`);
        await new Promise((r) => setTimeout(r, wait));
      }
    }
  }

  async joinAPI(replaces, refused) {
    const body = { name: this.name, secret: this.link.secret ?? '', identity: b64(this.identity.publicKey) };
    if (this.country) body.location = { country: this.country };
    if (replaces) {
      body.replaces = replaces;
      if (this.rejoinSecrets.has(replaces)) body.rejoin_secret = this.rejoinSecrets.get(replaces);
      if (refused) body.refused = { code: refused.code, message: refused.message };
    }
    const hostToken = this.link.hostToken || undefined;
    let answer = await this.askJoin(body, hostToken);
    while (answer?.code === 'lobby') {
      if (this.state === 'ended') throw new Error('left the lobby');
      this.lobbyTicket = answer.ticket;
      this.emit('lobby', { ticket: answer.ticket, message: answer.message ?? '' });
      answer = await this.askJoin({ ...body, lobby_ticket: answer.ticket }, hostToken);
    }
    if (this.state === 'ended') throw new Error('left the meeting');
    await this.host.adopt(answer.host);
    this.rejoinSecrets.set(answer.participant_id, answer.rejoin_secret ?? '');
    this.auditLog.joined(answer).catch(() => {}); // its own alarm, not the join's
    return answer;
  }

  // start joins; a refusal rejects with the APIError.
  async start() {
    if (!MediaCrypto.available()) {
      throw new Error('This browser cannot encrypt media end to end (it lacks RTCRtpScriptTransform and encoded streams). Use a current Chrome, Edge, Firefox or Safari.');
    }
    this.setState('connecting');
    const s = await this.place(await this.joinAPI(''));
    this.adopt(s);
    this.schedule();
  }

  adopt(s) {
    this.tracker.adopt(s);
    // Tracks that arrived while s was being placed, before it was the
    // current session (a reconnect, a refused node replaced): without
    // them the page would show the others' tiles dark on the new node.
    for (const t of s.earlyTracks ?? []) this.setTrack(t.participant, t.kind, t.track);
    s.earlyTracks = [];
    this.activate(s);
    // A session that is placed but never carries media (ICE that never
    // connects, a stalled negotiation) must not leave the page waiting.
    const deadline = setTimeout(() => this.fail(s, { kind: FAIL_TIMEOUT }), this.mediaConnectMs);
    s.ready.finally(() => clearTimeout(deadline)).catch(() => {});
    s.ready.then(() => {
      if (this.session === s) this.refusedInARow = 0;
      if (this.session === s) this.backoff.connected();
      if (this.session === s && this.state !== 'ended' && this.state !== 'moving') this.setState('connected');
    }).catch(() => {}); // refused: onSessionRefused handles it
  }

  // place connects to the node of a join answer after checking it, and on
  // a refusal joins again (replacing the refused participant, saying why)
  // until a node passes or MAX_REFUSALS in a row have been refused; then
  // it rejects with the last NodeRefusal.
  async place(answer) {
    for (;;) {
      try {
        return await this.connect(answer);
      } catch (err) {
        if (!(err instanceof NodeRefusal)) throw err;
        this.noteRefusal(err);
        if (this.refusedInARow >= MAX_REFUSALS) {
          err.final = true;
          throw err;
        }
        answer = await this.joinAPI(answer.participant_id, err);
      }
    }
  }

  noteRefusal(err) {
    this.refusedInARow++;
    const r = { node: err.node, code: err.code, message: err.message };
    this.refusals.push(r);
    console.info(`oakmeet: refused media server ${r.node}: ${r.code}: ${r.message}`);
    this.emit('refused', r);
  }

  // onSessionRefused handles a node that failed its proof after the
  // connection opened (nodesession.js tore its media down): the call
  // replaces that participant, saying why, as it would a lost connection.
  async onSessionRefused(s, refusal) {
    if (this.state === 'ended') return;
    const err = new NodeRefusal(refusal.code, refusal.message, s.node?.id);
    const current = this.session === s;
    s.close('refused');
    if (!current) return; // a session being moved to: its ready rejects, and move() goes on
    this.noteRefusal(err);
    if (this.refusedInARow >= MAX_REFUSALS) {
      this.giveUp(err);
      return;
    }
    try {
      const next = await this.place(await this.joinAPI(s.id, err));
      this.tracks.clear();
      this.adopt(next);
    } catch (e) {
      if (e instanceof NodeRefusal) this.giveUp(e);
      else if (e.code) this.end(refusalMessage(e));
      else this.end('The connection to the meeting was lost.');
    }
  }

  // giveUp ends the call with the last refusal: the page names the code
  // and the node.
  giveUp(err) {
    this.refusal = { node: err.node, code: err.code, message: err.message };
    this.end(err.message);
  }

  // connect opens a session to the node of a join answer, with its own
  // key schedule member and Worker, and wires its events. Participant
  // lists, chat and the UI follow only the current session; keys follow
  // every live one.
  async connect(answer) {
    // Checked before anything is sent to the node (nodecheck.js).
    const cert = await checkNode(this.host, answer.node);
    const hp = hostPolicy(this.host);
    const media = new MediaCrypto();
    await media.ready();
    const member = await Member.create({
      meeting: this.meeting, participant: answer.participant_id, identity: this.identity, media,
      name: this.name, policyHash: this.host.policyHash,
    });
    const s = new NodeSession({
      answer, local: { audio: this.local.audio, video: this.local.video, screen: this.local.screen, screenAudio: this.local.screenAudio }, e2ee: media, stream: this.local.stream,
      meeting: this.meeting, cert, hostKey: hp.key, statement: hp.wire,
    });
    s.nodeCert = cert;
    // Everyone in the meeting checks this node too: the node message goes
    // right after each announcement, signed with this browser's identity.
    await member.setNodeCert(answer.node.cert);
    s.since = tokenSince(answer.token);
    s.member = member;
    s.crypto = media;
    member.onCheckpoint = (from, text) => this.receiveCheckpoint(from, text);
    member.onPresence = (from, p, id) => this.ownPresence.receive(s, from, p, id);
    member.onChange(() => this.session === s && this.emit('security'));
    const current = () => this.session === s;
    s.addEventListener('participant', () => this.participantsChanged(s));
    s.addEventListener('participant-left', (e) => {
      if (current()) this.tracks.delete(e.detail.id);
      this.participantsChanged(s);
    });
    s.addEventListener('track', (e) => this.onTrack(s, e.detail));
    s.addEventListener('chat', (e) => current() && this.onChat(e.detail));
    s.addEventListener('relay', (e) => this.onRelay(s, e.detail));
    s.addEventListener('move', (e) => current() && this.move(e.detail.reason));
    s.addEventListener('host', (e) => this.host.receive(e.detail));
    s.addEventListener('refused', (e) => this.onSessionRefused(s, e.detail));
    // While a move is under way the old node may end the old connection
    // as soon as the new one is up: that is the move, not the end.
    const moving = () => this.tracker.moving && current();
    s.addEventListener('removed', (e) => {
      if (moving() || !current()) return;
      // The node gave up on media that never connected (its negotiation
      // deadline): that is a failed connection to retry, not the end.
      if (e.detail.reason === NEGOTIATION_TIMEOUT) this.fail(s, { kind: FAIL_ICE });
      else this.onRemoved(e.detail.reason);
    });
    s.addEventListener('closed', () => {
      this.retire(s);
      if (!moving() && current()) this.onLost({ kind: FAIL_LOST });
    });
    s.addEventListener('state', (e) => e.detail.state === 'failed' && !moving() && this.fail(s, { kind: FAIL_ICE }));
    s.addEventListener('node-error', (e) => !moving() && this.fail(s, { kind: FAIL_NODE_ERROR, detail: e.detail.message }));
    s.addEventListener('warning', (e) => !moving() && this.fail(s, { kind: FAIL_NEGOTIATION, detail: e.detail.message }));
    const close = s.close.bind(s);
    s.close = (reason) => {
      close(reason);
      this.retire(s);
    };
    this.sessions.add(s);
    try {
      await s.connect();
    } catch (err) {
      s.close('failed');
      throw err;
    }
    await this.applyHost(s);
    this.send(s, member.withNode([member.announce()]));
    this.ownPresence.sendTo(s, ['']);
    s.announcedTo = new Set(rosterOf(s));
    await this.rosterChanged(s);
    return s;
  }

  // hostChanged applies the verified statements to every live session's
  // key schedule and ends this call if the host removed it.
  async hostChanged() {
    // First of all: no more media to a node the newest policy rules out.
    this.checkOwnNode();
    for (const s of this.sessions) await this.applyHost(s);
    if (this.state !== 'ended' && this.session && this.host.removals.has(this.session.id)) {
      this.end('removed');
      return;
    }
    this.emit('host');
    this.checkOwnNode();
  }

  // checkOwnNode moves this call by itself when the newest host policy no
  // longer allows the node it is on, whether or not the node says "move".
  // An honest control plane's move message comes within moments and
  // moves make-before-break; a refusal makes the control plane drop the
  // refused participant at once. So the call gives the node SELF_MOVE_MS
  // to ask, then moves by itself.
  //
  // Media stops at once, though: no frame goes to a node the host's
  // newest policy rules out while the call waits for the move (the new
  // session sends once its node has proven itself; receiving goes on
  // make-before-break).
  checkOwnNode() {
    const s = this.session;
    if (!this.ownNodeRuledOut()) {
      // A newer policy allows the node again: it may carry media again.
      if (s?.sendingStopped && this.state !== 'ended') s.resumeSending();
      return;
    }
    s.stopSending();
    if (this.selfMoveTimer) return;
    this.selfMoveTimer = setTimeout(() => {
      this.selfMoveTimer = undefined;
      this.selfMove();
    }, SELF_MOVE_MS);
  }

  // ownNodeRuledOut: the newest host policy does not allow the node of
  // the current session.
  ownNodeRuledOut() {
    const c = this.session?.nodeCert;
    const policy = this.host.policy;
    return !!c && !!policy && this.state !== 'ended' && !allows(policy.rules, c.country, c.region);
  }

  // selfMove moves off a ruled-out node unless a move (the node's) has
  // taken care of it; after a move under way it looks again.
  selfMove() {
    if (!this.ownNodeRuledOut()) return;
    if (this.tracker.moving) {
      this.tracker.moving.finally(() => this.checkOwnNode()).catch(() => {});
      return;
    }
    const c = this.session.nodeCert;
    const where = c.region ? `${c.country}, ${c.region}` : c.country;
    this.move('policy_change', {
      code: NODE_NOT_ALLOWED,
      message: `The media server ${c.node} is in ${where}, which the host's newest routing policy does not allow: your browser moves off it.`,
    });
  }

  // applyHost gives a session's member the signed policy hash and every
  // removal it has not had (Member.remove re-keys without them at once).
  async applyHost(s) {
    const m = s.member;
    if (!m) return;
    if (typeof m.setPolicyHash === 'function' && s.policyHash !== this.host.policyHash) {
      s.policyHash = this.host.policyHash;
      await m.setPolicyHash(s.policyHash);
    }
    s.removed ??= new Set();
    for (const [pid, st] of this.host.removals) {
      if (s.removed.has(pid) || typeof m.remove !== 'function') continue;
      s.removed.add(pid);
      this.send(s, (await m.remove(pid, st.identity?.length ? st.identity : null)) ?? []);
    }
  }

  // retire stops a session's key schedule and Worker, keeping its counters.
  retire(s) {
    if (!this.sessions.delete(s)) return;
    s.crypto.stats().then((st) => this.pastStats.push(...st)).finally(() => s.crypto.close());
  }

  // activate makes s the session the page shows.
  activate(s) {
    this.self = { id: s.id, since: s.since, node: s.node };
    this.ownPresence.activate(s);
    this.emit('node', s.node);
    this.emit('participants');
    this.emit('security');
  }

  participantsChanged(s) {
    if (this.session === s) this.ownPresence.prune(new Set(s.participants.keys()));
    if (this.session === s) this.emit('participants');
    this.rosterChanged(s).catch((err) => this.keyFailed(s, 'roster change', err));
  }

  // keyFailed reports a key operation that threw: to the console with its
  // context, and to the page (key-error), since media it cannot key does
  // not play.
  keyFailed(s, what, err) {
    console.warn(`oakmeet: key schedule (${what}) of ${s?.id ?? 'no session'} failed: ${err?.message ?? err}`);
    if (this.session === s) this.emit('key-error', { message: `Encryption keys could not be updated (${what}): ${err?.message ?? err}` });
  }

  async rosterChanged(s) {
    if (!this.sessions.has(s)) return;
    const roster = rosterOf(s);
    // Relay messages reach only those present when they are sent, and a
    // participant on another node becomes present only once the nodes
    // link up: an announcement sent at join may never have reached it.
    // Everyone who appears gets this member's announcement directly, so a
    // leader never waits on one that was lost (the periodic re-announce
    // stops as soon as a member holds an epoch, even its own).
    const known = s.announcedTo ?? new Set([s.id]);
    const announce = s.member.announce().payload;
    const fresh = roster.filter((id) => !known.has(id));
    for (const id of fresh) this.send(s, s.member.withNode([{ to: id, payload: announce }]));
    s.announcedTo = new Set(roster);
    if (fresh.length) this.sendCheckpoint(s, fresh);
    if (fresh.length) this.ownPresence.sendTo(s, fresh);
    this.send(s, await s.member.onRosterChange(roster));
    if (this.session === s) this.emit('security');
    if (this.ticker !== undefined) this.schedule();
  }

  // gossipSoon passes the newest checkpoint held on to everyone, at most
  // every GOSSIP_MS: while entries arrive a new one comes every few
  // seconds, and each member passing on each would be a storm.
  gossipSoon() {
    if (this.gossipTimer !== undefined || this.state === 'ended') return;
    const wait = Math.max(0, (this.gossipAt ?? 0) + GOSSIP_MS - Date.now());
    this.gossipTimer = setTimeout(() => {
      this.gossipTimer = undefined;
      this.gossipAt = Date.now();
      if (this.session) this.sendCheckpoint(this.session, ['']);
    }, wait);
  }

  // sendCheckpoint sends the newest checkpoint held to each of to ('' is
  // everyone), signed by this member.
  async sendCheckpoint(s, to) {
    const text = this.auditLog.checkpoints().at(-1);
    if (!text || this.auditLog.state === 'inconsistent' || typeof s.member?.checkpointMessage !== 'function') return;
    try {
      const payload = await s.member.checkpointMessage(text);
      for (const id of to) s.sendRelay(id, payload);
      this.gossip.sent += to.length;
    } catch (err) {
      console.info(`oakmeet: pass on a checkpoint: ${err.message}`);
    }
  }

  // receiveCheckpoint checks a checkpoint another member holds (its
  // signature checked by the key schedule) against the ones this browser
  // holds; each text once.
  receiveCheckpoint(from, text) {
    this.gossip.received++;
    if (this.offered.has(text) || this.auditLog.checkpoints().includes(text)) return;
    if (this.offered.size >= 1024) this.offered.clear();
    this.offered.add(text);
    this.gossip.offered++;
    this.auditLog.offer(text).then((r) => {
      if (!r.ok) console.info(`oakmeet: the checkpoint ${from} holds: ${r.reason}`);
    }).catch(() => {});
  }

  async tick() {
    if (this.state === 'ended') return;
    for (const s of this.sessions) this.send(s, await s.member.tick());
  }

  // schedule ticks the key schedules when the next of them has something
  // due (Member.nextTick, in ms), at least every second and at most every
  // 50 ms: a batch of joins is keyed as soon as it is ready.
  // A reschedule only ever brings the next tick forward, so a stream of
  // key messages cannot put it off.
  schedule(afterTick = false) {
    if (this.state === 'ended') return;
    const now = Date.now();
    let next = now + TICK_MAX_MS;
    for (const s of this.sessions) {
      const due = typeof s.member.nextTick === 'function' ? s.member.nextTick() : 0;
      if (due > 0) next = Math.min(next, due);
    }
    const at = now + Math.min(TICK_MAX_MS, Math.max(TICK_MIN_MS, next - now));
    if (!afterTick && this.tickAt !== undefined && this.tickAt <= at) return;
    clearTimeout(this.ticker);
    this.tickAt = at;
    this.ticker = setTimeout(() => {
      this.tickAt = undefined;
      this.tick().catch((err) => this.keyFailed(this.session, 'tick', err)).finally(() => this.schedule(true));
    }, at - now);
  }

  send(s, outs) {
    for (const o of outs) s.sendRelay(o.to, o.payload);
  }

  async onRelay(s, { from, payload }) {
    if (!this.sessions.has(s)) return;
    let r;
    try {
      r = await s.member.handleMessage(from, payload);
    } catch (err) {
      this.keyFailed(s, `message from ${from}`, err);
      return;
    }
    this.send(s, r.out);
    this.schedule();
    if (r.error && !r.error.deferred) console.info(`oakmeet: key message from ${from} refused: ${r.error.message}`);
    if (r.error && !r.error.deferred && isPresence(payload)) this.ownPresence.drop(r.error.code ?? 'malformed');
    if (!r.error && from !== s.id && isAnnouncement(payload)) this.ownPresence.answer(s, from);
  }

  onTrack(s, { participant, kind, track }) {
    if (this.session !== s && this.session) {
      // A session still being moved to: its tracks show once it is current.
      s.earlyTracks = [...(s.earlyTracks ?? []), { participant, kind, track }];
      return;
    }
    this.setTrack(participant, kind, track);
  }

  setTrack(participant, kind, track) {
    if (!track) {
      // A share that stopped (nodesession.js).
      const cur = this.tracks.get(participant);
      if (cur?.[kind]) {
        delete cur[kind];
        this.emit('track', { participant, kind, track: null });
      }
      return;
    }
    const t = this.tracks.get(participant) ?? {};
    t[kind] = track;
    this.tracks.set(participant, t);
    this.emit('track', { participant, kind, track });
    track.addEventListener('ended', () => {
      const cur = this.tracks.get(participant);
      if (cur?.[kind] === track) {
        delete cur[kind];
        this.emit('participants');
      }
    });
  }

  onChat(m) {
    const self = m.from === this.self.id;
    const name = self ? this.name : this.participants.get(m.from)?.name ?? 'Someone';
    const entry = { from: m.from, name, text: m.text, time: m.time || Date.now(), self };
    this.chat.push(entry);
    this.emit('chat', entry);
  }

  sendChat(text) {
    this.session?.sendChat(text);
  }

  // setScreen shares a screen ({screen, screenAudio} MediaStreamTracks) on
  // every live session, and on those a move opens later; null stops.
  async setScreen(tracks) {
    const { screen = null, screenAudio = null } = tracks ?? {};
    this.local.screen = screen;
    this.local.screenAudio = screenAudio;
    // The others learn of the share from this member's signed presence,
    // not only from the node's word that a screen track exists.
    this.ownPresence?.set({ screen: Boolean(screen) });
    for (const s of this.sessions) await s.setScreen({ screen, screenAudio });
  }

  async setLocalTrack(kind, track) {
    this.local[kind] = track;
    for (const s of this.sessions) await s.setTrack(kind, track);
  }

  // nodeChecks resolves to what this browser verified of everyone's node:
  // per person of the key schedule's list {participant, self, status
  // (verified|not_allowed|invalid|unknown), cert, error}, each certificate
  // checked against the host-signed policy (nodecheck.nodeStatus), cached
  // per certificate and policy.
  async nodeChecks() {
    const m = this.member;
    if (!m || typeof m.people !== 'function') return [];
    const seq = this.host.policy?.seq ?? 0;
    if (this.nodeCache?.seq !== seq) this.nodeCache = { seq, byCert: new Map() };
    const cache = this.nodeCache.byCert;
    const out = [];
    for (const p of m.people()) {
      const cert = p.node ?? '';
      if (!cache.has(cert)) cache.set(cert, await nodeStatus(cert, this.host));
      out.push({ participant: p.participant, self: !!p.self, ...cache.get(cert) });
    }
    // Re-checked now and then: certificates expire.
    if (cache.size > 256 || Date.now() - (this.nodeCache.at ??= Date.now()) > 60000) this.nodeCache = null;
    return out;
  }

  // stats are the SFrame counters of every transform this call ran.
  async stats() {
    const live = await Promise.all([...this.sessions].map((s) => s.crypto.stats()));
    return [...this.pastStats, ...live.flat()];
  }

  async move(reason, refused) {
    if (this.state === 'ended') return;
    this.movesAsked = (this.movesAsked ?? 0) + 1;
    this.setState('moving', reason);
    console.info(`oakmeet: moving (${reason}${refused ? `, refusing: ${refused.code}` : ''})`);
    if (refused) this.noteRefusal(new NodeRefusal(refused.code, refused.message, this.session?.node?.id));
    try {
      const s = await this.tracker.move(reason, refused);
      console.info(`oakmeet: moved to ${s.node?.id}`);
      this.tracks.clear();
      for (const t of s.earlyTracks ?? []) this.setTrack(t.participant, t.kind, t.track);
      s.earlyTracks = [];
      this.activate(s);
      this.setState('connected');
    } catch (err) {
      // The old connection stays if it still can; the node ends it if it
      // must, with its reason.
      console.info(`oakmeet: move failed: ${err.message}`);
      if (err instanceof NodeRefusal && err.final) this.giveUp(err);
      else if (err.refusal) this.moveRefused(reason, err.refusal);
      else if (err.code && err.code !== 'rate_limited') this.end(refusalMessage(err));
      else if (this.session?.closed) this.onLost();
      else this.setState('connected');
    }
  }

  // moveRefused: the node a move went to failed its proof after it
  // connected; the old session is still there, so the call moves again.
  moveRefused(reason, refusal) {
    const err = new NodeRefusal(refusal.code, refusal.message, '');
    this.noteRefusal(err);
    if (this.refusedInARow >= MAX_REFUSALS) this.giveUp(err);
    else if (this.session?.closed) this.onLost();
    else this.move(reason);
  }

  onRemoved(reason) {
    this.end(reason || 'The media server ended this connection.');
  }

  // rejoin joins again after a lost connection as the participant it
  // replaces (so neither the lobby nor a lock stands in the way of someone
  // already in), or afresh if the control plane no longer has it.
  async rejoin() {
    const old = this.session?.id ?? '';
    if (old && this.rejoinSecrets.has(old)) {
      try {
        return await this.joinAPI(old);
      } catch (err) {
        if (err.status !== 400 && err.code !== 'not_participant') throw err;
      }
    }
    return this.joinAPI('');
  }

  // fail gives up on session s, if it is still the current one, and
  // reconnects: the session's node failed in a way that will not mend.
  fail(s, failure) {
    if (!s || this.session !== s || this.state === 'ended' || this.reconnecting) return;
    if (failure.kind !== FAIL_OFFLINE) console.info(`oakmeet: media connection failed: ${failureMessage(failure)}`);
    s.close('failed');
    this.onLost(failure);
  }

  // onLost reconnects through the control plane after an unexpected drop,
  // with back-off (recovery.js); the reason and the retry's time stay on
  // the call for the page. The join may place this call on another node,
  // checked as every node is; each new session is a participant of its
  // own with its own member and Worker. After the budget of attempts the
  // call stops at 'failed' until retryNow.
  async onLost(failure = { kind: FAIL_LOST }) {
    if (this.state === 'ended' || this.reconnecting) return;
    this.reconnecting = true;
    this.backoff.failed();
    let reason = failureMessage(navigator.onLine === false ? { kind: FAIL_OFFLINE } : failure);
    while (this.state !== 'ended') {
      if (this.backoff.exhausted) {
        this.reconnecting = false;
        this.retry = null;
        this.setState('failed', reason);
        return;
      }
      if (navigator.onLine === false) {
        // No join can work while offline: wait for 'online' rather than
        // spend attempts.
        this.retry = null;
        this.setState('reconnecting', failureMessage({ kind: FAIL_OFFLINE }));
        await new Promise((resolve) => { this.wake = resolve; });
        this.wake = undefined;
        reason = failureMessage({ kind: FAIL_LOST });
        continue;
      }
      const wait = this.backoff.next();
      this.retry = { attempt: this.backoff.attempt, max: this.backoff.maxAttempts, at: Date.now() + wait, reason };
      this.setState('reconnecting', reason);
      this.emit('retry', this.retry);
      await new Promise((resolve) => {
        const timer = setTimeout(resolve, wait);
        // Coming back online (or "Try again") retries at once.
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = undefined;
      if (this.state === 'ended') break;
      if (navigator.onLine === false) continue;
      try {
        const s = await this.place(await this.rejoin());
        this.tracks.clear();
        this.reconnecting = false;
        this.retry = null;
        this.setState('connecting');
        this.adopt(s);
        return;
      } catch (err) {
        if (err instanceof NodeRefusal && err.final) {
          this.reconnecting = false;
          this.giveUp(err);
          return;
        }
        // The control plane unreachable is a reason to try again; its
        // refusal (the host removed this participant, no allowed node) is
        // the end.
        if (err.code && err.code !== 'rate_limited' && err.code !== 'network') {
          this.reconnecting = false;
          this.end(refusalMessage(err));
          return;
        }
        console.info(`oakmeet: reconnect attempt ${this.backoff.attempt} failed: ${err.message}`);
        reason = err.code ? failureMessage({ kind: FAIL_JOIN, detail: err.message }) : failureMessage({ kind: FAIL_LOST });
      }
    }
    this.reconnecting = false;
  }

  // retryNow starts over after the call stopped at 'failed', or cuts a
  // waiting retry short.
  retryNow() {
    if (this.state === 'failed') {
      this.backoff.reset();
      this.onLost({ kind: FAIL_LOST });
    } else {
      this.wake?.();
    }
  }

  end(reason) {
    if (this.state === 'ended') return;
    clearTimeout(this.ticker);
    clearTimeout(this.selfMoveTimer);
    clearTimeout(this.gossipTimer);
    globalThis.removeEventListener?.('offline', this.onOffline);
    globalThis.removeEventListener?.('online', this.onOnline);
    this.wake?.();
    this.auditLog.stop();
    this.setState('ended', reason);
    for (const s of [...this.sessions]) s.close();
  }

  leave() {
    this.end('');
  }
}
