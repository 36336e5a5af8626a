// The app's entry point: routes "/" to the create page and "/m/{id}" to
// the meeting. A meeting link carries the join secret and the host key's
// fingerprint in its URL fragment (/m/{id}#s=SECRET&h=FINGERPRINT), and the
// host's link the host token too (&host=TOKEN): browsers never send a
// fragment to a server. It is moved to this tab's sessionStorage and
// removed from the address bar.

import { clear, h, logo } from './dom.js';
import { createPage } from './create.js';
import { lobbyPage } from './lobby.js';

// meetingLink moves what the link's fragment carries (#s=SECRET&h=
// FINGERPRINT[&host=HOST_TOKEN]) into this tab's sessionStorage, strips it
// from the address bar (so it is not left in the history, or shown on a
// shared screen) and returns what this tab holds for the meeting.
export function meetingLink(id) {
  const linkKey = `oakmeet.link.${id}`;
  const hostKey = `oakmeet.host.${id}`;
  const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (frag.has('s') || frag.has('h') || frag.has('host')) {
    if (frag.has('s')) {
      sessionStorage.setItem(linkKey, JSON.stringify({ secret: frag.get('s') ?? '', fingerprint: frag.get('h') ?? '' }));
    }
    if (frag.get('host')) sessionStorage.setItem(hostKey, frag.get('host'));
    history.replaceState(null, '', location.pathname + location.search);
  }
  let link = {};
  try {
    link = JSON.parse(sessionStorage.getItem(linkKey) ?? '{}') ?? {};
  } catch {
    link = {};
  }
  return { secret: link.secret ?? '', fingerprint: link.fingerprint ?? '', hostToken: sessionStorage.getItem(hostKey) ?? '' };
}

async function main() {
  const root = document.getElementById('app');
  try {
    const m = /^\/m\/([^/]+)\/?$/.exec(location.pathname);
    if (m) {
      const id = decodeURIComponent(m[1]);
      await lobbyPage(root, id, meetingLink(id));
    } else {
      await createPage(root);
    }
  } catch (err) {
    clear(root, h('div', { class: 'page narrow' }, h('header', { class: 'topbar-light' }, logo()),
      h('section', { class: 'card notice' }, h('h1', {}, 'Something went wrong'), h('p', {}, err.message ?? String(err)),
        h('button', { class: 'btn btn-primary', onclick: () => location.reload() }, 'Reload'))));
  }
}

// A link pasted into a tab already at its address only changes the
// fragment: start again, so the new fragment is read (and stripped).
window.addEventListener('hashchange', () => {
  if (/(?:^#|&)(?:s|h|host)=/.test(location.hash)) location.reload();
});

main();
