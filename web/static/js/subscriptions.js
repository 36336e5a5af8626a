// Subscriptions: the receiver asks the node, per remote video track, for the
// simulcast layer that fits the tile showing it, and for "off" when no tile
// shows it, so a page pulls only the streams it displays (docs/WEB.md,
// "Simulcast").

// layerFor picks the layer for a tile of the given rendered width (css px);
// screen shares always get "high" for detail; a hidden tile gets "off".
export function layerFor(kind, visible, width) {
  if (!visible || width <= 0) return 'off';
  if (kind === 'screen') return 'high';
  if (width < 240) return 'low';
  if (width < 560) return 'medium';
  return 'high';
}

// tileFor finds the element showing a participant's track of a kind.
function tileFor(pid, kind) {
  const sel = kind === 'screen' ? `.screen-tile[data-screen="${CSS.escape(pid)}"]` : `.tile[data-participant="${CSS.escape(pid)}"]`;
  return document.querySelector(sel);
}

export class Subscriptions {
  // interval (ms) is how often tiles are measured; a change is sent at the
  // next measurement, which also debounces bursts of layout changes.
  constructor(call, { interval = 300 } = {}) {
    this.call = call;
    this.asked = new Map(); // track id -> layer last sent on this session
    this.session = null;
    this.timer = setInterval(() => this.update(), interval);
  }

  stop() { clearInterval(this.timer); }

  update() {
    const s = this.call.session;
    if (!s) return;
    if (s !== this.session) {
      // After a move the new session has new track ids; ask afresh.
      this.session = s;
      this.asked = new Map();
    }
    const seen = new Set();
    for (const [pid, tr] of this.call.tracks) {
      for (const kind of ['video', 'screen']) {
        const track = tr[kind];
        if (!track) continue;
        // The node's id, which a browser's own track id need not be.
        const id = s.nodeTrackID?.(track) ?? track.id;
        seen.add(id);
        const el = tileFor(pid, kind);
        // A track whose tile is not made yet keeps what it has.
        if (!el) continue;
        const visible = el.getAttribute('data-visible') !== 'false' && !el.hidden;
        const layer = layerFor(kind, visible, el.getBoundingClientRect().width);
        if (this.asked.get(id) === layer) continue;
        this.asked.set(id, layer);
        s.send({ type: 'subscribe', track_id: id, layer });
      }
    }
    for (const id of this.asked.keys()) if (!seen.has(id)) this.asked.delete(id);
  }

  // snapshot is {trackID: layer} of what this page last asked for.
  snapshot() { return Object.fromEntries(this.asked); }
}
