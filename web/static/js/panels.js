// The meeting's side panels: chat, and "where this meeting runs" — this
// participant's node, every participant's node as this browser verified it
// (their signed node certificates against the host-signed policy) and
// apart from that what the server reports, the policy on a world map, and
// for the host the policy editor. (People and the security code are
// people.js.)

import { api } from './api.js';
import { clear, h, icon, timeOf } from './dom.js';
import { PolicyPicker } from './policypicker.js';
import { WorldMap } from './worldmap.js';

const ROUTING_POLL_MS = 2000;

// auditAlarmText is the alarm for a log that contradicts what this
// browser saw before.
export function auditAlarmText(a) {
  return `The audit log contradicts what this browser saw before: ${a.reason}`;
}

export class ChatPanel {
  constructor(call) {
    this.title = 'Chat';
    this.call = call;
    this.list = h('ol', { class: 'chat-list', 'aria-live': 'polite', 'data-testid': 'chat-list' });
    this.input = h('input', { type: 'text', maxlength: 4096, placeholder: 'Message everyone', 'aria-label': 'Message', 'data-testid': 'chat-input' });
    const form = h('form', { class: 'chat-form' }, this.input, h('button', { class: 'btn btn-primary btn-small', type: 'submit' }, 'Send'));
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const text = this.input.value.trim();
      if (text) call.sendChat(text);
      this.input.value = '';
    });
    this.empty = h('p', { class: 'muted center' }, 'Messages go through the media server to everyone here.');
    this.el = h('div', { class: 'panel chat' }, this.empty, this.list, form);
    call.addEventListener('chat', (e) => this.add(e.detail));
  }

  add(m) {
    this.empty.hidden = true;
    this.list.append(h('li', { class: m.self ? 'me' : '' },
      h('div', { class: 'chat-meta' }, h('strong', {}, m.self ? 'You' : m.name), h('time', {}, timeOf(m.time))),
      h('p', {}, m.text)));
    this.list.scrollTop = this.list.scrollHeight;
  }

  shown() {
    this.input.focus();
  }
}

export class RoutingPanel {
  constructor(call, { meeting, actions, geo }) {
    this.title = 'Where this meeting runs';
    this.call = call;
    this.meetingID = meeting.id;
    this.actions = actions;
    this.geo = geo;
    this.regions = new Map(geo.regions.map((r) => [r.id, r]));
    this.countries = new Map(geo.countries.map((c) => [c.code, c]));
    this.nodeCountry = h('span', { class: 'node-country', 'data-testid': 'node-country' });
    this.nodeDetail = h('span', { class: 'node-detail', 'data-testid': 'node-detail' });
    this.mapBox = h('div', { class: 'map-box' });
    this.map = new WorldMap(this.mapBox, { label: 'Map of this meeting’s media servers and the countries its policy rules out' });
    this.others = h('ul', { class: 'routes', 'data-testid': 'routes' });
    this.myMark = h('p', { class: 'node-mark', 'data-testid': 'my-node-check' });
    this.auditMark = h('p', { class: 'audit-mark', 'data-testid': 'audit-status', role: 'status' });
    this.checked = h('ul', { class: 'routes verified-nodes', 'data-testid': 'verified-nodes' });
    this.policyText = h('p', { class: 'small', 'data-testid': 'policy-text' });
    this.relays = h('p', { class: 'small', 'data-testid': 'relays' });
    this.hostBox = h('div', { class: 'host-box' });
    // A refresh that failed says so here, rather than leaving the panel
    // empty or stale; the next refresh tries again and clears it.
    this.error = h('p', { class: 'panel-error', 'data-testid': 'panel-error', role: 'status', hidden: true });
    this.el = h('div', { class: 'panel routing', 'data-testid': 'routing-panel' },
      this.error,
      h('div', { class: 'my-node' }, h('p', { class: 'eyebrow' }, 'Your media goes through'), h('p', { class: 'node-line' }, this.nodeCountry, this.nodeDetail), this.myMark, this.auditMark),
      this.mapBox,
      h('div', { class: 'map-legend' },
        h('span', {}, h('i', { class: 'lg lg-active' }), 'server in use'),
        h('span', {}, h('i', { class: 'lg lg-country' }), 'ruled out by policy')),
      this.policyText,
      this.relays,
      h('h3', {}, 'Everyone’s server, checked by your browser'),
      h('p', { class: 'small muted' }, 'Each person’s own app signs the certificate of the server it is on; your browser checks it against the host’s signed policy and this deployment’s enrollment key.'),
      this.checked,
      h('h3', {}, 'What the server reports'),
      this.others,
      this.hostBox);
    call.addEventListener('node', () => { this.renderNode(); this.renderChecks(); });
    call.addEventListener('security', () => this.renderChecks());
    call.addEventListener('host', () => this.renderChecks());
    call.addEventListener('audit', () => this.renderAudit());
    this.renderNode();
    this.renderAudit();
    if (actions) this.renderHost(meeting);
    this.poll();
    this.timer = setInterval(() => this.poll(), ROUTING_POLL_MS);
  }

  showError(text) {
    this.error.hidden = !text;
    this.error.textContent = text;
  }

  renderNode() {
    const n = this.call.self.node;
    this.nodeCountry.textContent = n?.country ?? '';
    const r = this.regions.get(n?.region);
    this.nodeDetail.textContent = n ? `${this.countries.get(n.country)?.name ?? n.country}${r ? ` · ${r.name}` : ''} (${n.id})` : 'connecting…';
  }

  // renderChecks shows what this browser verified of everyone's node,
  // its own included; the latest call wins when checks overlap.
  async renderChecks() {
    const gen = (this.checkGen = (this.checkGen ?? 0) + 1);
    let checks;
    try {
      checks = await this.call.nodeChecks();
    } catch (err) {
      console.info(`oakmeet: checking everyone's media server: ${err.message}`);
      return;
    }
    if (gen !== this.checkGen) return;
    const server = this.call.participants;
    const people = new Map((this.call.member?.people?.() ?? []).map((p) => [p.participant, p]));
    const nameOf = (c) => (c.self ? `${this.call.name} (you)` : people.get(c.participant)?.name || server.get(c.participant)?.name || 'Unknown');
    const mine = checks.find((c) => c.self);
    this.mark(this.myMark, mine ?? { status: 'unknown' }, true);
    clear(this.checked, checks.map((c) => {
      const li = h('li', { 'data-participant': c.participant, 'data-status': c.status, class: `check-${c.status}${c.self ? ' me' : ''}` },
        h('span', { class: 'person-name' }, nameOf(c)),
        c.cert ? h('span', { class: 'cc', 'data-testid': 'verified-country' }, c.cert.country) : null,
        h('span', { class: 'node-mark' }));
      this.mark(li.lastChild, c, false);
      return li;
    }));
  }

  // renderAudit shows what this browser checked of the deployment's
  // audit log (auditwatch.js): consistent with every checkpoint it held
  // before and holding this browser's placement, not checkable just now
  // (stale, amber), or the alarm.
  renderAudit() {
    const a = this.call.auditLog;
    const el = this.auditMark;
    el.dataset.state = a.state;
    el.className = `audit-mark audit-${a.state}`;
    if (a.state === 'inconsistent') {
      clear(el, icon('alert'), h('span', { class: 'mark-text' }, auditAlarmText(a)));
      el.title = 'A log that only grows can never contradict a checkpoint it signed before. Tell the host: the operator showed this browser a log rewritten, truncated or forked.';
    } else if (a.state === 'stale') {
      clear(el, icon('alert'), h('span', { class: 'mark-text' }, `The audit log could not be checked: ${a.reason}`));
      el.title = 'Not a contradiction, yet no proof: the server did not give the proofs or the newer checkpoints this browser asked for. It asks again; a check that succeeds clears this.';
    } else if (a.state === 'consistent') {
      const n = a.size;
      const placed = a.ownIncluded ? 'your placement is in it' : 'looking for your placement…';
      const changes = a.policyChanges ? ` · ${a.policyChanges} policy ${a.policyChanges === 1 ? 'change' : 'changes'} in it` : '';
      clear(el, icon('shield'), h('span', { class: 'mark-text' }, `Audit log consistent · ${n} ${n === 1 ? 'entry' : 'entries'} · ${placed}${changes}`));
      el.title = `Every checkpoint of the deployment's audit log this browser has seen (${a.checkpoints().length} kept here) extends the one before, by proofs your browser checked; the log's entry for where you were placed names the server you were given.`;
    } else {
      clear(el, h('span', { class: 'mark-text' }, 'Audit log: not checked yet'));
      el.title = '';
    }
  }

  // mark writes one node's check: verified, not allowed (in red, naming
  // the country), invalid or not known yet.
  mark(el, c, own) {
    const country = (cc) => this.countries.get(cc)?.name ?? cc;
    el.dataset.status = c.status;
    el.className = `node-mark mark-${c.status}`;
    const where = c.cert ? `${c.cert.node}, ${country(c.cert.country)}${c.cert.region ? ` · ${this.regions.get(c.cert.region)?.name ?? c.cert.region}` : ''}` : '';
    switch (c.status) {
      case 'verified':
        clear(el, icon('shield'), h('span', { class: 'mark-text' }, 'verified by your browser'), own ? null : h('small', {}, `${where}`));
        el.title = `The certificate of ${where} is signed by this deployment's enrollment key, valid now, and the host's policy allows ${country(c.cert.country)}.`;
        break;
      case 'not_allowed':
        clear(el, icon('alert'), h('span', { class: 'mark-text' }, `not allowed by the host’s policy: ${country(c.cert.country)} (${c.cert.country})`), h('small', {}, c.cert.node));
        el.title = `This server is in ${country(c.cert.country)}, which the host's signed policy rules out.`;
        break;
      case 'invalid':
        clear(el, icon('alert'), h('span', { class: 'mark-text' }, 'certificate invalid'));
        el.title = c.error ?? '';
        break;
      default:
        clear(el, h('span', { class: 'mark-text' }, own ? 'checking…' : 'not known yet'));
        el.title = c.error ?? 'This person’s app has not yet sent your browser the certificate of its server.';
    }
  }

  async poll() {
    if (this.call.state === 'ended') {
      clearInterval(this.timer);
      return;
    }
    let r;
    try {
      // One meeting's routing is for its members: the join secret (or
      // the host token) says so.
      r = await api.routing(this.meetingID, this.call.link.secret || this.actions?.token);
    } catch (err) {
      this.showError(`Could not load where this meeting runs: ${String(err.message ?? err).replace(/\.$/, '')}. Trying again…`);
      return;
    }
    this.showError('');
    const names = (cs) => cs.map((c) => this.countries.get(c)?.name ?? c).join(', ');
    const ep = r.effective_policy ?? {};
    const parts = [];
    if (ep.blocked_countries?.length) parts.push(`Never through ${names(ep.blocked_countries)}.`);
    if (ep.allowed_countries?.length) parts.push(`Only through ${names(ep.allowed_countries)}.`);
    if (ep.blocked_regions?.length) parts.push(`Never through the regions ${ep.blocked_regions.join(', ')}.`);
    this.policyText.textContent = parts.length ? `Policy: ${parts.join(' ')}` : 'Policy: no restriction beyond this deployment’s.';
    const me = this.call.self.id;
    this.renderChecks();
    clear(this.others, (r.participants ?? []).map((p) => h('li', { 'data-participant': p.id, class: p.id === me ? 'me' : '' },
      h('span', { class: 'person-name' }, p.id === me ? `${p.name} (you)` : p.name),
      h('span', { class: 'cc', 'data-testid': 'participant-node-country' }, p.node?.country ?? '?'),
      h('small', {}, this.regions.get(p.node?.region)?.name ?? p.node?.region ?? ''))));
    const mineID = this.call.self.node?.id;
    const where = (n) => this.regions.get(n?.region) ?? this.countries.get(n?.country);
    const relays = r.relays ?? [];
    this.relays.textContent = relays.length
      ? `Relays between servers: ${relays.map((l) => `${l.from.country} ⇄ ${l.to.country}${l.connected ? '' : ' (connecting)'}`).join(', ')}.`
      : '';
    this.map.update(ep, (r.nodes ?? []).map((n) => {
      const at = where(n);
      return { lat: at?.lat, lon: at?.lon, state: 'active', label: `${n.id} (${n.country}) · ${n.participants} here${n.id === mineID ? ' · you' : ''}` };
    }), relays.map((l) => ({ from: where(l.from), to: where(l.to), connected: l.connected })));
  }

  renderHost(meeting) {
    const status = h('p', { class: 'small', role: 'status', 'data-testid': 'policy-status' });
    const apply = h('button', { class: 'btn btn-primary', type: 'button', 'data-testid': 'apply-policy' }, 'Apply to this meeting');
    const picker = new PolicyPicker(this.geo, meeting.floor, { policy: meeting.policy ?? {}, onChange: () => { status.textContent = ''; } });
    apply.addEventListener('click', async () => {
      apply.disabled = true;
      status.textContent = 'Applying…';
      try {
        const m = await this.actions.setPolicy(picker.policy());
        status.textContent = m.warnings?.length ? m.warnings.join(' ') : 'Applied. Anyone on a server the new policy rules out is moved.';
        this.poll();
      } catch (err) {
        status.textContent = err.message;
      } finally {
        apply.disabled = false;
      }
    });
    clear(this.hostBox, h('h3', {}, 'Host: change the routing policy'), picker.el, h('div', { class: 'actions' }, apply), status);
  }
}
