// Screen sharing: the local share (getDisplayMedia, with the tab's or
// system's audio where the browser offers it), its publication as extra
// sendonly transceivers of a NodeSession's publish connection under the
// same end-to-end encryption as the camera, and the screen tiles of the
// meeting view (docs/WEB.md, "Screen sharing").
//
// Each published track's source is declared in the publish offer
// (`sources`, offer mid → source, docs/PROTOCOL.md); the node announces it
// in track_published and the welcome, which is how a receiver tells a
// shared screen from a camera.

import { h } from './dom.js';

// SCREEN_KINDS are the call.tracks / NodeSession.local keys of a share.
export const SCREEN_KINDS = ['screen', 'screenAudio'];

const SOURCE_OF = { audio: 'microphone', video: 'camera', screen: 'screen', screenAudio: 'screen_audio' };
const KIND_OF = { screen: 'screen', screen_audio: 'screenAudio' };

// kindOfSource is the call.tracks key of a remote track: 'screen' or
// 'screenAudio' for a share, else its media kind.
export function kindOfSource(source, mediaKind) {
  return KIND_OF[source] ?? mediaKind;
}

// msidTrackID is the track id of the a=msid line of the m-section with the
// given mid in sdp, or undefined.
export function msidTrackID(sdp, mid) {
  if (!sdp || mid === null || mid === undefined) return undefined;
  for (const section of sdp.split(/\r?\nm=/).slice(1)) {
    const lines = section.split(/\r?\n/);
    if (!lines.includes(`a=mid:${mid}`)) continue;
    const msid = lines.find((l) => l.startsWith('a=msid:'));
    return msid?.slice('a=msid:'.length).split(' ')[1];
  }
  return undefined;
}

// offerSources is the `sources` of a NodeSession's publish offer: the
// source of every transceiver that sends a track, by mid.
export function offerSources(s) {
  const out = {};
  for (const [kind, sender] of Object.entries(s.senders)) {
    const tr = sender && s.pub?.getTransceivers().find((t) => t.sender === sender);
    if (tr?.mid && SOURCE_OF[kind] && (sender.track || s.local[kind])) out[tr.mid] = SOURCE_OF[kind];
  }
  return Object.keys(out).length ? out : undefined;
}

// addScreenSenders brings a NodeSession's publish connection in line with
// its local share: a sendonly transceiver with the encode transform for
// each share track not yet sent, and the sender of a stopped one removed
// (its m-line goes inactive, so the node unpublishes the track). The
// caller renegotiates.
export function addScreenSenders(s) {
  for (const kind of SCREEN_KINDS) {
    const track = s.local[kind];
    const sender = s.senders[kind];
    if (sender && sender.track !== track && !s.sendingStopped) {
      s.pub.removeTrack(sender);
      s.senders[kind] = null;
    }
    if (track && !s.senders[kind]) {
      const tr = s.pub.addTransceiver(track, { direction: 'sendonly', streams: [s.stream] });
      s.senders[kind] = tr.sender;
      if (s.sendingStopped) tr.sender.replaceTrack(null).catch(() => {});
      s.e2ee?.protectSender(tr.sender, kind === 'screen' ? 'video' : 'audio');
    } else if (!track && s.senders[kind]) {
      s.pub.removeTrack(s.senders[kind]);
      s.senders[kind] = null;
    }
  }
}

// openScreen asks the browser for a screen, window or tab. It must run in
// a user gesture (Chromium requires transient activation), so it is the
// first thing a click handler awaits.
export async function openScreen() {
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 5, max: 15 } }, audio: true });
  const screen = stream.getVideoTracks()[0] ?? null;
  const screenAudio = stream.getAudioTracks()[0] ?? null;
  // Text and lines stay sharp at the cost of frame rate.
  if (screen) screen.contentHint = 'detail';
  return { screen, screenAudio };
}

// ScreenShare is the share button (data-testid="share-screen") and the
// screen tiles of a meeting view.
export class ScreenShare {
  // call is the Call; grid the tile grid the screen tiles go in; parked a
  // hidden element the screen audio elements live in; flash(text) shows a
  // short notice; onChange is told when the tiles changed.
  constructor({ call, grid, parked, flash, onChange }) {
    this.call = call;
    this.grid = grid;
    this.parked = parked;
    this.flash = flash ?? (() => {});
    this.onChange = onChange ?? (() => {});
    this.tiles = new Map(); // 'self' or participant id -> ScreenTile
    this.audios = new Map(); // participant id -> <audio>
    this.button = h('button', { class: 'ctl', 'data-testid': 'share-screen', onclick: () => this.toggle() });
    this.render();
    call.addEventListener('track', (e) => SCREEN_KINDS.includes(e.detail.kind) && this.sync());
    call.addEventListener('participants', () => this.sync());
    call.addEventListener('state', (e) => e.detail.state === 'ended' && this.stop());
  }

  get sharing() {
    return !!this.call.local.screen;
  }

  render() {
    const on = this.sharing;
    this.button.innerHTML = `<span class="icon" aria-hidden="true"><svg viewBox="0 0 24 24" fill="none" stroke="currentColor" stroke-width="1.8" stroke-linecap="round" stroke-linejoin="round"><rect x="3" y="4" width="18" height="12" rx="2"/><path d="M8 20h8M12 16v4"/>${on ? '<path d="M9 7l6 6M15 7l-6 6"/>' : '<path d="M12 13V7M9.5 9.5L12 7l2.5 2.5"/>'}</svg></span>`;
    this.button.setAttribute('aria-label', on ? 'Stop sharing your screen' : 'Share your screen');
    this.button.title = on ? 'Stop sharing' : 'Share screen';
    this.button.setAttribute('aria-pressed', String(on));
    this.button.classList.toggle('sharing', on);
  }

  async toggle() {
    if (this.sharing) {
      await this.stop();
      return;
    }
    if (this.starting) return;
    this.starting = true;
    let got;
    try {
      got = await openScreen();
    } catch (err) {
      if (err?.name !== 'NotAllowedError' && err?.name !== 'AbortError') this.flash(`The screen could not be shared: ${err?.message ?? err}`);
      return;
    } finally {
      this.starting = false;
    }
    if (!got.screen || this.call.state === 'ended') {
      for (const t of Object.values(got)) t?.stop();
      return;
    }
    // The browser's own "stop sharing" ends the track.
    got.screen.addEventListener('ended', () => this.call.local.screen === got.screen && this.stop());
    await this.call.setScreen(got);
    this.render();
    this.sync();
  }

  async stop() {
    const { screen, screenAudio } = this.call.local;
    if (!screen && !screenAudio) return;
    await this.call.setScreen(null);
    screen?.stop();
    screenAudio?.stop();
    this.render();
    this.sync();
  }

  // sync shows a screen tile for every share there is: this browser's own
  // (data-screen="self") and each remote participant's.
  sync() {
    const call = this.call;
    const want = new Map();
    if (call.local.screen) want.set('self', { name: call.name, track: call.local.screen, audio: null });
    for (const [id, tr] of call.tracks) {
      const p = call.participants.get(id);
      if (tr.screen && p) want.set(id, { name: p.name, track: tr.screen, audio: tr.screenAudio ?? null });
    }
    let changed = false;
    for (const [id, t] of this.tiles) {
      if (want.has(id)) continue;
      t.el.remove();
      this.tiles.delete(id);
      changed = true;
    }
    for (const [id, el] of this.audios) {
      if (want.get(id)?.audio === el.track) continue;
      el.remove();
      this.audios.delete(id);
    }
    for (const [id, w] of want) {
      let t = this.tiles.get(id);
      if (!t) {
        t = new ScreenTile(id);
        this.tiles.set(id, t);
        this.grid.prepend(t.el);
        changed = true;
      }
      t.set(w.name, w.track);
      if (w.audio && !this.audios.has(id)) {
        const el = h('audio', { autoplay: true, dataset: { screen: id } });
        el.track = w.audio;
        el.srcObject = new MediaStream([w.audio]);
        this.parked.append(el);
        this.audios.set(id, el);
        el.play().catch(() => {});
      }
    }
    if (changed) this.onChange();
  }
}

// ScreenTile shows one shared screen: not mirrored, letterboxed, with the
// presenter's name. It carries data-screen, never data-participant, so it
// is not counted among the camera tiles.
class ScreenTile {
  constructor(id) {
    this.id = id;
    this.video = h('video', { autoplay: true, playsinline: true, muted: true, dataset: { screen: id } });
    this.label = h('span', { class: 'tile-name', 'data-testid': 'presenter' });
    this.el = h('div', { class: 'tile screen-tile', 'data-testid': 'screen-tile', dataset: { screen: id }, role: 'group' },
      this.video, h('div', { class: 'tile-label' }, this.label));
  }

  set(name, track) {
    const text = `${name} is presenting`;
    if (this.label.textContent !== text) {
      this.label.textContent = text;
      this.el.setAttribute('aria-label', `Shared screen: ${text}`);
    }
    if (this.track === track) return;
    this.track = track;
    this.video.srcObject = new MediaStream([track]);
    this.video.play().catch(() => {});
  }
}
