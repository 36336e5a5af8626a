// The meeting's side panels: chat; people with the security code to
// compare; and "where this meeting runs" — this participant's node, every
// other participant's node, the policy on a world map, and for the host
// the policy editor.

import { api } from './api.js';
import { clear, h, icon, initials, timeOf } from './dom.js';
import { PolicyPicker } from './policypicker.js';
import { WorldMap } from './worldmap.js';

const ROUTING_POLL_MS = 2000;

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

export class SecurityPanel {
  constructor(call) {
    this.title = 'People and security';
    this.call = call;
    this.code = h('p', { class: 'security-code', 'data-testid': 'security-code' });
    this.codeNote = h('p', { class: 'muted', 'data-testid': 'security-state' }, 'Exchanging keys…');
    this.roster = h('ul', { class: 'people', 'data-testid': 'roster' });
    this.el = h('div', { class: 'panel security' },
      h('div', { class: 'code-box' },
        h('p', { class: 'eyebrow' }, icon('lock'), 'End-to-end encrypted'),
        this.code, this.codeNote),
      h('p', { class: 'small' }, 'Compare this code with everyone, by reading it aloud or side by side. If it matches for everyone and the people below are who you expect, no server can see or hear this meeting. The code changes when someone joins or leaves.'),
      h('h3', {}, 'In the meeting'),
      this.roster);
    call.addEventListener('security', () => this.render());
    call.addEventListener('participants', () => this.render());
    this.render();
  }

  render() {
    const m = this.call.member;
    const code = m?.securityCode ?? '';
    // Groups as separate boxes, two rows of four; the text stays the
    // code exactly ("40938 94865 …") for copying and for screen readers.
    clear(this.code, code.split(' ').filter(Boolean).flatMap((g, i) => (i ? [' ', h('span', {}, g)] : [h('span', {}, g)])));
    this.code.hidden = !code;
    this.codeNote.textContent = code ? `Key epoch ${m.epoch} · ${m.roster.length} ${m.roster.length === 1 ? 'key holder' : 'key holders'}` : 'Exchanging keys… (nobody’s media is sent until it is encrypted)';
    const keyed = new Set((m?.roster ?? []).map((e) => e.participant));
    const people = [{ id: this.call.self.id, name: this.call.name, you: true }, ...this.call.participants.values()];
    clear(this.roster, people.map((p) => h('li', {},
      h('span', { class: 'avatar-sm' }, initials(p.name)),
      h('span', { class: 'person-name' }, p.you ? `${p.name} (you)` : p.name),
      keyed.has(p.id) ? h('span', { class: 'keyed', title: 'Holds the current media key' }, icon('lock'), 'in code') : h('span', { class: 'pending' }, 'joining keys…'))));
  }
}

export class RoutingPanel {
  constructor(call, { meeting, hostToken, geo }) {
    this.title = 'Where this meeting runs';
    this.call = call;
    this.meetingID = meeting.id;
    this.hostToken = hostToken;
    this.geo = geo;
    this.regions = new Map(geo.regions.map((r) => [r.id, r]));
    this.countries = new Map(geo.countries.map((c) => [c.code, c]));
    this.nodeCountry = h('span', { class: 'node-country', 'data-testid': 'node-country' });
    this.nodeDetail = h('span', { class: 'node-detail', 'data-testid': 'node-detail' });
    this.mapBox = h('div', { class: 'map-box' });
    this.map = new WorldMap(this.mapBox, { label: 'Map of this meeting’s media servers and the countries its policy rules out' });
    this.others = h('ul', { class: 'routes', 'data-testid': 'routes' });
    this.policyText = h('p', { class: 'small', 'data-testid': 'policy-text' });
    this.relays = h('p', { class: 'small', 'data-testid': 'relays' });
    this.hostBox = h('div', { class: 'host-box' });
    this.el = h('div', { class: 'panel routing', 'data-testid': 'routing-panel' },
      h('div', { class: 'my-node' }, h('p', { class: 'eyebrow' }, 'Your media goes through'), h('p', { class: 'node-line' }, this.nodeCountry, this.nodeDetail)),
      this.mapBox,
      h('div', { class: 'map-legend' },
        h('span', {}, h('i', { class: 'lg lg-active' }), 'server in use'),
        h('span', {}, h('i', { class: 'lg lg-country' }), 'ruled out by policy')),
      this.policyText,
      this.relays,
      h('h3', {}, 'Everyone’s server'),
      this.others,
      this.hostBox);
    call.addEventListener('node', () => this.renderNode());
    this.renderNode();
    if (hostToken) this.renderHost(meeting);
    this.poll();
    this.timer = setInterval(() => this.poll(), ROUTING_POLL_MS);
  }

  renderNode() {
    const n = this.call.self.node;
    this.nodeCountry.textContent = n?.country ?? '';
    const r = this.regions.get(n?.region);
    this.nodeDetail.textContent = n ? `${this.countries.get(n.country)?.name ?? n.country}${r ? ` · ${r.name}` : ''} (${n.id})` : 'connecting…';
  }

  async poll() {
    if (this.call.state === 'ended') {
      clearInterval(this.timer);
      return;
    }
    let r;
    try {
      r = await api.routing(this.meetingID);
    } catch {
      return;
    }
    const names = (cs) => cs.map((c) => this.countries.get(c)?.name ?? c).join(', ');
    const ep = r.effective_policy ?? {};
    const parts = [];
    if (ep.blocked_countries?.length) parts.push(`Never through ${names(ep.blocked_countries)}.`);
    if (ep.allowed_countries?.length) parts.push(`Only through ${names(ep.allowed_countries)}.`);
    if (ep.blocked_regions?.length) parts.push(`Never through the regions ${ep.blocked_regions.join(', ')}.`);
    this.policyText.textContent = parts.length ? `Policy: ${parts.join(' ')}` : 'Policy: no restriction beyond this deployment’s.';
    const me = this.call.self.id;
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
        const m = await api.setPolicy(this.meetingID, picker.policy(), this.hostToken);
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
