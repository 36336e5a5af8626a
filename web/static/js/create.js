// The create page: a title, a routing policy with a live preview of which
// media servers it leaves, and whether newcomers wait in a lobby. Creating
// makes the meeting's host key here (a non-extractable Ed25519 key kept in
// this browser's IndexedDB), signs the policy's effective hash with it and
// shows two links: the invite link to share (the join secret and the host
// key's fingerprint in its fragment, never sent to a server) and the host's
// own link (the same plus the host token).

import { api } from './api.js';
import { clear, copyButton, h, icon, logo } from './dom.js';
import { b64 } from './e2ee/bytes.js';
import { signPolicy } from './hostcontrol.js';
import { HostKey, saveHostKey } from './hoststmt.js';
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
  const lobby = h('input', { id: 'lobby', type: 'checkbox', 'data-testid': 'lobby-on' });

  const form = h('form', { class: 'card create-form', novalidate: true },
    h('h1', {}, 'Start a private meeting'),
    h('p', { class: 'lede' }, 'Video is encrypted end to end, and you decide which countries its traffic may pass through.'),
    h('div', { class: 'field' }, h('label', { for: 'title', class: 'field-label' }, 'Meeting title'), title),
    h('h2', {}, 'Where may this meeting travel?'),
    picker.el,
    h('h2', {}, 'Who may come in?'),
    h('div', { class: 'toggle-row' }, lobby, h('label', { for: 'lobby' }, 'Hold everyone in a lobby until I let them in')),
    h('p', { class: 'field-hint' }, 'Only people with the invite link can join. You can also lock the meeting and remove people once it runs.'),
    status,
    h('div', { class: 'actions' }, createBtn));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    createBtn.disabled = true;
    createBtn.textContent = 'Creating…';
    try {
      const m = await create(title.value.trim() || 'Meeting', picker.policy(), lobby.checked);
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

// create makes the host key, signs the policy the control plane will
// enforce (its rules, their hash and the deployment's enrollment key, as
// the preview gives them, once checked against what the host picked) and
// creates the meeting; the key is kept for the meeting's id, known only now.
async function create(title, policy, lobby) {
  const key = await HostKey.generate();
  const p = await api.preview(policy);
  // The meeting's first policy statement: its enrollment key becomes the
  // meeting's for good (trust on first use; later ones must name it).
  const statement = await signPolicy(key, p, policy, null);
  const m = await api.create({ title, policy, host_key: b64(key.publicKey), policy_statement: statement, lobby });
  if (lobby) {
    // Members see the lobby from the host's signed settings, not from the
    // server's word: sign the settings the meeting starts with.
    const settings = await key.sign({ kind: 'settings', locked: false, lobby: true });
    await api.settings(m.id, { locked: false, lobby: true, statement: settings }, m.host_token);
  }
  try {
    await saveHostKey(m.id, key);
    m.keyKept = true;
  } catch {
    m.keyKept = false;
  }
  sessionStorage.setItem(`oakmeet.host.${m.id}`, m.host_token);
  return m;
}

// sameOrigin keeps a link's path and fragment on this page's origin: the
// control plane names itself as the request reached it, which behind a
// proxy may not be the address this browser used.
function sameOrigin(link) {
  try {
    const u = new URL(link);
    return `${location.origin}${u.pathname}${u.hash}`;
  } catch {
    return link;
  }
}

function showResult(root, m) {
  const join = sameOrigin(m.join_url);
  const host = sameOrigin(m.host_url);
  const row = (cls, labelText, tag, value, testid, note) => h('div', { class: `link-row ${cls}` },
    h('div', { class: 'link-label' }, labelText, h('span', { class: 'link-tag' }, tag)),
    h('div', { class: 'link-value' }, h('input', { type: 'text', readonly: true, value, 'aria-label': labelText, 'data-testid': testid, onfocus: (e) => e.target.select() }), copyButton(value)),
    h('p', { class: 'field-hint' }, note));
  clear(root, h('div', { class: 'page narrow' },
    h('header', { class: 'topbar-light' }, logo()),
    h('section', { class: 'card result', 'data-testid': 'result' },
      h('div', { class: 'result-icon' }, icon('shield')),
      h('h1', {}, m.title || 'Your meeting is ready'),
      h('p', { class: 'lede' }, `Routing policy fingerprint ${m.policy_hash.slice(0, 12)}… · ${m.allowed_nodes.length} media servers allowed${m.lobby ? ' · lobby on' : ''}`),
      (m.warnings ?? []).map((w) => h('p', { class: 'warning' }, w)),
      row('share', 'Invite link', 'share this', join, 'join-link',
        'Send this to the people you invite. Everything after # stays in their browser: the meeting’s secret and the fingerprint of your host key, which their app checks your controls against.'),
      row('keep', 'Your host link', 'keep this — it lets you run the meeting', host, 'host-link',
        'Anyone with this link can lock the meeting, let people in and remove them. Do not share it.'),
      m.keyKept ? h('p', { class: 'small host-key-note' }, icon('lock'),
        'Your host key was made in this browser and cannot leave it: run the meeting from here.')
        : h('p', { class: 'warning' }, 'This browser could not keep your host key (private window?): your controls will work only until you close this tab.'),
      h('div', { class: 'actions' },
        h('a', { class: 'btn btn-primary btn-large', href: host, 'data-testid': 'join-now' }, 'Join now as host'),
        h('a', { class: 'btn btn-quiet', href: '/' }, 'Create another')))));
}
