// The meeting view: a grid of video tiles with names and a speaking ring,
// the control bar (microphone, camera, panels, leave), the end-to-end
// encryption badge, and the side panels (chat, security code, routing).

import { clear, h, icon, initials, logo } from './dom.js';
import { LevelMeter, openLocal } from './localmedia.js';
import { HostActions } from './hostcontrol.js';
import { ChatPanel, RoutingPanel, auditAlarmText } from './panels.js';
import { FLAG_NOT_IN_KEYS, PeoplePanel, peopleOf } from './people.js';
import { handIcon } from './presence.js';
import { countdownText } from './recovery.js';
import { ScreenShare } from './screenshare.js';
import { Subscriptions } from './subscriptions.js';
import { layout as decideLayout } from './layout.js';

const LEAVE_REASONS = {
  policy_no_allowed_node: 'The host changed the routing policy, and no media server it allows can take you. You were disconnected rather than moved somewhere the policy rules out.',
  node_shutdown: 'The media server you were on shut down.',
  replaced: 'You joined this meeting again from another window.',
  policy_change: 'The host changed the routing policy, and this connection could not be moved to an allowed server in time.',
  node_draining: 'The media server you were on is being taken down, and this connection could not be moved in time.',
  removed: 'The host removed you from this meeting. With the same link you can only come back if the host lets you in from the lobby.',
  node_draining_no_allowed_node: 'The media server you were on is being taken down, and no other server the routing policy allows can take you.',
  node_uncertified: 'The media server you were on lost its certificate, and this connection could not be moved in time.',
  node_uncertified_no_allowed_node: 'The media server you were on lost its certificate, and no other server the routing policy allows can take you.',
  pending_expired: 'Your connection reached the media server too late, and your place was given back. Join again.',
  negotiation_timeout: 'Your media did not connect to the media server in time, so your place was given back. Join again.',
};

export function leaveReasonText(reason) {
  return LEAVE_REASONS[reason] ?? reason;
}

class Tile {
  constructor(id, name, self) {
    this.id = id;
    this.video = h('video', { autoplay: true, playsinline: true, muted: true, dataset: { participant: id }, class: self ? 'mirror' : '' });
    this.avatar = h('div', { class: 'avatar' }, initials(name));
    this.label = h('span', { class: 'tile-name' }, self ? `${name} (you)` : name);
    this.micOff = icon('micOff', 'tile-muted');
    this.flag = h('div', { class: 'tile-flag', 'data-testid': 'tile-flag', hidden: true }, icon('alert'), h('span', {}, FLAG_NOT_IN_KEYS));
    this.hand = h('div', { class: 'tile-hand', 'data-testid': 'hand', title: 'Hand raised', hidden: true }, handIcon());
    this.el = h('div', { class: 'tile', dataset: { participant: id }, role: 'group', 'aria-label': name },
      this.video, this.avatar, this.flag, this.hand, h('div', { class: 'tile-label' }, this.micOff, this.label));
    this.setVideo(null);
    this.setMuted(false);
  }

  setName(name, self) {
    this.label.textContent = self ? `${name} (you)` : name;
    this.avatar.textContent = initials(name);
    this.el.setAttribute('aria-label', name);
  }

  setVideo(track) {
    if (this.track === track) return;
    this.track = track;
    this.video.srcObject = track ? new MediaStream([track]) : null;
    const show = () => this.el.classList.toggle('no-video', !track || track.muted || track.readyState === 'ended' || !!this.cameraOff);
    this.showVideo = show;
    if (track) {
      track.addEventListener('mute', show);
      track.addEventListener('unmute', show);
      track.addEventListener('ended', show);
      this.video.play().catch(() => {});
    }
    show();
  }

  setMuted(m) {
    this.micOff.hidden = !m;
  }

  // setPresence shows a verified presence ({mic, camera, hand}, or null
  // while none came): nothing is shown as off without one.
  setPresence(p) {
    const flag = (k, on, v) => (on ? this.el.setAttribute(k, v) : this.el.removeAttribute(k));
    flag('data-mic', !!p && !p.mic, 'off');
    flag('data-camera', !!p && !p.camera, 'off');
    flag('data-hand', !!p?.hand, 'up');
    this.setMuted(!!p && !p.mic);
    this.hand.hidden = !p?.hand;
    this.cameraOff = !!p && !p.camera;
    this.showVideo?.();
  }

  // setFlagged marks a tile of someone the server shows who holds no key
  // of this meeting: whatever it plays, it is not one of the encrypted
  // participants.
  setFlagged(on) {
    this.flag.hidden = !on;
    this.el.classList.toggle('flagged', on);
  }

  setLevel(v) {
    const speaking = v > 0.06;
    if (speaking) this.lastLoud = performance.now();
    this.el.classList.toggle('speaking', speaking || performance.now() - (this.lastLoud ?? 0) < 350);
  }
}

export function meetingPage(root, { call, meeting, hostToken, hostKey, geo, config }) {
  const tiles = new Map();
  const meters = new Map();
  const audios = new Map();
  const grid = h('div', { class: 'grid', 'data-testid': 'grid' });
  const status = h('div', { class: 'status-banner', role: 'status', 'aria-live': 'polite', 'data-testid': 'status', hidden: true });
  const soundBtn = h('button', { class: 'btn btn-primary sound-btn', hidden: true, onclick: () => playAll() }, 'Turn on sound');
  const hostAlarm = h('div', { class: 'alarm-banner', role: 'alert', 'data-testid': 'host-key-warning', hidden: true });
  const auditAlarm = h('button', { class: 'alarm-banner audit-alarm', role: 'alert', 'data-testid': 'audit-alarm', hidden: true, onclick: () => showPanel('routing', true) });
  const lobbyNotice = h('button', { class: 'lobby-notice', 'data-testid': 'lobby-notice', hidden: true, onclick: () => showPanel('people', true) });
  // The view per layout.js: which tiles are shown, which large, which page.
  const pager = { page: 0, prev: null, seq: new Map() };
  const pageLabel = h('span', { 'data-testid': 'page-label' });
  const pageBar = h('div', { class: 'pager', 'data-testid': 'pager', hidden: true },
    h('button', { class: 'btn', 'data-testid': 'page-prev', 'aria-label': 'Previous page', onclick: () => { pager.page--; layout(); } }, '‹'),
    pageLabel,
    h('button', { class: 'btn', 'data-testid': 'page-next', 'aria-label': 'Next page', onclick: () => { pager.page++; layout(); } }, '›'));
  const stage = h('main', { class: 'stage' }, grid, pageBar, hostAlarm, auditAlarm, status, lobbyNotice, soundBtn);

  const actions = hostToken ? new HostActions({ meeting: meeting.id, token: hostToken, key: hostKey, view: call.host }) : null;
  const countries = new Map(geo.countries.map((c) => [c.code, c]));
  const security = new PeoplePanel(call, { actions, countries });
  const chat = new ChatPanel(call);
  const routing = new RoutingPanel(call, { meeting, actions, geo, config });
  const panels = { chat, people: security, routing };
  const panelBox = h('aside', { class: 'side', hidden: true, 'aria-label': 'Side panel' });
  const tabs = {};
  const showPanel = (name, keepOpen = false) => {
    const open = name && (keepOpen || panelBox.dataset.panel !== name);
    panelBox.hidden = !open;
    panelBox.dataset.panel = open ? name : '';
    for (const [k, b] of Object.entries(tabs)) b.setAttribute('aria-pressed', String(open && k === name));
    // A panel that was shown goes back to the parking place, not out of
    // the document.
    for (const p of Object.values(panels)) if (p.el.parentNode === panelBox) parked.append(p.el);
    if (open) {
      clear(panelBox, h('div', { class: 'side-head' }, h('h2', {}, panels[name].title),
        h('button', { class: 'icon-btn', 'aria-label': 'Close panel', onclick: () => showPanel(null) }, icon('close'))), panels[name].el);
      panels[name].shown?.();
      if (name === 'people') lobbyNotice.hidden = true;
    }
    layout();
  };
  // The panels stay in the document while closed, so their state (and the
  // security code) is always there to read.
  const parked = h('div', { hidden: true }, security.el, chat.el, routing.el);

  const badge = h('button', { class: 'e2ee-badge', 'data-testid': 'e2ee-badge', onclick: () => showPanel('people') },
    icon('lock'), h('span', { class: 'badge-text' }, 'Encrypted'), h('span', { class: 'badge-code', 'data-testid': 'badge-code' }, '…'));
  const countEl = h('span', { class: 'count' });
  const lockedBadge = h('span', { class: 'locked-badge', 'data-testid': 'locked-badge', hidden: true, title: 'The host locked this meeting: nobody new can join' }, icon('lock'), h('span', { class: 'badge-text' }, 'Locked'));
  const auditBadge = h('button', { class: 'audit-badge', 'data-testid': 'audit-badge', hidden: true, onclick: () => showPanel('routing', true) }, icon('alert'), h('span', { class: 'badge-text' }, 'Audit log alarm'));
  const nodeChip = h('button', { class: 'node-chip', onclick: () => showPanel('routing'), 'aria-label': 'Where this meeting runs' }, icon('globe'), h('span', {}, '…'));

  const micBtn = h('button', { class: 'ctl', 'data-testid': 'mic' });
  const camBtn = h('button', { class: 'ctl', 'data-testid': 'camera' });
  const handBtn = h('button', { class: 'ctl ctl-hand', 'data-testid': 'raise-hand', 'aria-pressed': 'false', 'aria-label': 'Raise hand', title: 'Raise hand (H)' }, handIcon());
  const screenShare = new ScreenShare({ call, grid, parked, flash: (text) => flash(text), onChange: () => layout() });
  const mkTab = (name, ic, label) => {
    tabs[name] = h('button', { class: 'ctl ctl-quiet', 'aria-pressed': 'false', 'aria-label': label, title: label, 'data-testid': `tab-${name}`, onclick: () => showPanel(name) }, icon(ic));
    return tabs[name];
  };
  const leaveBtn = h('button', { class: 'ctl ctl-leave', 'aria-label': 'Leave meeting', title: 'Leave meeting', 'data-testid': 'leave', onclick: () => call.leave() }, icon('leave'), h('span', { class: 'ctl-text' }, 'Leave'));
  const controls = h('footer', { class: 'controls', role: 'toolbar', 'aria-label': 'Meeting controls' },
    h('div', { class: 'ctl-group' }, micBtn, camBtn, screenShare.button, handBtn),
    h('div', { class: 'ctl-group' }, mkTab('chat', 'chat', 'Chat'), mkTab('people', 'people', 'People and security code'), mkTab('routing', 'globe', 'Where this meeting runs')),
    h('div', { class: 'ctl-group' }, leaveBtn));

  const view = h('div', { class: 'meeting', 'data-testid': 'meeting' },
    h('header', { class: 'meeting-bar' },
      h('div', { class: 'meeting-title' }, h('span', { class: 'title-text' }, meeting.title || 'Meeting'), countEl, lockedBadge),
      h('div', { class: 'meeting-meta' }, auditBadge, nodeChip, badge)),
    h('div', { class: 'body' }, stage, panelBox),
    controls, parked);
  clear(root, view);
  document.title = `${meeting.title || 'Meeting'} · oakmeet`;

  // Local state of the controls.
  const mine = { mic: !!call.local.audio, cam: !!call.local.video, micTrack: call.local.audio };
  const renderControls = () => {
    clear(micBtn, icon(mine.mic ? 'mic' : 'micOff'));
    micBtn.setAttribute('aria-label', mine.mic ? 'Mute microphone' : 'Unmute microphone');
    micBtn.title = `${mine.mic ? 'Mute' : 'Unmute'} (M)`;
    micBtn.classList.toggle('off', !mine.mic);
    micBtn.disabled = !mine.micTrack;
    clear(camBtn, icon(mine.cam ? 'cam' : 'camOff'));
    camBtn.setAttribute('aria-label', mine.cam ? 'Turn camera off' : 'Turn camera on');
    camBtn.title = `${mine.cam ? 'Camera off' : 'Camera on'} (V)`;
    camBtn.classList.toggle('off', !mine.cam);
    const hand = call.ownPresence.state.hand;
    handBtn.setAttribute('aria-pressed', String(hand));
    handBtn.setAttribute('aria-label', hand ? 'Lower hand' : 'Raise hand');
    handBtn.title = `${hand ? 'Lower' : 'Raise'} hand (H)`;
  };
  handBtn.addEventListener('click', () => {
    call.ownPresence.set({ hand: !call.ownPresence.state.hand });
    renderControls();
    showPresence();
  });
  micBtn.addEventListener('click', async () => {
    mine.mic = !mine.mic;
    renderControls();
    call.ownPresence.set({ mic: mine.mic });
    await call.setLocalTrack('audio', mine.mic ? mine.micTrack : null);
    tiles.get('self')?.setMuted(!mine.mic);
  });
  camBtn.addEventListener('click', async () => {
    mine.cam = !mine.cam;
    renderControls();
    if (mine.cam) {
      const got = await openLocal({ audio: false, video: true });
      if (!got.video) {
        mine.cam = false;
        renderControls();
        flash('The camera could not be opened.');
        return;
      }
      await call.setLocalTrack('video', got.video);
      call.ownPresence.set({ camera: true });
    } else {
      call.ownPresence.set({ camera: false });
      call.local.video?.stop();
      await call.setLocalTrack('video', null);
    }
    tiles.get('self')?.setVideo(call.local.video);
  });
  document.addEventListener('keydown', (e) => {
    if (e.target.closest?.('input, textarea, select') || e.metaKey || e.ctrlKey || e.altKey) return;
    if (e.key === 'm' || e.key === 'M') micBtn.click();
    if (e.key === 'v' || e.key === 'V') camBtn.click();
    if (e.key === 'h' || e.key === 'H') handBtn.click();
  });

  const arrange = () => {
    const els = new Map();
    for (const [id, t] of tiles) els.set(id, { el: t.el, kind: 'camera', self: id === 'self', lastSpoke: t.lastLoud ?? 0 });
    for (const el of grid.querySelectorAll('.screen-tile')) {
      const id = `screen:${el.dataset.screen}`;
      els.set(id, { el, kind: 'screen', self: el.dataset.screen === 'self', lastSpoke: 0 });
    }
    for (const id of els.keys()) if (!pager.seq.has(id)) pager.seq.set(id, pager.seq.size);
    for (const id of pager.seq.keys()) if (!els.has(id)) pager.seq.delete(id);
    const l = decideLayout({
      tiles: [...els].map(([id, e]) => ({ id, kind: e.kind, self: e.self, lastSpoke: e.lastSpoke, joinedSeq: pager.seq.get(id) })),
      page: pager.page, w: stage.clientWidth, h: stage.clientHeight, now: performance.now(), prev: pager.prev,
    });
    pager.prev = l;
    pager.page = l.page;
    const shown = new Set(l.visible);
    for (const [id, e] of els) {
      e.el.setAttribute('data-visible', String(shown.has(id)));
      e.el.hidden = !shown.has(id);
      e.el.classList.toggle('large', id === l.large);
    }
    grid.dataset.mode = l.mode;
    pageBar.hidden = l.pages <= 1;
    pageLabel.textContent = `${l.page + 1} / ${l.pages}`;
    return l;
  };
  setInterval(() => { if (pager.prev?.mode === 'speaker') arrange(); }, 500);

  const layout = () => {
    const l = arrange();
    const n = Math.max(1, l.mode === 'grid' ? tiles.size : l.visible.length - 1);
    const narrow = stage.clientWidth < 640;
    const cols = narrow ? (n <= 2 ? 1 : 2) : n <= 1 ? 1 : n <= 4 ? 2 : n <= 9 ? 3 : 4;
    grid.style.setProperty('--cols', cols);
    grid.style.setProperty('--rows', Math.ceil(n / cols));
    // The strip of small tiles under the large one is one row.
    grid.style.setProperty('--strip', Math.max(1, l.visible.length - 1));
    // Everyone in the meeting, not only the tiles this page shows.
    const people = tiles.size;
    countEl.textContent = `${people} ${people === 1 ? 'person' : 'people'}`;
  };
  new ResizeObserver(layout).observe(stage);

  const meter = (key, track, tile) => {
    meters.get(key)?.stop();
    meters.delete(key);
    if (track) meters.set(key, new LevelMeter(track, (v) => tile.setLevel(v)));
  };

  const playAll = () => {
    soundBtn.hidden = true;
    for (const a of audios.values()) a.play().catch(() => {});
  };

  const syncTiles = () => {
    const want = new Map([['self', { name: call.name, self: true }]]);
    for (const p of call.participants.values()) want.set(p.id, { name: p.name, self: false });
    for (const [id, t] of tiles) {
      if (!want.has(id)) {
        t.el.remove();
        tiles.delete(id);
        meters.get(id)?.stop();
        meters.delete(id);
        audios.get(id)?.remove();
        audios.delete(id);
      }
    }
    for (const [id, w] of want) {
      let t = tiles.get(id);
      if (!t) {
        t = new Tile(id, w.name, w.self);
        tiles.set(id, t);
        grid.append(t.el);
      } else {
        t.setName(w.name, w.self);
      }
      if (w.self) {
        t.setVideo(call.local.video);
        t.setMuted(!mine.mic);
        if (!meters.has('self') && mine.micTrack) meter('self', mine.micTrack, t);
      } else {
        attachRemote(id);
      }
    }
    flagTiles();
    showPresence();
    layout();
  };

  // Others' tiles show only what their verified presence says; this
  // page's own tile shows its own state.
  const showPresence = () => {
    for (const [id, t] of tiles) {
      if (id !== 'self') t.setPresence(call.presence.get(id) ?? null);
      else t.setPresence({ ...call.ownPresence.state, camera: true });
    }
  };

  let flagTimer;
  const flagTiles = () => {
    const people = peopleOf(call);
    const flagged = new Set(people.filter((p) => p.flags.includes(FLAG_NOT_IN_KEYS)).map((p) => p.participant));
    for (const [id, t] of tiles) if (id !== 'self') t.setFlagged(flagged.has(id));
    clearTimeout(flagTimer);
    if (people.settleAt) flagTimer = setTimeout(flagTiles, people.settleAt - Date.now() + 20);
  };

  const attachRemote = (id) => {
    const t = tiles.get(id);
    const tr = call.tracks.get(id) ?? {};
    if (!t) return;
    t.setVideo(tr.video ?? null);
    const a = audios.get(id);
    if (tr.audio && a?.track !== tr.audio) {
      a?.remove();
      const el = h('audio', { autoplay: true, dataset: { participant: id } });
      el.track = tr.audio;
      el.srcObject = new MediaStream([tr.audio]);
      parked.append(el);
      audios.set(id, el);
      el.play().catch(() => { soundBtn.hidden = false; });
      meter(id, tr.audio, t);
    }
  };

  let flashTimer;
  const flash = (text) => {
    status.hidden = false;
    status.className = 'status-banner info';
    status.textContent = text;
    clearTimeout(flashTimer);
    flashTimer = setTimeout(() => { status.hidden = true; }, 4000);
  };

  // The banner says the connection state in words (data-state for
  // tests and styles), why a retry waits (status-reason), which attempt
  // it is, and counts down to it; after the last attempt, "Try again".
  let countdown;
  const banner = (state, cls, text, reason = '') => {
    clearInterval(countdown);
    status.hidden = false;
    status.className = `status-banner ${cls}`;
    status.dataset.state = state;
    const textEl = h('span', { class: 'status-text', 'data-testid': 'status-text' }, text);
    const retry = call.retry;
    clear(status, textEl,
      reason ? h('span', { class: 'status-reason', 'data-testid': 'status-reason' }, reason) : null,
      state === 'reconnecting' && retry ? h('span', { class: 'status-attempt', 'data-testid': 'status-attempt', 'data-attempt': String(retry.attempt) }, `Attempt ${retry.attempt} of ${retry.max}`) : null,
      state === 'failed' ? h('button', { class: 'btn btn-primary status-retry', 'data-testid': 'retry', onclick: () => call.retryNow() }, 'Try again') : null);
    if (state === 'reconnecting' && retry) {
      const tick = () => { textEl.textContent = countdownText(retry.at - Date.now()); };
      tick();
      countdown = setInterval(tick, 250);
    }
  };
  call.addEventListener('key-error', (e) => flash(e.detail.message));
  call.addEventListener('retry', () => call.state === 'reconnecting' && showState({ state: call.state, reason: call.reason }));

  const showState = ({ state, reason }) => {
    view.dataset.state = state;
    const node = call.self.node;
    const where = node ? ` in ${node.country}` : '';
    if (state === 'connecting') {
      banner('connecting', '', `Connecting to the media server${where}…`);
    } else if (state === 'reconnecting') {
      banner('reconnecting', 'warn', 'Reconnecting…', reason || 'Lost the connection to the media server');
    } else if (state === 'failed') {
      banner('failed', 'warn', 'Could not reconnect to the meeting.', reason);
    } else if (state === 'moving') {
      banner('connecting', '', 'The routing policy changed. Moving you to an allowed server…');
    } else if (state === 'connected') {
      clearInterval(countdown);
      status.dataset.state = 'connected';
      status.hidden = true;
    } else if (state === 'ended') {
      clearInterval(countdown);
      for (const m of meters.values()) m.stop();
      for (const t of call.local.stream?.getTracks() ?? []) t.stop();
      call.local.video?.stop();
      mine.micTrack?.stop();
      clearInterval(routing.timer);
      const removed = reason === 'removed';
      // A call that gave up after refusing nodes names the code and node.
      const refusal = call.refusal;
      clear(root, h('div', { class: 'page narrow' },
        h('header', { class: 'topbar-light' }, logo()),
        h('section', { class: `card notice ended${removed ? ' removed' : ''}`, 'data-testid': 'ended', 'data-code': refusal?.code ?? '' },
          h('h1', {}, removed ? 'The host removed you' : refusal ? 'Your browser refused the media servers it was given' : reason ? 'You were disconnected' : 'You left the meeting'),
          reason ? h('p', { 'data-testid': 'ended-reason' }, leaveReasonText(reason)) : h('p', {}, 'Thanks for joining.'),
          refusal ? h('p', { class: 'small', 'data-testid': 'refusal-code' }, `${refusal.code} · media server ${refusal.node}`) : null,
          h('div', { class: 'actions' },
            h('a', { class: 'btn btn-primary', href: location.pathname }, removed ? 'Ask to join again' : 'Rejoin'),
            h('a', { class: 'btn btn-quiet', href: '/' }, 'Create a meeting')))));
      document.title = 'oakmeet';
    }
  };

  const showSecurity = () => {
    const code = call.member?.securityCode ?? '';
    badge.classList.toggle('ready', !!code);
    badge.querySelector('.badge-code').textContent = code ? code.split(' ').slice(0, 2).join(' ') + ' …' : 'keys…';
    badge.title = code ? `End-to-end encrypted. Security code ${code}` : 'Exchanging keys…';
  };
  const showNode = () => {
    const n = call.self.node;
    nodeChip.lastChild.textContent = n ? n.country : '…';
  };

  call.addEventListener('state', (e) => showState(e.detail));
  call.addEventListener('participants', syncTiles);
  call.addEventListener('track', (e) => attachRemote(e.detail.participant));
  call.addEventListener('security', showSecurity);
  call.addEventListener('security', flagTiles);
  call.addEventListener('node', showNode);
  call.addEventListener('presence', showPresence);
  const showHost = () => {
    lockedBadge.hidden = !call.host.locked;
    hostAlarm.hidden = !call.host.keyProblem;
    clear(hostAlarm, icon('alert'), h('span', {}, call.host.keyProblem));
  };
  call.addEventListener('host', showHost);
  const showAudit = () => {
    const bad = call.auditLog.state === 'inconsistent';
    auditAlarm.hidden = !bad;
    auditBadge.hidden = !bad;
    auditBadge.title = bad ? auditAlarmText(call.auditLog) : '';
    view.classList.toggle('with-host-alarm', !hostAlarm.hidden);
    if (bad) clear(auditAlarm, icon('alert'), h('span', {}, auditAlarmText(call.auditLog)));
  };
  call.addEventListener('audit', showAudit);
  call.addEventListener('host', showAudit);
  call.addEventListener('lobby', () => {
    status.hidden = false;
    status.className = 'status-banner warn';
    status.textContent = 'Waiting for the host to let you back in…';
  });
  call.addEventListener('lobby-waiting', (e) => {
    const n = e.detail.count;
    lobbyNotice.hidden = n === 0 || panelBox.dataset.panel === 'people';
    tabs.people.classList.toggle('unread', n > 0);
    clear(lobbyNotice, icon('door'), h('span', {}, `${n} ${n === 1 ? 'person is' : 'people are'} waiting in the lobby`), h('strong', {}, 'Review'));
  });
  call.addEventListener('chat', (e) => {
    if (!e.detail.self && panelBox.dataset.panel !== 'chat') tabs.chat.classList.add('unread');
  });
  tabs.chat.addEventListener('click', () => tabs.chat.classList.remove('unread'));
  window.addEventListener('pagehide', () => call.leave());

  renderControls();
  syncTiles();
  showSecurity();
  showNode();
  showHost();
  showAudit();
  showState({ state: call.state, reason: call.reason });
  const subs = new Subscriptions(call);
  window.oakmeet = { call, stats: () => call.stats(), subscriptions: () => subs.snapshot() };
}
