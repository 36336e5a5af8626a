// The meeting layout: which tiles are shown, which one large, and on which
// page the rest are. A pure function so its rules can be tested without a
// page (docs/WEB.md, "Layout").

// GRID_MAX tiles or fewer are shown all alike in a grid.
export const GRID_MAX = 4;
// HOLD_MS is how long a new active speaker stays large before another one
// may replace it, so two people talking in turn do not make it flap.
export const HOLD_MS = 2000;
// PHONE_WIDTH: below it a page of the strip holds 3 tiles.
export const PHONE_WIDTH = 600;

// perPage is how many small tiles a page of the strip holds in a viewport.
export function perPage(w, h) {
  if (w < PHONE_WIDTH) return 3;
  return h < 700 ? 6 : 9;
}

// layout decides the view. tiles: [{id, kind: 'camera'|'screen', self,
// lastSpoke (ms, 0: never), joinedSeq}]; page: the page asked for; w, h: the
// viewport in css px; now: ms; prev: the previous result (or null), for the
// speaker hold. It returns {mode, large, strip, page, pages, visible, since}:
// since is when large became large.
export function layout({ tiles, page = 0, w = 1280, h = 800, now = 0, prev = null }) {
  const all = tiles.map((t) => t.id);
  // A shared screen is what everyone came to see: it is large however few
  // people there are.
  if (tiles.length <= GRID_MAX && !tiles.some((t) => t.kind === 'screen')) {
    return { mode: 'grid', large: null, strip: all, page: 0, pages: 1, visible: all, since: now };
  }
  const byId = new Map(tiles.map((t) => [t.id, t]));
  // Someone else's screen before one's own, then the newest share.
  const screens = tiles.filter((t) => t.kind === 'screen').sort((a, b) => Number(a.self) - Number(b.self) || b.joinedSeq - a.joinedSeq);
  let large = null;
  let since = now;
  if (screens.length) {
    large = screens[0].id;
    if (prev?.large === large) since = prev.since;
  } else {
    const others = tiles.filter((t) => !t.self);
    const loudest = others.reduce((best, t) => (t.lastSpoke > (best?.lastSpoke ?? 0) ? t : best), null);
    const held = prev?.large && byId.has(prev.large) && byId.get(prev.large).kind !== 'screen' ? prev.large : null;
    if (held && (now - prev.since < HOLD_MS || !loudest || loudest.id === held)) {
      large = held;
      since = prev.since;
    } else if (loudest) {
      large = loudest.id;
    } else {
      large = others.slice().sort((a, b) => a.joinedSeq - b.joinedSeq)[0]?.id ?? null;
    }
  }
  const self = tiles.filter((t) => t.self && t.id !== large).map((t) => t.id);
  const rest = tiles.filter((t) => !t.self && t.id !== large).sort((a, b) => a.joinedSeq - b.joinedSeq).map((t) => t.id);
  const n = perPage(w, h);
  const pages = Math.max(1, Math.ceil(rest.length / n));
  const p = Math.min(Math.max(0, page), pages - 1);
  const strip = rest.slice(p * n, p * n + n);
  return { mode: 'speaker', large, strip, page: p, pages, visible: [large, ...strip, ...self].filter((id) => id !== null), since };
}
