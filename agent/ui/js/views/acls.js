// ACLs, for management tokens: tokens, policies and roles (list, create,
// delete). Any other token sees Consul's "Permission denied" state, and
// ACLs turned off say so instead of showing empty lists.

import { h, render, message } from '../dom.js';
import { request, ApiError } from '../api.js';

const KINDS = {
  tokens: { list: '/v1/acl/tokens', one: '/v1/acl/token', id: 'AccessorID', title: 'Tokens' },
  policies: { list: '/v1/acl/policies', one: '/v1/acl/policy', id: 'ID', title: 'Policies' },
  roles: { list: '/v1/acl/roles', one: '/v1/acl/role', id: 'ID', title: 'Roles' },
};

function tabs(kind) {
  return h('nav', { class: 'toolbar', 'aria-label': 'ACL sections' },
    Object.entries(KINDS).map(([k, v]) => [h('a', {
      href: `#/acls/${k}`, 'aria-current': k === kind ? 'page' : null,
    }, v.title), ' ']));
}

/** Why a list is not shown: ACLs off (401), or not allowed (403). */
function refusal(e) {
  if (e instanceof ApiError && e.status === 401) return message('info', 'ACLs are disabled on this agent.');
  if (e instanceof ApiError && e.status === 403) {
    return h('div', { id: 'acl-denied' }, message('error',
      'Permission denied: this token may not manage ACLs. ',
      h('a', { href: '#/settings' }, 'Log in with another token'), '.'));
  }
  return message('error', e.explain ? e.explain() : String(e));
}

function label(kind, item) {
  if (kind === 'tokens') return item.Description || item.AccessorID;
  return item.Name;
}

function links(item) {
  return [...(item.Policies || []), ...(item.Roles || [])].map((p) => p.Name).join(', ');
}

function createForm(kind, done, error) {
  const name = h('input', { id: 'acl-name', name: 'name', autocomplete: 'off' });
  const rules = h('textarea', { id: 'acl-rules', name: 'rules', rows: 5, spellcheck: 'false' });
  const policies = h('input', { id: 'acl-policies', name: 'policies', autocomplete: 'off' });
  const fields = kind === 'policies'
    ? [h('label', { for: 'acl-name' }, 'Name'), name, h('label', { for: 'acl-rules' }, 'Rules (HCL or JSON)'), rules]
    : [h('label', { for: 'acl-name' }, kind === 'tokens' ? 'Description' : 'Name'), name,
      h('label', { for: 'acl-policies' }, 'Policies (names, comma-separated)'), policies];
  const form = h('form', { class: 'panel', id: 'acl-create' },
    h('h2', {}, `New ${kind.slice(0, -1).replace('ie', 'y')}`), ...fields,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Create')));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const links = policies.value.split(',').map((s) => s.trim()).filter(Boolean).map((n) => ({ Name: n }));
    const body = kind === 'policies' ? { Name: name.value.trim(), Rules: rules.value }
      : kind === 'tokens' ? { Description: name.value.trim(), Policies: links }
        : { Name: name.value.trim(), Policies: links };
    try {
      const r = await request(KINDS[kind].one, { method: 'PUT', body: JSON.stringify(body) });
      render(error, kind === 'tokens'
        ? message('ok', 'Token created. Secret: ', h('code', { id: 'acl-secret' }, r.data.SecretID))
        : message('ok', 'Created.'));
      form.reset();
      done();
    } catch (err) {
      render(error, message('error', err.explain ? err.explain() : String(err)));
    }
  });
  return form;
}

export function view({ main, signal }, kind) {
  if (!KINDS[kind]) kind = 'tokens';
  const k = KINDS[kind];
  document.title = `${k.title} · ACLs · tribune`;
  const rows = h('ul', { class: 'rows', id: 'acl-list' });
  const status = h('div', { role: 'status', id: 'acl-message' });
  main.append(h('h1', {}, 'Access Controls'), tabs(kind), status, rows);
  let form = null;
  const load = async () => {
    let r;
    try {
      r = await request(k.list, { signal });
    } catch (e) {
      if (signal.aborted) return;
      render(rows);
      render(status, refusal(e));
      form?.remove();
      return;
    }
    if (!form) {
      form = createForm(kind, load, status);
      main.append(form);
    }
    const items = (r.data || []).slice().sort((a, b) => label(kind, a).localeCompare(label(kind, b)));
    render(rows, items.length ? items.map((it) => {
      const del = h('button', { type: 'button', class: 'small' }, 'Delete');
      del.addEventListener('click', async () => {
        try {
          await request(`${k.one}/${encodeURIComponent(it[k.id])}`, { method: 'DELETE' });
          load();
        } catch (e) {
          render(status, message('error', e.explain ? e.explain() : String(e)));
        }
      });
      return h('li', { class: 'row', dataset: { acl: label(kind, it) } },
        h('div', { class: 'row-main' }, h('span', { class: 'name' }, label(kind, it))),
        h('div', { class: 'row-meta' }, h('code', {}, it[k.id]), ' ', links(it)),
        del);
    }) : h('li', { class: 'row muted' }, `No ${kind}.`));
  };
  load();
}
