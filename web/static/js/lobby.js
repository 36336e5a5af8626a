// The join page of /m/{id}: name, camera and microphone preview with
// device choice, "join from" where the deployment trusts client hints, and
// clear words when the join is refused or a device is denied; while the
// host's lobby holds the join, a waiting screen. Links with
// ?name=N&autojoin=1 (and &country=CC) join at once with default devices.

import { api, refusalMessage } from './api.js';
import { Call } from './call.js';
import { clear, h, icon, logo } from './dom.js';
import { loadIdentity } from './e2ee/identity.js';
import { loadHostKey } from './hoststmt.js';
import { describeMediaError, LevelMeter, listDevices, openLocal } from './localmedia.js';
import { meetingPage } from './meeting.js';
import { missingForE2EE, unsupportedText } from './support.js';

// link is what this tab holds of the meeting link: {secret, fingerprint,
// hostToken}. The page is one closure over its elements and the local
// media it previews, as meetingPage is: its handlers share that state, and
// the waiting screen, which does not, is a function below. The host's join
// carries the host token, so the host's own lock and lobby do not hold it.
export async function lobbyPage(root, id, link) {
  const hostToken = link.hostToken;
  const params = new URLSearchParams(location.search);
  const [config, geo, missing] = await Promise.all([api.config(), api.geo(), missingForE2EE()]);
  let meeting;
  try {
    meeting = await api.meeting(id);
  } catch (err) {
    clear(root, h('div', { class: 'page narrow' }, h('header', { class: 'topbar-light' }, logo()),
      h('section', { class: 'card notice', 'data-testid': 'join-error' },
        h('h1', {}, err.status === 404 ? 'No such meeting' : 'The meeting cannot be loaded'),
        h('p', {}, err.status === 404 ? 'Check the link you were given. Meeting links look like /m/ followed by a code.' : err.message),
        h('a', { class: 'btn btn-primary', href: '/' }, 'Create a meeting'))));
    return;
  }

  const identity = loadIdentity();
  let local = { stream: new MediaStream(), audio: null, video: null };
  const want = { audio: true, video: true };
  let meter = null;

  const video = h('video', { class: 'preview-video mirror', autoplay: true, muted: true, playsinline: true });
  const noCam = h('div', { class: 'preview-off' }, icon('camOff'), h('span', {}, 'Camera is off'));
  const level = h('div', { class: 'level' }, h('div', { class: 'level-fill' }));
  const micBtn = h('button', { type: 'button', class: 'round-btn', 'aria-pressed': 'true', 'aria-label': 'Microphone on' });
  const camBtn = h('button', { type: 'button', class: 'round-btn', 'aria-pressed': 'true', 'aria-label': 'Camera on' });
  const camSel = h('select', { id: 'cam-select', 'aria-label': 'Camera' }, h('option', { value: '' }, 'Default camera'));
  const micSel = h('select', { id: 'mic-select', 'aria-label': 'Microphone' }, h('option', { value: '' }, 'Default microphone'));
  const deviceNote = h('p', { class: 'device-note', role: 'status', 'data-testid': 'device-note' });
  const name = h('input', { id: 'name', type: 'text', maxlength: 64, autocomplete: 'name', placeholder: 'Your name', value: params.get('name') ?? localStorage.getItem('oakmeet.name') ?? '', 'data-testid': 'name' });
  const joinBtn = h('button', { type: 'submit', class: 'btn btn-primary btn-large', 'data-testid': 'join' }, 'Join meeting');
  const error = h('div', { class: 'join-error', role: 'alert', 'data-testid': 'join-error', hidden: true });
  // A refusal of a node by this browser also names the code and the node.
  const showRefusal = (title, text, code, node) => {
    error.hidden = false;
    clear(error, h('strong', {}, title), h('p', { 'data-testid': 'refusal' }, text),
      node ? h('p', { class: 'small', 'data-testid': 'refusal-code' }, `${code} · media server ${node}`) : null);
    error.dataset.code = code ?? '';
    error.dataset.node = node ?? '';
  };
  if (!link.secret) {
    showRefusal('This link is incomplete', refusalMessage({ code: 'bad_meeting_secret' }), 'no_secret');
  }
  let waitingCall = null;
  let attempt = 0;
  const waiting = waitingView();
  let from = null;
  if (config.trust_client_location) {
    from = h('select', { id: 'from', 'data-testid': 'join-from' },
      h('option', { value: '' }, 'Where I am (detected)'),
      [...geo.countries].sort((a, b) => a.name.localeCompare(b.name)).map((c) => h('option', { value: c.code }, c.name)));
    from.value = (params.get('country') ?? '').toUpperCase();
  }

  const setBtn = (btn, on, onIcon, offIcon, what) => {
    clear(btn, icon(on ? onIcon : offIcon));
    btn.setAttribute('aria-pressed', String(on));
    btn.setAttribute('aria-label', `${what} ${on ? 'on' : 'off'}`);
    btn.classList.toggle('off', !on);
  };

  const refresh = () => {
    setBtn(micBtn, want.audio && !!local.audio, 'mic', 'micOff', 'Microphone');
    setBtn(camBtn, want.video && !!local.video, 'cam', 'camOff', 'Camera');
    video.srcObject = local.video ? new MediaStream([local.video]) : null;
    video.hidden = !local.video;
    noCam.hidden = !!local.video;
    meter?.stop();
    meter = local.audio ? new LevelMeter(local.audio, (v) => { level.firstChild.style.transform = `scaleX(${v})`; }) : null;
  };

  const open = async () => {
    for (const t of local.stream.getTracks()) t.stop();
    local = await openLocal({ ...want, audioDevice: micSel.value || undefined, videoDevice: camSel.value || undefined });
    deviceNote.textContent = describeMediaError(local.error, !local.audio && !local.video ? 'camera and microphone' : !local.video && want.video ? 'camera' : 'microphone');
    try {
      const d = await listDevices();
      const fill = (sel, list, cur) => {
        const keep = cur?.getSettings().deviceId ?? sel.value;
        clear(sel, list.map((x, i) => h('option', { value: x.deviceId }, x.label || `Device ${i + 1}`)));
        if (keep) sel.value = keep;
        sel.disabled = list.length === 0;
      };
      fill(camSel, d.video, local.video);
      fill(micSel, d.audio, local.audio);
    } catch {
      // Device lists are a nicety.
    }
    refresh();
  };

  micBtn.addEventListener('click', () => { want.audio = !want.audio; open(); });
  camBtn.addEventListener('click', () => { want.video = !want.video; open(); });
  camSel.addEventListener('change', open);
  micSel.addEventListener('change', open);

  const form = h('form', { class: 'join-form', novalidate: true },
    h('p', { class: 'eyebrow' }, icon('shield'), 'End-to-end encrypted meeting'),
    h('h1', { 'data-testid': 'meeting-title' }, meeting.title || 'Meeting'),
    h('div', { class: 'field' }, h('label', { for: 'name', class: 'field-label' }, 'Your name'), name),
    h('div', { class: 'field-row' },
      h('div', { class: 'field' }, h('label', { for: 'cam-select', class: 'field-label' }, 'Camera'), camSel),
      h('div', { class: 'field' }, h('label', { for: 'mic-select', class: 'field-label' }, 'Microphone'), micSel)),
    from ? h('div', { class: 'field' }, h('label', { for: 'from', class: 'field-label' }, 'Join from'), from,
      h('p', { class: 'field-hint' }, 'This demo deployment trusts the location you state; it decides which server you are placed on.')) : null,
    missing.length ? h('p', { class: 'join-error', role: 'alert', 'data-testid': 'browser-unsupported' }, unsupportedText(missing)) : null,
    error,
    h('div', { class: 'actions' }, joinBtn));
  joinBtn.disabled = missing.length > 0;
  const formBox = h('div', { class: 'join-box' }, form, waiting.el);
  const setWaiting = (on) => {
    form.hidden = on;
    waiting.el.hidden = !on;
  };

  clear(root, h('div', { class: 'page lobby' },
    h('header', { class: 'topbar-light' }, logo()),
    h('section', { class: 'card lobby-card' },
      h('div', { class: 'preview-pane' },
        h('div', { class: 'preview-frame' }, video, noCam, h('div', { class: 'preview-controls' }, micBtn, camBtn)),
        level, deviceNote),
      formBox)));

  const join = async () => {
    if (missing.length) return;
    const n = name.value.trim();
    if (!n) {
      name.focus();
      error.hidden = false;
      error.textContent = 'Please enter your name, so others know who you are.';
      return;
    }
    localStorage.setItem('oakmeet.name', n);
    error.hidden = true;
    joinBtn.disabled = true;
    joinBtn.textContent = 'Joining…';
    meter?.stop();
    const tracks = { audio: want.audio ? local.audio : null, video: want.video ? local.video : null };
    // A country in the link is passed on as a hint even where this page
    // offers no choice: the server decides whether it trusts hints.
    const country = from ? from.value : (params.get('country') ?? '').toUpperCase();
    const mine = ++attempt;
    let call;
    try {
      // The identity key is made here the first time: a browser without
      // Ed25519 fails now, and says so like any other failed join.
      call = new Call({ meeting: id, name: n, country, identity: await identity, local: { ...tracks, stream: local.stream }, link });
      call.addEventListener('lobby', (e) => {
        waitingCall = call;
        waiting.say(`You asked to join as ${n}.`);
        setWaiting(true);
      });
      await call.start();
    } catch (err) {
      call?.end('');
      // A lobby left by hand was answered already (waiting.leave).
      if (mine !== attempt) return;
      failed(refusalTitle(err.code), refusalMessage(err), err.code, err.node);
      return;
    }
    if (mine !== attempt) {
      call.end('');
      return;
    }
    setWaiting(false);
    const hostKey = hostToken ? await loadHostKey(id) : null;
    meetingPage(root, { call, meeting, hostToken, hostKey, geo, config });
  };
  const failed = (title, text, code, node) => {
    setWaiting(false);
    waitingCall = null;
    showRefusal(title, text, code, node);
    joinBtn.disabled = false;
    joinBtn.textContent = 'Try again';
    refresh();
  };
  waiting.leave.addEventListener('click', () => {
    attempt++;
    waitingCall?.end('');
    failed('You left the lobby', 'Join again whenever you are ready.', 'left_lobby');
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    join();
  });

  refresh();
  await open();
  if (params.get('autojoin') === '1' && name.value.trim()) join();
  else name.focus();
}

// waitingView is the lobby's waiting screen.
function waitingView() {
  const leave = h('button', { type: 'button', class: 'btn btn-quiet', 'data-testid': 'leave-lobby' }, 'Leave the lobby');
  const line = h('p', { class: 'waiting-name' });
  const el = h('div', { class: 'waiting', role: 'status', 'aria-live': 'polite', 'data-testid': 'lobby-waiting', hidden: true },
    h('div', { class: 'waiting-dots', 'aria-hidden': 'true' }, h('i'), h('i'), h('i')),
    h('h2', {}, 'Waiting for the host to let you in'),
    line,
    h('p', { class: 'small' }, 'The host sees the name you gave and where you are joining from. This page lets you in as soon as they say yes; keep it open.'),
    h('div', { class: 'actions' }, leave));
  return { el, leave, say: (text) => { line.textContent = text; } };
}

function refusalTitle(code) {
  switch (code) {
    case 'bad_meeting_secret': return 'This link does not open the meeting';
    case 'meeting_locked': return 'The meeting is locked';
    case 'lobby_denied': return 'Not let in';
    case 'lobby_expired': return 'The lobby let you go';
    case 'lobby_full': return 'The lobby is full';
    case 'node_not_allowed_by_policy': return 'Your browser refused a media server the host’s policy does not allow';
    case 'node_cert_invalid': return 'Your browser refused a media server without a valid certificate';
    case 'node_proof_invalid': return 'Your browser refused a media server that could not prove who it is';
    case 'no_host_policy': return 'Your browser cannot check where this meeting runs';
    default: return code?.startsWith('no_') ? 'This meeting cannot be joined right now' : 'Could not join';
  }
}
