// Services: the list with instance counts and health summary, and a
// service's page with each instance and its checks. Both live.

import { h, render, badge, counts, plural, tags, dl, checkList, message, worst } from '../dom.js';
import { watch } from '../api.js';

function serviceStatus(s) {
  if (s.ChecksCritical > 0) return 'critical';
  if (s.ChecksWarning > 0) return 'warning';
  return 'passing';
}

export function list({ main, signal }) {
  document.title = 'Services · tribune';
  const summary = h('p', { class: 'summary', id: 'service-summary' }, 'Loading…');
  const filter = h('input', { type: 'search', id: 'service-filter', autocomplete: 'off', spellcheck: 'false' });
  const rows = h('ul', { class: 'rows', id: 'service-list', 'aria-labelledby': 'services-h' });
  const error = h('div', { role: 'alert' });
  main.append(
    h('h1', { id: 'services-h' }, 'Services'),
    h('div', { class: 'toolbar' },
      h('label', { for: 'service-filter' }, 'Filter'), filter),
    error, summary, rows);

  let all = [];
  const draw = () => {
    const q = filter.value.trim().toLowerCase();
    const shown = all.filter((s) => !q || s.Name.toLowerCase().includes(q)
      || (s.Tags || []).some((t) => t.toLowerCase().includes(q)));
    const by = { passing: 0, warning: 0, critical: 0 };
    for (const s of all) by[serviceStatus(s)]++;
    render(summary, plural(all.length, 'service'), ': ',
      counts(by.passing, by.warning, by.critical),
      q ? ` — ${shown.length} shown` : '');
    if (shown.length === 0) {
      render(rows, h('li', { class: 'row muted' }, all.length ? 'No service matches the filter.' : 'No services are registered.'));
      return;
    }
    render(rows, shown.map((s) => {
      const st = serviceStatus(s);
      return h('li', { class: 'row', dataset: { service: s.Name, status: st } },
        h('div', { class: 'row-main' },
          badge(st), ' ',
          h('a', { href: `#/services/${encodeURIComponent(s.Name)}`, class: 'name' }, s.Name)),
        h('div', { class: 'row-meta' },
          h('span', { class: 'instances' }, plural(s.InstanceCount, 'instance')),
          ' ', counts(s.ChecksPassing, s.ChecksWarning, s.ChecksCritical)),
        tags(s.Tags));
    }));
  };
  filter.addEventListener('input', draw);
  watch('/v1/internal/ui/services', (data) => {
    error.replaceChildren();
    all = (data || []).slice().sort((a, b) => a.Name.localeCompare(b.Name));
    draw();
  }, signal, { onError: (e) => render(error, message('error', e.explain())) });
}

export function detail({ main, signal }, name) {
  document.title = `${name} · Services · tribune`;
  const heading = h('h1', {}, name, ' ', h('span', { id: 'service-status' }));
  const summary = h('p', { class: 'summary', id: 'instance-summary' }, 'Loading…');
  const list = h('div', { id: 'instance-list', class: 'cards' });
  const error = h('div', { role: 'alert' });
  main.append(
    h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, h('a', { href: '#/services' }, 'Services'), ' / ', name),
    heading, error, summary, list);

  watch(`/v1/health/service/${encodeURIComponent(name)}`, (data) => {
    error.replaceChildren();
    const entries = (data || []).slice().sort((a, b) =>
      a.Node.Node.localeCompare(b.Node.Node) || a.Service.ID.localeCompare(b.Service.ID));
    const all = entries.flatMap((e) => e.Checks.map((c) => c.Status));
    render(heading.querySelector('#service-status'), entries.length ? badge(worst(all)) : null);
    const by = { passing: 0, warning: 0, critical: 0 };
    for (const s of all) by[s in by ? s : 'critical']++;
    render(summary, plural(entries.length, 'instance'), entries.length ? ': ' : '',
      entries.length ? counts(by.passing, by.warning, by.critical) : '');
    if (entries.length === 0) {
      render(list, message('info', `No instances of ${name} are registered.`));
      return;
    }
    render(list, entries.map(({ Node: n, Service: s, Checks: checks }) => {
      const addr = s.Address || n.Address;
      return h('article', { class: 'card', dataset: { instance: `${n.Node}/${s.ID}`, status: worst(checks.map((c) => c.Status)) } },
        h('h2', {}, badge(worst(checks.map((c) => c.Status))), ' ', s.ID),
        h('dl', { class: 'facts' },
          h('dt', {}, 'Node'), h('dd', {}, h('a', { href: `#/nodes/${encodeURIComponent(n.Node)}` }, n.Node)),
          h('dt', {}, 'Address'), h('dd', {}, h('code', {}, s.Port ? `${addr}:${s.Port}` : addr))),
        tags(s.Tags),
        s.Meta && Object.keys(s.Meta).length ? [h('h3', {}, 'Meta'), dl(s.Meta, 'Meta')] : null,
        h('h3', {}, 'Checks'),
        checkList(checks));
    }));
  }, signal, { onError: (e) => render(error, message('error', e.explain())) });
}
