// The app's entry point: routes "/" to the create page and "/m/{id}" to
// the meeting. A host link carries its token in the URL fragment
// (/m/{id}#host=TOKEN), which browsers never send to a server; it is moved
// to this tab's sessionStorage and removed from the address bar.

import { clear, h, logo } from './dom.js';
import { createPage } from './create.js';
import { lobbyPage } from './lobby.js';

function hostToken(id) {
  const key = `oakmeet.host.${id}`;
  const m = /(?:^#|&)host=([A-Za-z0-9_-]+)/.exec(location.hash);
  if (m) {
    sessionStorage.setItem(key, m[1]);
    history.replaceState(null, '', location.pathname + location.search);
  }
  return sessionStorage.getItem(key) ?? '';
}

async function main() {
  const root = document.getElementById('app');
  try {
    const m = /^\/m\/([^/]+)\/?$/.exec(location.pathname);
    if (m) {
      const id = decodeURIComponent(m[1]);
      await lobbyPage(root, id, hostToken(id));
    } else {
      await createPage(root);
    }
  } catch (err) {
    clear(root, h('div', { class: 'page narrow' }, h('header', { class: 'topbar-light' }, logo()),
      h('section', { class: 'card notice' }, h('h1', {}, 'Something went wrong'), h('p', {}, err.message ?? String(err)),
        h('button', { class: 'btn btn-primary', onclick: () => location.reload() }, 'Reload'))));
  }
}

main();
