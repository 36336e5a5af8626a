// The People and security panel: the security code to compare, and the
// people in the meeting as this participant's key schedule knows them —
// the signed roster of the epoch it sends under, the one being keyed, and
// the server's list, side by side. Anyone the server lists who is not in
// the encryption, or the reverse, or who never announced themselves to
// this browser, is flagged in words and with an icon: the server's list
// alone is never shown as the truth.
//
// For the host (host token in this tab, host key in this browser) it also
// holds the host controls: lock, lobby, the lobby's waiting list with
// admit and deny, and a remove button per participant.

import { clear, h, icon, initials } from './dom.js';
import { LOBBY_POLL_MS } from './hostcontrol.js';
import { handIcon } from './presence.js';

// Flags of docs/E2EE.md's People, in the words the app shows.
export const FLAG_NOT_IN_KEYS = 'not in the encryption — the server says they are here';
export const FLAG_NOT_LISTED = 'in the encryption — the server does not list them';
export const FLAG_UNHEARD = 'has not announced themselves to you';
// A removed participant still in the keys this page sends under (or
// about to): the others' clients may not have the removal, which a server
// can withhold from them. This page itself sends nothing under those keys.
export const FLAG_REMOVED_IN_KEYS = 'removed by the host, yet still in the encryption — the server may be withholding the removal';

// FLAG_GRACE_MS is how long a condition must hold before it is flagged:
// everyone who joins is listed a moment before the next epoch keys them,
// and everyone who leaves is keyed a moment after the server drops them.
// A server that shows or hides someone for longer is flagged.
export const FLAG_GRACE_MS = 6000;

// peopleOf is the member's People() with the app's field names; a key
// schedule without people() is read from its roster and the server list.
// Each person's flags are those that have held for FLAG_GRACE_MS; until
// then p.settling says so, and peopleOf.settleAt is when the next one may
// show.
export function peopleOf(call) {
  const m = call.member;
  const server = call.participants;
  let list;
  if (m && typeof m.people === 'function') {
    list = m.people().map((p) => ({
      participant: p.participant ?? p.id ?? '',
      name: p.name ?? '',
      identity: p.identity ?? null,
      self: !!p.self,
      leader: !!p.leader,
      inKeys: !!(p.inKeys ?? p.in_keys),
      pending: !!p.pending,
      listed: !!p.listed,
      heard: !!(p.heard || p.self),
      removed: !!p.removed,
    }));
  } else {
    const keyed = new Map((m?.roster ?? []).map((e) => [e.participant, e]));
    const ids = new Set([call.self.id, ...server.keys(), ...keyed.keys()]);
    list = [...ids].filter(Boolean).map((id) => ({
      participant: id, name: keyed.get(id)?.name ?? '', identity: keyed.get(id)?.identity ?? null,
      self: id === call.self.id, leader: false, inKeys: keyed.has(id), pending: false,
      listed: id === call.self.id || server.has(id), heard: true, removed: false,
    }));
  }
  const now = Date.now();
  const since = (call.flagSince ??= new Map()); // "pid flag" -> first seen
  const seen = new Set();
  let settleAt = 0;
  for (const p of list) {
    p.serverName = p.self ? call.name : server.get(p.participant)?.name ?? '';
    p.displayName = p.self ? call.name : p.name || p.serverName || 'Unknown';
    p.flags = [];
    p.settling = false;
    for (const f of flagsOf(p)) {
      const k = `${p.participant} ${f}`;
      seen.add(k);
      if (!since.has(k)) since.set(k, now);
      const at = since.get(k) + FLAG_GRACE_MS;
      if (at <= now) {
        p.flags.push(f);
      } else {
        p.settling = true;
        settleAt = settleAt ? Math.min(settleAt, at) : at;
      }
    }
  }
  for (const k of since.keys()) if (!seen.has(k)) since.delete(k);
  list.settleAt = settleAt;
  // Raised hands (verified presence only) come right after oneself.
  for (const p of list) p.hand = !!(p.self ? call.ownPresence?.state.hand : call.presence?.get(p.participant)?.hand);
  const rank = (p) => (p.self ? 0 : p.hand ? 1 : p.flags.length ? 2 : 3);
  return list.sort((a, b) => rank(a) - rank(b) || a.displayName.localeCompare(b.displayName));
}

export function flagsOf(p) {
  const keyed = p.inKeys || p.pending;
  const flags = [];
  if (p.removed) {
    if (keyed) flags.push(FLAG_REMOVED_IN_KEYS);
    return flags;
  }
  if (p.listed && !keyed) flags.push(FLAG_NOT_IN_KEYS);
  if (keyed && !p.listed) flags.push(FLAG_NOT_LISTED);
  if (keyed && !p.heard && !p.self) flags.push(FLAG_UNHEARD);
  return flags;
}

// switchButton is an on/off control with its label.
function switchButton(label, testid, onToggle) {
  const b = h('button', { type: 'button', class: 'switch', role: 'switch', 'aria-checked': 'false', 'data-testid': testid },
    h('span', { class: 'switch-track', 'aria-hidden': 'true' }, h('span', { class: 'switch-knob' })), h('span', { class: 'switch-label' }, label));
  b.addEventListener('click', () => onToggle(b.getAttribute('aria-checked') !== 'true'));
  b.set = (on, busy = false) => {
    b.setAttribute('aria-checked', String(on));
    b.disabled = busy;
  };
  return b;
}

export class PeoplePanel {
  constructor(call, { actions, countries }) {
    this.title = 'People and security';
    this.call = call;
    this.actions = actions; // HostActions, or null for everyone but the host
    this.countries = countries;
    this.confirming = '';
    this.code = h('p', { class: 'security-code', 'data-testid': 'security-code' });
    this.codeNote = h('p', { class: 'muted', 'data-testid': 'security-state' }, 'Exchanging keys…');
    this.hostWarning = h('p', { class: 'alarm', role: 'alert', 'data-testid': 'panel-host-warning', hidden: true });
    this.lockedNote = h('p', { class: 'locked-note', 'data-testid': 'locked-note', hidden: true }, icon('lock'), 'The host locked this meeting: nobody new can join.');
    this.keyState = h('p', { class: 'small host-key-state', 'data-testid': 'host-key-state' });
    this.roster = h('ul', { class: 'people', 'data-testid': 'roster' });
    this.hostBox = h('section', { class: 'host-controls', 'data-testid': 'host-controls', hidden: !actions });
    this.el = h('div', { class: 'panel security' },
      this.hostWarning,
      h('div', { class: 'code-box' },
        h('p', { class: 'eyebrow' }, icon('lock'), 'End-to-end encrypted'),
        this.code, this.codeNote),
      h('p', { class: 'small' }, 'Compare this code with everyone, aloud or side by side. It covers everyone’s keys and names and the routing policy: when it matches and the people below are who you expect, no server can see or hear this meeting.'),
      this.keyState,
      this.lockedNote,
      this.hostBox,
      h('h3', {}, 'In the meeting'),
      this.roster);
    if (actions) this.buildHost();
    call.addEventListener('security', () => this.render());
    call.addEventListener('participants', () => this.render());
    call.addEventListener('presence', () => this.render());
    call.addEventListener('host', () => this.render());
    this.render();
  }

  render() {
    const m = this.call.member;
    const code = m?.securityCode ?? '';
    // Groups as separate boxes, two rows of four; the text stays the
    // code exactly ("40938 94865 …") for copying and for screen readers.
    clear(this.code, code.split(' ').filter(Boolean).flatMap((g, i) => (i ? [' ', h('span', {}, g)] : [h('span', {}, g)])));
    this.code.hidden = !code;
    const people = peopleOf(this.call);
    const keyed = people.filter((p) => p.inKeys).length;
    const host = this.call.host;
    const st = typeof m?.status === 'function' ? m.status() : null;
    const keying = st && st.newest > st.epoch ? ' · a new key is being confirmed' : '';
    this.codeNote.textContent = code
      ? `Key epoch ${m.epoch} · ${keyed} ${keyed === 1 ? 'person' : 'people'} in the encryption${keying}${host.policyMismatch ? ' · the server reports a policy the host did not sign' : ''}`
      : 'Exchanging keys… (nobody’s media is sent until it is encrypted)';
    clear(this.keyState, host.key ? [icon('check'), 'The host’s controls here are checked against the host key your link names.']
      : host.keyProblem ? [] : ['This meeting has no host key: it has no host controls to check.']);
    this.hostWarning.hidden = !host.keyProblem;
    this.hostWarning.textContent = host.keyProblem;
    this.lockedNote.hidden = !host.locked;
    clear(this.roster, people.map((p) => this.person(p)));
    clearTimeout(this.settleTimer);
    if (people.settleAt) this.settleTimer = setTimeout(() => this.render(), people.settleAt - Date.now() + 20);
    if (this.actions) this.renderSwitches();
  }

  person(p) {
    const status = p.removed
      ? h('span', { class: 'pstate removed' }, icon('x'), 'removed by the host')
      : p.inKeys ? h('span', { class: 'pstate keyed', title: 'Holds the current media key' }, icon('lock'), 'in code')
        : p.pending || (p.listed && p.settling) ? h('span', { class: 'pstate pending' }, 'joining keys…') : null;
    const li = h('li', { 'data-participant': p.participant, class: p.flags.length ? 'flagged' : '', 'data-flags': p.flags.join('|'), 'data-hand': p.hand ? 'up' : null },
      h('div', { class: 'person-row' },
        h('span', { class: 'avatar-sm' }, initials(p.displayName)),
        h('span', { class: 'person-name', 'data-testid': 'person-name' },
          h('span', { class: 'person-line' }, p.self ? `${p.displayName} (you)` : p.displayName),
          !p.self && !p.name && p.serverName ? h('small', { class: 'name-source' }, 'name as the server gives it') : null),
        p.hand ? h('span', { class: 'person-hand', 'data-testid': 'person-hand', title: 'Hand raised' }, handIcon()) : null,
        status,
        this.actions && !p.self && !p.removed ? h('button', {
          type: 'button', class: 'btn btn-quiet btn-small btn-remove', 'data-testid': 'remove',
          'aria-label': `Remove ${p.displayName} from the meeting`,
          onclick: () => {
            this.confirming = p.participant;
            this.render();
            this.roster.querySelector('.confirm')?.scrollIntoView({ block: 'nearest' });
          },
        }, 'Remove') : null),
      p.flags.map((f) => h('p', { class: 'flag', 'data-testid': 'person-flag' }, icon('alert'), f)));
    if (this.confirming === p.participant && this.actions) li.append(this.confirmBox(p));
    return li;
  }

  confirmBox(p) {
    const note = h('p', { class: 'small', role: 'status' });
    const yes = h('button', { type: 'button', class: 'btn btn-danger btn-small', 'data-testid': 'confirm-remove' }, 'Remove');
    yes.addEventListener('click', async () => {
      yes.disabled = true;
      note.textContent = 'Removing…';
      try {
        await this.actions.remove(p.participant, p.identity);
        this.confirming = '';
        this.render();
      } catch (err) {
        yes.disabled = false;
        note.textContent = err.message;
      }
    });
    return h('div', { class: 'confirm' },
      h('p', {}, `Remove ${p.displayName}? They are cut off at once and from every key after this one. With the same link and this browser they come back only through the lobby; to keep out someone who might return from another device, lock the meeting or turn the lobby on.`),
      h('div', { class: 'actions' }, yes,
        h('button', { type: 'button', class: 'btn btn-quiet btn-small', onclick: () => { this.confirming = ''; this.render(); } }, 'Cancel')),
      note);
  }

  buildHost() {
    const a = this.actions;
    this.hostNote = h('p', { class: 'small', role: 'status', 'data-testid': 'host-status' });
    const apply = async (locked, lobby) => {
      this.lock.set(locked, true);
      this.lobbyToggle.set(lobby, true);
      this.hostNote.textContent = '';
      try {
        await a.setSettings(locked, lobby);
      } catch (err) {
        this.hostNote.textContent = err.message;
      }
      this.busy = false;
      this.renderSwitches();
    };
    this.lock = switchButton('Lock the meeting', 'lock-toggle', (on) => apply(on, this.call.host.lobby));
    this.lobbyToggle = switchButton('Lobby: I let each newcomer in', 'lobby-toggle', (on) => apply(this.call.host.locked, on));
    this.waiting = h('ul', { class: 'lobby-list', 'data-testid': 'lobby-list' });
    this.waitingHead = h('h3', {}, 'Waiting in the lobby');
    this.waitingEmpty = h('p', { class: 'small' }, 'Nobody is waiting.');
    clear(this.hostBox,
      h('h3', {}, 'Host controls'),
      a.key ? null : h('p', { class: 'warning', 'data-testid': 'no-host-key' }, 'This browser does not hold the meeting’s host key, so members cannot check your controls. Run the meeting from the browser you created it in.'),
      h('div', { class: 'switches' }, this.lock, this.lobbyToggle),
      this.hostNote,
      this.waitingHead, this.waitingEmpty, this.waiting);
    this.pollLobby();
    this.lobbyTimer = setInterval(() => this.pollLobby(), LOBBY_POLL_MS);
    this.call.addEventListener('state', (e) => e.detail.state === 'ended' && clearInterval(this.lobbyTimer));
  }

  renderSwitches() {
    this.lock.set(this.call.host.locked);
    this.lobbyToggle.set(this.call.host.lobby);
  }

  async pollLobby() {
    let l;
    try {
      l = await this.actions.lobby();
    } catch {
      return;
    }
    this.showLobby(l.waiting ?? []);
  }

  showLobby(entries) {
    this.waitingCount = entries.length;
    this.waitingEmpty.hidden = entries.length > 0;
    this.waitingHead.textContent = entries.length ? `Waiting in the lobby (${entries.length})` : 'Waiting in the lobby';
    this.call.dispatchEvent(new CustomEvent('lobby-waiting', { detail: { count: entries.length } }));
    const shown = new Set();
    for (const e of entries) {
      shown.add(e.ticket);
      if (this.waiting.querySelector(`li[data-ticket="${CSS.escape(e.ticket)}"]`)) continue;
      this.waiting.append(this.lobbyEntry(e));
    }
    for (const li of [...this.waiting.children]) if (!shown.has(li.dataset.ticket) && !li.dataset.busy) li.remove();
  }

  lobbyEntry(e) {
    const c = e.location?.country;
    const where = c ? `${e.location?.source === 'client_hint' ? 'says they are in' : 'in'} ${this.countries.get(c)?.name ?? c}` : 'location unknown';
    const note = h('p', { class: 'small', role: 'status' });
    const decide = async (admit) => {
      li.dataset.busy = '1';
      for (const b of li.querySelectorAll('button')) b.disabled = true;
      note.textContent = admit ? 'Letting in…' : 'Turning away…';
      try {
        await this.actions.decide(e, admit);
        li.remove();
      } catch (err) {
        delete li.dataset.busy;
        for (const b of li.querySelectorAll('button')) b.disabled = false;
        note.textContent = err.message;
      }
    };
    const li = h('li', { 'data-ticket': e.ticket },
      h('div', { class: 'person-row' },
        h('span', { class: 'avatar-sm' }, initials(e.name)),
        h('span', { class: 'person-name' }, h('span', { 'data-testid': 'lobby-name' }, e.name || 'No name'), h('small', { class: 'lobby-where', 'data-testid': 'lobby-where' }, where)),
        h('button', { type: 'button', class: 'btn btn-primary btn-small', 'data-testid': 'admit', 'aria-label': `Let ${e.name} in`, onclick: () => decide(true) }, 'Admit'),
        h('button', { type: 'button', class: 'btn btn-quiet btn-small', 'data-testid': 'deny', 'aria-label': `Turn ${e.name} away`, onclick: () => decide(false) }, 'Deny')),
      e.removed ? h('p', { class: 'flag' }, icon('alert'), 'the host removed this browser before') : null,
      note);
    return li;
  }
}
