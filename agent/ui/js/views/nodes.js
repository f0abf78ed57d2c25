// Nodes: the list with membership status, and a node's page with its
// services and checks. Status comes from gossip membership
// (/v1/agent/members) when the agent answers it, else from the node's
// serfHealth check, which membership drives. In another datacenter it is
// always serfHealth: this agent's members are its own datacenter's.

import { h, render, badge, counts, plural, tags, dl, checkList, message } from '../dom.js';
import { watch, request, remoteDatacenter } from '../api.js';

const MEMBER_STATUS = { 0: 'none', 1: 'alive', 2: 'leaving', 3: 'left', 4: 'failed' };
const STATUS_HEALTH = { alive: 'passing', leaving: 'warning', left: 'warning', failed: 'critical' };
// /v1/agent/members has no index to block on; refreshed with each catalog
// change and at this interval while a node page is open.
const MEMBERS_EVERY_MS = 5000;

/** Map of node name -> 'alive'|'failed'|..., or null when members is unavailable. */
async function members(signal) {
  if (remoteDatacenter()) return null;
  try {
    const r = await request('/v1/agent/members', { signal });
    if (r.status !== 200 || !Array.isArray(r.data)) return null;
    const m = new Map();
    for (const mem of r.data) {
      const st = typeof mem.Status === 'number' ? MEMBER_STATUS[mem.Status] : String(mem.Status).toLowerCase();
      m.set(mem.Name, { status: st || 'unknown', addr: mem.Addr });
    }
    return m;
  } catch {
    return null;
  }
}

function fromSerfHealth(node) {
  const serf = (node.Checks || []).find((c) => c.CheckID === 'serfHealth');
  if (!serf) return 'unknown';
  return serf.Status === 'passing' ? 'alive' : serf.Status === 'critical' ? 'failed' : serf.Status;
}

function statusOf(node, mem) {
  if (mem) return mem.get(node.Node)?.status || 'unknown';
  return fromSerfHealth(node);
}

function statusBadge(st) {
  return h('span', { class: 'member' }, badge(STATUS_HEALTH[st] || 'unknown', st));
}

function sourceNote(mem) {
  return h('p', { class: 'muted small', id: 'status-source' },
    mem ? 'Status from gossip membership (/v1/agent/members).' : 'Status from each node’s serfHealth check.');
}

/** Re-run `fn` at MEMBERS_EVERY_MS until the view is left. */
function every(signal, fn) {
  const t = setInterval(fn, MEMBERS_EVERY_MS);
  signal.addEventListener('abort', () => clearInterval(t), { once: true });
}

function checkCounts(checks) {
  const by = { passing: 0, warning: 0, critical: 0 };
  for (const c of checks || []) by[c.Status in by ? c.Status : 'critical']++;
  return counts(by.passing, by.warning, by.critical);
}

export function list({ main, signal }) {
  document.title = 'Nodes · tribune';
  const summary = h('p', { class: 'summary', id: 'node-summary' }, 'Loading…');
  const rows = h('ul', { class: 'rows', id: 'node-list', 'aria-labelledby': 'nodes-h' });
  const note = h('div');
  const error = h('div', { role: 'alert' });
  main.append(h('h1', { id: 'nodes-h' }, 'Nodes'), error, summary, rows, note);

  let nodes = null;
  let mem = null;
  const draw = () => {
    if (!nodes) return;
    const names = new Set(nodes.map((n) => n.Node));
    // members that left the catalog (left or reaped) are still worth seeing
    const extra = mem ? [...mem.keys()].filter((n) => !names.has(n)).map((n) => ({ Node: n, Address: mem.get(n).addr, Services: [], Checks: [], gone: true })) : [];
    const all = [...nodes, ...extra].sort((a, b) => a.Node.localeCompare(b.Node));
    const by = {};
    for (const n of all) { const st = statusOf(n, mem); by[st] = (by[st] || 0) + 1; }
    render(summary, plural(all.length, 'node'), Object.keys(by).length ? ': ' : '',
      Object.entries(by).map(([st, n], i) => [i ? ', ' : '', `${n} ${st}`]));
    render(note, sourceNote(mem));
    if (all.length === 0) {
      render(rows, h('li', { class: 'row muted' }, 'No nodes are registered.'));
      return;
    }
    render(rows, all.map((n) => {
      const st = statusOf(n, mem);
      return h('li', { class: 'row', dataset: { node: n.Node, status: st } },
        h('div', { class: 'row-main' }, statusBadge(st), ' ',
          h('a', { href: `#/nodes/${encodeURIComponent(n.Node)}`, class: 'name' }, n.Node)),
        h('div', { class: 'row-meta' },
          h('code', {}, n.Address || ''), ' · ',
          n.gone ? 'not in the catalog' : plural((n.Services || []).length, 'service'),
          ' ', n.gone ? null : checkCounts(n.Checks)));
    }));
  };
  const refreshMembers = async () => {
    mem = await members(signal);
    if (!signal.aborted) draw();
  };
  watch('/v1/internal/ui/nodes', (data) => {
    error.replaceChildren();
    nodes = data || [];
    draw();
    refreshMembers();
  }, signal, { onError: (e) => render(error, message('error', e.explain())) });
  every(signal, refreshMembers);
}

export function detail({ main, signal }, name) {
  document.title = `${name} · Nodes · tribune`;
  const status = h('span', { id: 'node-status' });
  const body = h('div', { id: 'node-detail' }, h('p', {}, 'Loading…'));
  const note = h('div');
  const error = h('div', { role: 'alert' });
  main.append(
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('a', { href: '#/nodes' }, 'Nodes'), ' / ', name),
    h('h1', {}, name, ' ', status), error, body, note);

  let node;
  let mem = null;
  const drawStatus = () => {
    if (node === undefined) return;
    const st = node ? statusOf(node, mem) : mem?.get(name)?.status;
    render(status, st ? statusBadge(st) : null);
    render(note, sourceNote(mem));
  };
  const refreshMembers = async () => {
    mem = await members(signal);
    if (!signal.aborted) drawStatus();
  };
  watch(`/v1/internal/ui/node/${encodeURIComponent(name)}`, (data) => {
    error.replaceChildren();
    node = data;
    drawStatus();
    refreshMembers();
    if (!node) {
      render(body, message('info', `No node named ${name} is in the catalog.`));
      return;
    }
    const services = (node.Services || []).slice().sort((a, b) => a.ID.localeCompare(b.ID));
    const nodeChecks = (node.Checks || []).filter((c) => !c.ServiceID);
    render(body,
      h('dl', { class: 'facts' },
        h('dt', {}, 'Address'), h('dd', {}, h('code', {}, node.Address)),
        h('dt', {}, 'Datacenter'), h('dd', {}, node.Datacenter),
        node.ID ? [h('dt', {}, 'Node ID'), h('dd', {}, h('code', {}, node.ID))] : null),
      node.Meta && Object.keys(node.Meta).length ? [h('h2', {}, 'Meta'), dl(node.Meta, 'Node meta')] : null,
      h('h2', {}, 'Node checks'),
      checkList(nodeChecks),
      h('h2', {}, 'Services'),
      services.length === 0 ? h('p', { class: 'muted' }, 'No services on this node.')
        : h('div', { class: 'cards', id: 'node-services' }, services.map((s) => {
          const checks = (node.Checks || []).filter((c) => c.ServiceID === s.ID);
          return h('article', { class: 'card', dataset: { service: s.ID } },
            h('h3', {}, h('a', { href: `#/services/${encodeURIComponent(s.Service)}` }, s.Service),
              s.ID !== s.Service ? h('span', { class: 'muted' }, ` (${s.ID})`) : null),
            h('p', {}, h('code', {}, s.Port ? `${s.Address || node.Address}:${s.Port}` : (s.Address || node.Address)), ' ', checkCounts(checks)),
            tags(s.Tags),
            checks.length ? checkList(checks) : null);
        })));
  }, signal, { onError: (e) => render(error, message('error', e.explain())) });
  every(signal, refreshMembers);
}
