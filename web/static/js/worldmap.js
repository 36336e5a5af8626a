// The world map: Natural Earth country outlines (public domain, projected
// and simplified once by web/tools/worldmap.mjs into /world.json), with
// the countries a policy rules out shaded and media nodes marked.

import { project } from './projection.js';

const NS = 'http://www.w3.org/2000/svg';
let data;

function svg(tag, attrs) {
  const el = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

export function loadMap() {
  // A failed download is not kept: the next map asks again.
  data ??= fetch('/world.json').then((r) => {
    if (!r.ok) throw new Error(`HTTP ${r.status}`);
    return r.json();
  }).catch((err) => {
    data = undefined;
    throw err;
  });
  return data;
}

// excluded reports whether an effective policy rules out a country.
export function excluded(policy, code) {
  if (!policy) return false;
  if ((policy.blocked_countries ?? []).includes(code)) return true;
  const allow = policy.allowed_countries ?? [];
  return allow.length > 0 && !allow.includes(code);
}

// WorldMap draws into a container; update() re-marks it.
export class WorldMap {
  constructor(container, { label = 'World map' } = {}) {
    this.el = svg('svg', { class: 'worldmap', role: 'img', 'aria-label': label, preserveAspectRatio: 'xMidYMid meet' });
    this.countries = new Map();
    this.nodes = svg('g', { class: 'map-nodes' });
    container.append(this.el);
    this.loaded = loadMap().then((d) => {
      this.el.setAttribute('viewBox', `0 0 ${d.w} ${d.h}`);
      const g = svg('g', { class: 'map-countries' });
      for (const [code, d2] of Object.entries(d.shapes)) {
        const p = svg('path', { d: d2, 'data-cc': code });
        this.countries.set(code, p);
        g.append(p);
      }
      for (const [code, [x, y]] of Object.entries(d.dots)) {
        const c = svg('circle', { cx: x, cy: y, r: 1.8, 'data-cc': code, class: 'map-dot' });
        this.countries.set(code, c);
        g.append(c);
      }
      this.el.append(g, this.nodes);
    }).catch((err) => {
      // The map is an aid, not the routing facts: the panel's text still
      // says where media goes. Say why the map is missing.
      console.info(`oakmeet: the world map: ${err.message}`);
      const note = document.createElement('p');
      note.className = 'map-error';
      note.dataset.testid = 'map-error';
      note.textContent = `Map could not be loaded: ${err.message}`;
      container.append(note);
      this.failed = err;
    });
  }

  // update shades what policy excludes, draws relay links between nodes
  // ([{from: {lat, lon}, to: {lat, lon}, connected}]) and marks nodes:
  // [{lat, lon, state: 'active'|'allowed'|'excluded', label}].
  async update(policy, nodes = [], links = []) {
    await this.loaded;
    for (const [code, el] of this.countries) el.classList.toggle('excluded', excluded(policy, code));
    this.nodes.replaceChildren();
    for (const l of links) {
      if (typeof l.from?.lat !== 'number' || typeof l.to?.lat !== 'number') continue;
      const [x1, y1] = project(l.from.lon, l.from.lat);
      const [x2, y2] = project(l.to.lon, l.to.lat);
      // A gentle arc, bowed towards the pole, reads as a route.
      const mx = (x1 + x2) / 2, my = (y1 + y2) / 2 - Math.hypot(x2 - x1, y2 - y1) * 0.18;
      this.nodes.append(svg('path', { d: `M${x1.toFixed(1)} ${y1.toFixed(1)}Q${mx.toFixed(1)} ${my.toFixed(1)} ${x2.toFixed(1)} ${y2.toFixed(1)}`, class: `map-link${l.connected ? '' : ' pending'}` }));
    }
    const order = { excluded: 0, allowed: 1, active: 2 };
    for (const n of [...nodes].sort((a, b) => order[a.state] - order[b.state])) {
      if (typeof n.lat !== 'number') continue;
      const [x, y] = project(n.lon, n.lat);
      const g = svg('g', { class: `map-node ${n.state}`, transform: `translate(${x.toFixed(1)} ${y.toFixed(1)})` });
      if (n.state === 'active') g.append(svg('circle', { r: 20, class: 'pulse' }));
      g.append(svg('circle', { r: n.state === 'active' ? 10 : 8 }));
      const title = svg('title', {});
      title.textContent = n.label ?? '';
      g.append(title);
      this.nodes.append(g);
    }
  }
}
