// The datacenter menu in the header: every datacenter the agent knows
// (/v1/catalog/datacenters, its own first), the one shown marked. Each is
// a plain link to Consul's URL of the same section there
// (/ui/<dc>/services), so choosing one loads the UI for that datacenter.

import { h, render } from './dom.js';
import { request } from './api.js';

/** The agent's datacenters, its own first; null when it did not answer. */
export async function datacenters() {
  try {
    const r = await request('/v1/catalog/datacenters');
    return Array.isArray(r.data) && r.data.every((d) => typeof d === 'string') ? r.data : null;
  } catch {
    return null;
  }
}

/** The Consul URL of the section `route` (a hash route) is in, for `dc`. */
export function sectionUrl(dc, route) {
  const [, section = '', sub = ''] = route.split('/');
  let tail = 'services';
  if (section === 'nodes' || section === 'settings') tail = section;
  else if (section === 'kv') tail = 'kv/';
  else if (section === 'acls') tail = sub ? `acls/${sub}` : 'acls';
  return `/ui/${encodeURIComponent(dc)}/${tail}`;
}

/**
 * The menu in `root` (a <details> with a <summary> and a <ul>), showing
 * `current`. Returns { route(r) } to point the links at route r's section.
 */
export function datacenterMenu(root, current, known) {
  const summary = root.querySelector('summary');
  const label = root.querySelector('#dc-current');
  const list = root.querySelector('#dc-list');
  let dcs = known;
  let route = '/services';
  const draw = () => {
    label.textContent = current || dcs?.[0] || '…';
    if (!dcs) {
      render(list, h('li', { class: 'muted' }, 'The agent did not list its datacenters.'));
      return;
    }
    const shown = current || dcs[0];
    render(list, dcs.map((dc, i) => h('li', {},
      h('a', { href: sectionUrl(dc, route), dataset: { dc }, 'aria-current': dc === shown ? 'true' : null },
        h('span', { class: 'icon', 'aria-hidden': 'true' }, dc === shown ? '✓' : ''), dc),
      i === 0 ? h('span', { class: 'muted small' }, 'this agent') : null)));
  };
  const refresh = async () => {
    dcs = (await datacenters()) || dcs;
    draw();
  };
  // A datacenter joins or goes away while the UI is open: ask again on open.
  root.addEventListener('toggle', () => { if (root.open) refresh(); });
  root.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && root.open) {
      root.open = false;
      summary.focus();
    }
  });
  document.addEventListener('click', (e) => {
    if (root.open && !root.contains(e.target)) root.open = false;
  });
  draw();
  if (!dcs) refresh();
  return {
    route(r) {
      route = r;
      draw();
    },
  };
}
