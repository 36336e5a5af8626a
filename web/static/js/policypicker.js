// The routing policy editor: presets, a searchable country picker for the
// countries traffic must never touch, an optional allow-list, and the
// deployment's floor shown as rules that cannot be removed. Used on the
// create page and by the host in a meeting.

import { clear, h, icon } from './dom.js';

let pickerID = 0;

// label names a chip: a group as "EU · 27 countries", a country by name.
function label(geo, code) {
  if (geo.groups?.[code]) return `${code} · ${geo.groups[code].length} countries`;
  return geo.names.get(code) ?? code;
}

// CountryField is a list of chips and a combobox that adds to it.
class CountryField {
  constructor(geo, { title, hint, locked = [], placeholder, onChange, testid }) {
    this.geo = geo;
    this.values = [];
    this.locked = locked;
    this.onChange = onChange;
    this.placeholder = placeholder;
    const id = `cf-${++pickerID}`;
    this.chips = h('div', { class: 'chips', 'aria-live': 'polite' });
    this.input = h('input', {
      id, type: 'text', class: 'chip-input', placeholder, autocomplete: 'off', role: 'combobox',
      'aria-expanded': 'false', 'aria-controls': `${id}-list`, 'aria-autocomplete': 'list', 'data-testid': testid,
    });
    this.list = h('ul', { id: `${id}-list`, class: 'suggestions', role: 'listbox', hidden: true });
    this.active = -1;
    this.input.addEventListener('input', () => this.suggest());
    this.input.addEventListener('focus', () => this.suggest());
    this.input.addEventListener('blur', () => setTimeout(() => this.close(), 150));
    this.input.addEventListener('keydown', (e) => this.key(e));
    this.el = h('div', { class: 'field' },
      h('label', { for: id, class: 'field-label' }, title),
      hint ? h('p', { class: 'field-hint' }, hint) : null,
      h('div', { class: 'chip-box', onclick: () => this.input.focus() }, this.chips, this.input),
      this.list);
    this.render();
  }

  set(values) {
    this.values = [...new Set(values)];
    this.render();
  }

  add(code) {
    if (!this.values.includes(code) && !this.locked.includes(code)) {
      this.values.push(code);
      this.render();
      this.onChange();
    }
    this.input.value = '';
    this.close();
  }

  remove(code) {
    this.values = this.values.filter((c) => c !== code);
    this.render();
    this.onChange();
    this.input.focus();
  }

  render() {
    this.input.placeholder = this.values.length || this.locked.length ? 'Add another…' : this.placeholder;
    clear(this.chips,
      this.locked.map((c) => h('span', { class: 'chip chip-locked', title: 'Set by this deployment for every meeting; it cannot be removed' }, icon('lock'), label(this.geo, c))),
      this.values.map((c) => h('span', { class: 'chip', 'data-code': c }, label(this.geo, c),
        h('button', { type: 'button', class: 'chip-x', 'aria-label': `Remove ${label(this.geo, c)}`, onclick: (e) => { e.stopPropagation(); this.remove(c); } }, icon('x')))));
  }

  matches() {
    const q = this.input.value.trim().toLowerCase();
    const taken = new Set([...this.values, ...this.locked]);
    const groups = Object.keys(this.geo.groups ?? {}).map((g) => ({ code: g, name: label(this.geo, g) }));
    const all = [...groups, ...this.geo.countries.map((c) => ({ code: c.code, name: c.name }))];
    return all.filter((c) => !taken.has(c.code) && (!q || c.code.toLowerCase() === q || c.name.toLowerCase().includes(q)))
      .sort((a, b) => {
        const ap = a.name.toLowerCase().startsWith(q) || a.code.toLowerCase() === q ? 0 : 1;
        const bp = b.name.toLowerCase().startsWith(q) || b.code.toLowerCase() === q ? 0 : 1;
        return ap - bp || a.name.localeCompare(b.name);
      })
      .slice(0, 8);
  }

  suggest() {
    this.items = this.matches();
    this.active = this.items.length ? 0 : -1;
    clear(this.list, this.items.map((c, i) => h('li', {
      role: 'option', id: `${this.list.id}-${i}`, 'data-code': c.code, class: i === this.active ? 'active' : '',
      onmousedown: (e) => { e.preventDefault(); this.add(c.code); },
    }, h('span', { class: 'code' }, c.code), c.name)));
    this.list.hidden = this.items.length === 0;
    this.input.setAttribute('aria-expanded', String(!this.list.hidden));
    this.highlight();
  }

  highlight() {
    [...this.list.children].forEach((li, i) => li.classList.toggle('active', i === this.active));
    if (this.active >= 0) this.input.setAttribute('aria-activedescendant', `${this.list.id}-${this.active}`);
    else this.input.removeAttribute('aria-activedescendant');
  }

  close() {
    this.list.hidden = true;
    this.input.setAttribute('aria-expanded', 'false');
  }

  key(e) {
    if (e.key === 'ArrowDown' || e.key === 'ArrowUp') {
      if (this.list.hidden) this.suggest();
      const n = this.items?.length ?? 0;
      if (n) this.active = (this.active + (e.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.highlight();
      e.preventDefault();
    } else if (e.key === 'Enter') {
      if (!this.list.hidden && this.active >= 0) {
        this.add(this.items[this.active].code);
        e.preventDefault();
      }
    } else if (e.key === 'Escape') {
      this.close();
    } else if (e.key === 'Backspace' && this.input.value === '' && this.values.length) {
      this.remove(this.values[this.values.length - 1]);
    }
  }
}

// PolicyPicker edits a policy {blocked_countries, allowed_countries}.
export class PolicyPicker {
  constructor(geo, floor, { policy, onChange }) {
    geo.names ??= new Map(geo.countries.map((c) => [c.code, c.name]));
    this.onChange = onChange ?? (() => {});
    const changed = () => {
      this.syncPresets();
      this.onChange(this.policy());
    };
    this.blocked = new CountryField(geo, {
      title: 'Never route through',
      hint: 'Media, relays and TURN for this meeting never touch servers in these countries.',
      locked: floor?.blocked_countries ?? [],
      placeholder: 'Add a country or group, e.g. China',
      onChange: changed,
      testid: 'block-input',
    });
    this.allowed = new CountryField(geo, {
      title: 'Only route through',
      hint: 'Nothing outside these countries is used.',
      placeholder: 'Add a country or group, e.g. EU',
      onChange: changed,
      testid: 'allow-input',
    });
    this.allowToggle = h('input', { type: 'checkbox', id: `allow-${++pickerID}`, 'data-testid': 'allow-mode' });
    this.allowToggle.addEventListener('change', () => {
      this.allowed.el.hidden = !this.allowToggle.checked;
      changed();
    });
    const presets = [
      ['No restriction', { blocked_countries: [], allowed_countries: [] }],
      ['EU only', { blocked_countries: [], allowed_countries: ['EU'] }],
      ['Block CN and RU', { blocked_countries: ['CN', 'RU'], allowed_countries: [] }],
    ];
    this.presetButtons = presets.map(([name, p]) => {
      const b = h('button', { type: 'button', class: 'preset', 'aria-pressed': 'false', 'data-preset': name }, name);
      b.addEventListener('click', () => {
        this.set(p);
        changed();
      });
      b.preset = p;
      return b;
    });
    const floorNotes = [];
    if (floor?.allowed_countries?.length) floorNotes.push(`This deployment only ever uses servers in: ${floor.allowed_countries.join(', ')}.`);
    if (floor?.blocked_regions?.length) floorNotes.push(`This deployment never uses the regions ${floor.blocked_regions.join(', ')}.`);
    this.el = h('div', { class: 'policy-picker' },
      h('div', { class: 'presets', role: 'group', 'aria-label': 'Presets' }, this.presetButtons),
      this.blocked.el,
      h('div', { class: 'toggle-row' }, this.allowToggle, h('label', { for: this.allowToggle.id }, 'Use an allow-list instead: only the countries I name')),
      this.allowed.el,
      floorNotes.map((n) => h('p', { class: 'floor-note' }, icon('lock'), n)));
    this.set(policy ?? {});
    this.syncPresets();
  }

  set(p) {
    this.blocked.set(p.blocked_countries ?? []);
    this.allowed.set(p.allowed_countries ?? []);
    this.allowToggle.checked = (p.allowed_countries ?? []).length > 0;
    this.allowed.el.hidden = !this.allowToggle.checked;
    this.regions = p.blocked_regions ?? [];
  }

  policy() {
    const p = { blocked_countries: [...this.blocked.values] };
    if (this.allowToggle.checked && this.allowed.values.length) p.allowed_countries = [...this.allowed.values];
    if (this.regions.length) p.blocked_regions = [...this.regions];
    return p;
  }

  syncPresets() {
    const cur = this.policy();
    const same = (a = [], b = []) => a.length === b.length && a.every((x) => b.includes(x));
    for (const b of this.presetButtons) {
      const on = same(cur.blocked_countries, b.preset.blocked_countries) && same(cur.allowed_countries, b.preset.allowed_countries);
      b.setAttribute('aria-pressed', String(on));
    }
  }
}
