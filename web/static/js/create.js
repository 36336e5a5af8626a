// The create page: a title and a routing policy, with a live preview of
// which media servers the policy leaves; then the join link and the host
// link (the host token travels in the URL fragment, never to a server).

import { api } from './api.js';
import { clear, copyButton, h, icon, logo } from './dom.js';
import { PolicyPicker } from './policypicker.js';
import { WorldMap } from './worldmap.js';

export async function createPage(root) {
  const [config, geo, nodes] = await Promise.all([api.config(), api.geo(), api.nodes().catch(() => [])]);
  const regions = new Map(geo.regions.map((r) => [r.id, r]));
  const countries = new Map(geo.countries.map((c) => [c.code, c]));

  const title = h('input', { id: 'title', type: 'text', maxlength: 200, placeholder: 'Weekly board meeting', autocomplete: 'off', 'data-testid': 'title' });
  const status = h('p', { class: 'form-error', role: 'alert', hidden: true });
  const createBtn = h('button', { type: 'submit', class: 'btn btn-primary btn-large', 'data-testid': 'create' }, 'Create meeting');
  const summary = h('p', { class: 'preview-summary', 'data-testid': 'preview-summary', 'aria-live': 'polite' }, 'Checking servers…');
  const nodeList = h('ul', { class: 'node-list', 'data-testid': 'node-list' });
  const warnings = h('div', { class: 'warnings', 'aria-live': 'polite' });
  const mapBox = h('div', { class: 'map-box' });
  const map = new WorldMap(mapBox, { label: 'Map of the media servers this policy allows' });

  let seq = 0;
  let timer;
  const preview = (policy) => {
    clearTimeout(timer);
    timer = setTimeout(async () => {
      const mine = ++seq;
      try {
        const p = await api.preview(policy);
        if (mine !== seq) return;
        status.hidden = true;
        showPreview(p);
      } catch (err) {
        if (mine !== seq) return;
        status.hidden = false;
        status.textContent = err.message;
      }
    }, 200);
  };

  const showPreview = (p) => {
    const allowed = new Set(p.allowed_nodes ?? []);
    const healthy = nodes.filter((n) => n.healthy);
    summary.textContent = `${allowed.size} of ${healthy.length} media servers can carry this meeting.`;
    summary.classList.toggle('bad', allowed.size === 0);
    clear(nodeList, healthy
      .sort((a, b) => Number(allowed.has(b.id)) - Number(allowed.has(a.id)) || a.country.localeCompare(b.country))
      .map((n) => {
        const ok = allowed.has(n.id);
        const r = regions.get(n.region);
        return h('li', { class: ok ? 'ok' : 'no', 'data-node': n.id },
          icon(ok ? 'check' : 'x'),
          h('span', { class: 'cc' }, n.country),
          h('span', { class: 'node-name' }, countries.get(n.country)?.name ?? n.country, r ? h('small', {}, ` · ${r.name}`) : null));
      }));
    clear(warnings, (p.warnings ?? []).map((w) => h('p', { class: 'warning' }, w)));
    map.update(p.effective_policy, healthy.map((n) => {
      const r = regions.get(n.region) ?? countries.get(n.country);
      return { lat: r?.lat, lon: r?.lon, state: allowed.has(n.id) ? 'allowed' : 'excluded', label: `${n.id} (${n.country})` };
    }));
  };

  const picker = new PolicyPicker(geo, config.floor, { policy: {}, onChange: preview });

  const form = h('form', { class: 'card create-form', novalidate: true },
    h('h1', {}, 'Start a private meeting'),
    h('p', { class: 'lede' }, 'Video is encrypted end to end, and you decide which countries its traffic may pass through.'),
    h('div', { class: 'field' }, h('label', { for: 'title', class: 'field-label' }, 'Meeting title'), title),
    h('h2', {}, 'Where may this meeting travel?'),
    picker.el,
    status,
    h('div', { class: 'actions' }, createBtn));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    createBtn.disabled = true;
    createBtn.textContent = 'Creating…';
    try {
      const m = await api.create(title.value.trim() || 'Meeting', picker.policy());
      sessionStorage.setItem(`oakmeet.host.${m.id}`, m.host_token);
      showResult(root, m);
    } catch (err) {
      status.hidden = false;
      status.textContent = err.message;
      createBtn.disabled = false;
      createBtn.textContent = 'Create meeting';
    }
  });

  clear(root, h('div', { class: 'page create-page' },
    h('header', { class: 'site-head' }, logo(), h('p', { class: 'tagline' }, 'Encrypted end to end. Routed only where you allow.')),
    form,
    h('aside', { class: 'card preview', 'aria-label': 'Where this policy lets the meeting run' },
      h('h2', {}, 'Servers this policy leaves'),
      mapBox,
      h('div', { class: 'map-legend' },
        h('span', {}, h('i', { class: 'lg lg-allowed' }), 'allowed server'),
        h('span', {}, h('i', { class: 'lg lg-excluded' }), 'ruled out'),
        h('span', {}, h('i', { class: 'lg lg-country' }), 'country ruled out')),
      summary, warnings, nodeList)));
  preview(picker.policy());
  title.focus();
}

function showResult(root, m) {
  const base = location.origin;
  const join = `${base}/m/${m.id}`;
  const host = `${join}#host=${m.host_token}`;
  const row = (labelText, value, testid, note) => h('div', { class: 'link-row' },
    h('div', { class: 'link-label' }, labelText),
    h('div', { class: 'link-value' }, h('input', { type: 'text', readonly: true, value, 'data-testid': testid, onfocus: (e) => e.target.select() }), copyButton(value)),
    note ? h('p', { class: 'field-hint' }, note) : null);
  clear(root, h('div', { class: 'page narrow' },
    h('header', { class: 'topbar-light' }, logo()),
    h('section', { class: 'card result', 'data-testid': 'result' },
      h('div', { class: 'result-icon' }, icon('shield')),
      h('h1', {}, m.title || 'Your meeting is ready'),
      h('p', { class: 'lede' }, `Routing policy fingerprint ${m.policy_hash.slice(0, 12)}… · ${m.allowed_nodes.length} media servers allowed`),
      (m.warnings ?? []).map((w) => h('p', { class: 'warning' }, w)),
      row('Invite link', join, 'join-link', 'Share this with the people you invite.'),
      row('Host link', host, 'host-link', 'Keep this to yourself: it lets you change the routing policy. The key after # never reaches a server.'),
      h('div', { class: 'actions' },
        h('a', { class: 'btn btn-primary btn-large', href: `/m/${m.id}`, 'data-testid': 'join-now' }, 'Join now'),
        h('a', { class: 'btn btn-quiet', href: '/' }, 'Create another'))))); 
}
