// The single-page app: a hash router (#/services, #/nodes/<name>, #/kv/<path>,
// #/settings) mounting one view at a time. Each view gets an AbortSignal that
// ends its blocking queries when the reader navigates away. The path names
// the datacenter shown: /ui/ is the agent's own, /ui/<dc>/ another one
// (every request then carries ?dc=, see api.js).

import { h } from './dom.js';
import { connection, request, setRemoteDatacenter, remoteDatacenter } from './api.js';
import { datacenters, datacenterMenu, sectionUrl } from './dcmenu.js';
import * as services from './views/services.js';
import * as nodes from './views/nodes.js';
import * as kv from './views/kv.js';
import * as settings from './views/settings.js';
import * as acls from './views/acls.js';

const routes = [
  [/^\/services\/?$/, 'services', (ctx) => services.list(ctx)],
  [/^\/services\/(.+)$/, 'services', (ctx, m) => services.detail(ctx, decode(m[1]))],
  [/^\/nodes\/?$/, 'nodes', (ctx) => nodes.list(ctx)],
  [/^\/nodes\/(.+)$/, 'nodes', (ctx, m) => nodes.detail(ctx, decode(m[1]))],
  [/^\/kv(?:\/(.*))?$/, 'kv', (ctx, m) => kv.view(ctx, decodeKey(m[1] || ''))],
  [/^\/settings\/?$/, 'settings', (ctx) => settings.view(ctx)],
  [/^\/acls(?:\/(\w+))?\/?$/, 'acls', (ctx, m) => acls.view(ctx, m[1] || 'tokens')],
];

function decode(s) {
  return decodeURIComponent(s);
}

function decodeKey(s) {
  return s.split('/').map(decodeURIComponent).join('/');
}

/**
 * Consul's own UI URLs as this app's routes, so a Consul user's bookmarks
 * and links work: /ui/<dc>/services[/<name>[/instances...]],
 * /ui/<dc>/nodes[/<name>[/health-checks...]], /ui/<dc>/kv[/<path>[/edit]],
 * /ui/<dc>/acls[/tokens|policies|roles], /ui/<dc>/settings and
 * /ui/settings. Sections this UI lacks (intentions...) map to their own name and show "Page not found".
 * Returns null for /ui/ itself.
 */
export function consulRoute(pathname) {
  const rest = pathname.replace(/^\/ui\/?/, '');
  if (rest === '' || rest === 'index.html') return null;
  if (rest === 'settings' || rest === 'settings/') return '/settings';
  const slash = rest.indexOf('/');
  const tail = slash < 0 ? '' : rest.slice(slash + 1); // without the datacenter
  const parts = tail.split('/');
  const section = parts[0];
  switch (section) {
    case '':
      return '/services';
    case 'acls':
      return parts[1] ? `/acls/${parts[1]}` : '/acls';
    case 'services':
    case 'nodes':
      // <name> is one segment; Consul's sub-pages of it show the same view here.
      return parts[1] ? `/${section}/${parts[1]}` : `/${section}`;
    case 'kv': {
      let key = parts.slice(1).join('/');
      if (key.endsWith('/edit')) key = key.slice(0, -'/edit'.length);
      else if (key === 'create' || key.endsWith('/create')) key = key.slice(0, -'create'.length);
      return `/kv/${key}`;
    }
    default:
      return `/${tail}`;
  }
}

/**
 * The datacenter a UI path names: `dc2` for /ui/dc2/ and Consul's
 * /ui/dc2/services/...; '' for /ui/ and Consul's /ui/settings.
 */
export function datacenterOf(pathname) {
  const rest = pathname.replace(/^\/ui\/?/, '');
  const first = rest.split('/')[0];
  if (first === '' || first === 'index.html' || /^settings\/?$/.test(rest)) return '';
  try {
    return decodeURIComponent(first);
  } catch {
    return first;
  }
}

let current = null;
let menu = null;
// A datacenter the URL names but the agent has no route to.
let unknownDc = '';

/** The page for a datacenter the agent cannot reach, with the ones it can. */
function noPath(main, known, path) {
  document.title = 'No path to datacenter · tribune';
  main.append(h('div', { id: 'dc-unknown' },
    h('h1', {}, 'No path to datacenter'),
    h('p', {}, `This agent has no route to a datacenter named “${unknownDc}”: `,
      'no server of it is in the WAN pool (a misspelt name, or all its servers are gone).'),
    h('p', {}, 'Datacenters it can reach: ',
      (known || []).map((dc, i) => [i ? ', ' : '', h('a', { href: sectionUrl(dc, path) }, dc)]), '.')));
}

function mount(fromNavigation, known) {
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
  menu?.route(path);
  try {
    if (unknownDc) {
      noPath(main, known, path);
      section = 'none';
    }
    for (const [re, name, fn] of unknownDc ? [] : routes) {
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
  const remote = remoteDatacenter();
  if (remote) document.title = document.title.replace(/ · tribune$/, ` · ${remote} · tribune`);
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
    // tribune's own version; Config.Version is the Consul API it implements.
    el.textContent = `${c.Datacenter || ''} · ${c.NodeName || ''} · tribune v${c.TribuneVersion || c.Version || '?'}`;
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

/**
 * A Consul deep link (/ui/dc1/services/web) becomes this app's route:
 * /ui/#/services/web in the agent's own datacenter, /ui/<dc>/#/... in
 * another (`remote`).
 */
function adoptConsulPath(remote) {
  const base = remote ? `/ui/${encodeURIComponent(remote)}/` : '/ui/';
  if (location.pathname === base) return;
  // A hash route of this app wins over the path it was appended to.
  const hash = location.hash.startsWith('#/') ? location.hash : '';
  const route = consulRoute(location.pathname);
  history.replaceState(null, '', `${base}${hash || (route ? `#${route}` : '')}`);
}

async function start() {
  // Which datacenter: the one the URL names, unless it is the agent's own
  // (the first listed). Unanswered, the URL's is taken as another one.
  const named = datacenterOf(location.pathname);
  const known = named ? await datacenters() : null;
  const remote = named && named !== known?.[0] ? named : '';
  setRemoteDatacenter(remote);
  unknownDc = remote && known && !known.includes(remote) ? remote : '';
  adoptConsulPath(remote);
  menu = datacenterMenu(document.getElementById('dc-menu'), remote, known);
  // The skip link targets <main> without touching the hash (the router's).
  document.querySelector('.skip')?.addEventListener('click', (e) => {
    e.preventDefault();
    document.getElementById('main').focus();
  });
  connectionBanner();
  window.addEventListener('hashchange', () => mount(true, known));
  mount(false, known);
  agentInfo();
  // a new token may see what the old one could not
  window.addEventListener('tribune:token', agentInfo);
}

start();
