// The single-page app: a hash router (#/services, #/nodes/<name>, #/kv/<path>,
// #/settings) mounting one view at a time. Each view gets an AbortSignal that
// ends its blocking queries when the reader navigates away.

import { h } from './dom.js';
import { connection, request } from './api.js';
import * as services from './views/services.js';
import * as nodes from './views/nodes.js';
import * as kv from './views/kv.js';
import * as settings from './views/settings.js';

const routes = [
  [/^\/services\/?$/, 'services', (ctx) => services.list(ctx)],
  [/^\/services\/(.+)$/, 'services', (ctx, m) => services.detail(ctx, decode(m[1]))],
  [/^\/nodes\/?$/, 'nodes', (ctx) => nodes.list(ctx)],
  [/^\/nodes\/(.+)$/, 'nodes', (ctx, m) => nodes.detail(ctx, decode(m[1]))],
  [/^\/kv(?:\/(.*))?$/, 'kv', (ctx, m) => kv.view(ctx, decodeKey(m[1] || ''))],
  [/^\/settings\/?$/, 'settings', (ctx) => settings.view(ctx)],
];

function decode(s) {
  return decodeURIComponent(s);
}

function decodeKey(s) {
  return s.split('/').map(decodeURIComponent).join('/');
}

let current = null;

function mount(fromNavigation) {
  const hash = location.hash;
  if (!hash.startsWith('#/')) {
    location.replace('#/services');
    return;
  }
  current?.abort();
  current = new AbortController();
  const main = document.getElementById('main');
  main.replaceChildren();
  const path = hash.slice(1);
  let section = null;
  const ctx = { main, signal: current.signal };
  try {
    for (const [re, name, fn] of routes) {
      const m = path.match(re);
      if (m) {
        section = name;
        fn(ctx, m);
        break;
      }
    }
  } catch (e) {
    if (!(e instanceof URIError)) throw e;
    section = null;
  }
  if (!section) {
    document.title = 'Not found · tribune';
    main.append(h('h1', {}, 'Page not found'),
      h('p', {}, 'Nothing here. ', h('a', { href: '#/services' }, 'Go to services'), '.'));
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (a.dataset.nav === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  // Move keyboard and screen-reader focus to the new page, not on first load.
  if (fromNavigation) main.focus({ preventScroll: false });
}

/** Header line: datacenter, node and version of the agent serving the UI. */
async function agentInfo() {
  const el = document.getElementById('agent-info');
  try {
    const r = await request('/v1/agent/self');
    const c = r.data?.Config || {};
    el.textContent = `${c.Datacenter || ''} · ${c.NodeName || ''} · v${c.Version || '?'}`;
  } catch {
    el.textContent = '';
  }
}

function connectionBanner() {
  const el = document.getElementById('conn');
  connection.addEventListener('lost', () => {
    el.textContent = 'Cannot reach the agent. Retrying…';
    el.hidden = false;
  });
  connection.addEventListener('ok', () => {
    if (!el.hidden) {
      el.hidden = true;
      el.textContent = '';
    }
  });
}

function start() {
  // The skip link targets <main> without touching the hash (the router's).
  document.querySelector('.skip')?.addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  connectionBanner();
  window.addEventListener('hashchange', () => mount(true));
  mount(false);
  agentInfo();
  // a new token may see what the old one could not
  window.addEventListener('tribune:token', agentInfo);
}

start();
