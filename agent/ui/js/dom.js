// Small DOM helpers. Everything from the API is inserted as text nodes,
// never as HTML, so keys, tags and check output cannot inject markup.

/** h('a', {href: '#/x', class: 'y'}, 'text', child...) */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.className = v;
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function focusKey(el) {
  return el.getAttribute('data-focus') || (el.getAttribute('href') ? 'href:' + el.getAttribute('href') : null);
}

/**
 * Replace a live region's content, keeping keyboard focus on the "same"
 * link or button (by href or data-focus) so a background update does not
 * throw a keyboard user back to the top of the page.
 */
export function render(container, ...nodes) {
  const active = document.activeElement;
  const key = active && active !== container && container.contains(active) ? focusKey(active) : null;
  container.replaceChildren();
  append(container, nodes);
  if (key) {
    for (const el of container.querySelectorAll('a[href], button, [data-focus]')) {
      if (focusKey(el) === key) { el.focus({ preventScroll: true }); break; }
    }
  }
}

const ICONS = { passing: '✓', warning: '!', critical: '✕' };

/** A health badge: colour plus icon plus word, never colour alone. */
export function badge(status, text) {
  const st = ICONS[status] ? status : 'unknown';
  return h('span', { class: `badge st-${st}` },
    h('span', { 'aria-hidden': 'true', class: 'icon' }, ICONS[st] || '?'), ' ', text ?? status);
}

/** Worst status of a set of checks ('passing' when there are none). */
export function worst(statuses) {
  let w = 'passing';
  for (const s of statuses) {
    if (s === 'critical' || (s !== 'passing' && s !== 'warning')) return 'critical';
    if (s === 'warning') w = 'warning';
  }
  return w;
}

export function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** Encode a KV key or a name for a URL path, keeping its slashes. */
export function encodePath(s) {
  return s.split('/').map(encodeURIComponent).join('/');
}

export function tags(list) {
  if (!list || list.length === 0) return null;
  return h('ul', { class: 'tags', 'aria-label': 'Tags' }, list.map((t) => h('li', {}, t)));
}

/** A <dl> of a string map (meta, tagged addresses); null when empty. */
export function dl(map, label) {
  const entries = Object.entries(map || {});
  if (entries.length === 0) return null;
  return h('dl', { class: 'kvpairs', 'aria-label': label },
    entries.map(([k, v]) => [h('dt', {}, k), h('dd', {}, typeof v === 'object' ? JSON.stringify(v) : String(v))]));
}

/** A list of checks with status, name, ID and output. */
export function checkList(checks) {
  if (!checks || checks.length === 0) return h('p', { class: 'muted' }, 'No checks.');
  const order = { critical: 0, warning: 1, passing: 2 };
  const sorted = [...checks].sort((a, b) => (order[a.Status] ?? 0) - (order[b.Status] ?? 0) || a.Name.localeCompare(b.Name));
  return h('ul', { class: 'checks' }, sorted.map((c) => h('li', { class: 'check', dataset: { check: c.CheckID, status: c.Status } },
    h('div', { class: 'check-head' }, badge(c.Status), ' ', h('strong', {}, c.Name),
      ' ', h('code', { class: 'muted' }, c.CheckID), c.Type ? h('span', { class: 'muted' }, ` · ${c.Type}`) : null),
    c.Notes ? h('p', { class: 'muted' }, c.Notes) : null,
    c.Output ? h('pre', { class: 'output' }, c.Output) : null)));
}

/** Counts of checks by status, as small badges ("2 passing", "1 critical"). */
export function counts(passing, warning, critical) {
  const parts = [];
  if (critical) parts.push(badge('critical', `${critical} critical`));
  if (warning) parts.push(badge('warning', `${warning} warning`));
  if (passing) parts.push(badge('passing', `${passing} passing`));
  if (parts.length === 0) parts.push(h('span', { class: 'muted' }, 'no checks'));
  return h('span', { class: 'counts' }, parts);
}

export function message(kind, ...content) {
  return h('div', { class: `msg msg-${kind}` }, content);
}
