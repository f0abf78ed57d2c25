// Key/Value: browse folders, view a value (text, JSON pretty-printed),
// create, edit and delete keys and folders. Edits and deletes are
// check-and-set against the ModifyIndex the reader saw, so a concurrent
// change is reported instead of silently overwritten.

import { h, render, encodePath, message } from '../dom.js';
import { watch, request, decodeValue, ApiError, childController } from '../api.js';

const kvUrl = (key) => `/v1/kv/${encodePath(key)}`;
const kvHref = (key) => `#/kv/${encodePath(key)}`;

function parentOf(key) {
  const trimmed = key.endsWith('/') ? key.slice(0, -1) : key;
  const i = trimmed.lastIndexOf('/');
  return i < 0 ? '' : trimmed.slice(0, i + 1);
}

/** Last path segment ("app/db/" -> "db/", "app/db/url" -> "url"). */
function baseName(key) {
  const parent = parentOf(key);
  return key.slice(parent.length);
}

function breadcrumbs(path) {
  const isFolder = path === '' || path.endsWith('/');
  const segs = path.split('/');
  if (isFolder) segs.pop();
  const parts = [segs.length
    ? h('a', { href: '#/kv/' }, 'Key/Value')
    : h('span', { 'aria-current': 'page' }, 'Key/Value')];
  let acc = '';
  segs.forEach((seg, i) => {
    const last = i === segs.length - 1;
    const label = seg + (last && !isFolder ? '' : '/');
    acc += label;
    parts.push(' / ', last
      ? h('span', { 'aria-current': 'page' }, label)
      : h('a', { href: kvHref(acc) }, label));
  });
  return h('nav', { 'aria-label': 'Breadcrumb', class: 'crumbs' }, parts);
}

function describe(e) {
  if (e instanceof ApiError) return e.explain();
  return `Could not reach the agent: ${e.message}`;
}

/** Two-step delete: the first press asks, the second does it. */
function confirmButton(label, question, action) {
  const wrap = h('span', { class: 'confirm' });
  const ask = () => {
    const yes = h('button', { type: 'button', class: 'danger', 'data-focus': 'confirm-yes' }, `Yes, ${label.toLowerCase()}`);
    const no = h('button', { type: 'button', 'data-focus': 'confirm-no' }, 'Cancel');
    yes.addEventListener('click', action);
    no.addEventListener('click', () => { reset(); wrap.querySelector('button')?.focus(); });
    wrap.replaceChildren(h('span', { class: 'question' }, question), ' ', yes, ' ', no);
    yes.focus();
  };
  const reset = () => {
    wrap.replaceChildren(h('button', { type: 'button', class: 'danger', onclick: ask }, label));
  };
  reset();
  return wrap;
}

export function view(ctx, path) {
  if (path === '' || path.endsWith('/')) folder(ctx, path);
  else key(ctx, path);
}

function folder({ main, signal }, prefix) {
  document.title = `${prefix || 'Key/Value'} · tribune`;
  const list = h('ul', { class: 'rows', id: 'kv-list', 'aria-label': 'Keys' }, h('li', { class: 'row muted' }, 'Loading…'));
  const status = h('div', { role: 'alert', id: 'kv-message' });
  const actions = h('div', { class: 'actions' });
  let listing;
  if (prefix) {
    actions.append(confirmButton('Delete folder', `Delete ${prefix} and every key in it?`, async () => {
      // stop listening first: the listing of a deleted folder is a 404
      listing.abort();
      try {
        await request(`${kvUrl(prefix)}?recurse`, { method: 'DELETE' });
        location.hash = kvHref(parentOf(prefix));
      } catch (e) {
        render(status, message('error', describe(e)));
        startListing();
      }
    }));
  }

  const nameInput = h('input', { id: 'kv-new-key', name: 'key', required: true, autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'kv-new-key-help' });
  const valueInput = h('textarea', { id: 'kv-new-value', name: 'value', rows: '6', spellcheck: 'false' });
  const formMsg = h('div', { role: 'alert', id: 'kv-create-message' });
  const form = h('form', { class: 'panel', id: 'kv-create' },
    h('h2', {}, 'Create'),
    h('label', { for: 'kv-new-key' }, 'Key or folder name'),
    h('div', { class: 'prefixed' }, prefix ? h('code', {}, prefix) : null, nameInput),
    h('p', { class: 'muted small', id: 'kv-new-key-help' }, 'End the name with / to create a folder.'),
    h('label', { for: 'kv-new-value' }, 'Value'),
    valueInput,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save')),
    formMsg);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const name = nameInput.value;
    if (!name || name.trim() !== name) {
      render(formMsg, message('error', 'Enter a name without leading or trailing spaces.'));
      nameInput.focus();
      return;
    }
    const full = prefix + name;
    const isFolder = full.endsWith('/');
    try {
      // cas=0: create only; an existing key is reported, not replaced
      const r = await request(`${kvUrl(full)}?cas=0`, { method: 'PUT', body: isFolder ? '' : valueInput.value });
      if (r.data !== true) {
        render(formMsg, message('error', `${full} already exists. Open it to edit it.`, ' ', h('a', { href: kvHref(full) }, `Open ${full}`)));
        return;
      }
      location.hash = kvHref(full);
    } catch (err) {
      render(formMsg, message('error', describe(err)));
    }
  });

  main.append(breadcrumbs(prefix), h('h1', {}, prefix ? baseName(prefix) : 'Key/Value'), actions, status, list, form);

  const startListing = () => {
    listing = childController(signal);
    watch(`${kvUrl(prefix)}?keys&separator=/`, drawList, listing.signal,
      { onError: (e) => render(status, message('error', describe(e))) });
  };
  function drawList(data) {
    const keys = (data || []).filter((k) => k !== prefix)
      .sort((a, b) => (b.endsWith('/') - a.endsWith('/')) || a.localeCompare(b));
    if (keys.length === 0) {
      render(list, h('li', { class: 'row muted' }, 'This folder is empty.'));
      return;
    }
    render(list, keys.map((k) => {
      const isFolder = k.endsWith('/');
      return h('li', { class: 'row', dataset: { key: k } },
        h('a', { href: kvHref(k), class: `name ${isFolder ? 'folder' : 'key'}` },
          h('span', { 'aria-hidden': 'true', class: 'icon' }, isFolder ? '▸' : '•'), ' ', baseName(k)),
        isFolder ? h('span', { class: 'muted small' }, 'folder') : null);
    }));
  }
  startListing();
}

/** Text of a value, or null when it is not UTF-8 (binary). */
function asText(bytes) {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return null;
  }
}

/** Pretty JSON for objects and arrays; null for anything else. */
function asJson(text) {
  const t = text.trim();
  if (!(t.startsWith('{') || t.startsWith('['))) return null;
  try {
    return JSON.stringify(JSON.parse(t), null, 2);
  } catch {
    return null;
  }
}

function key({ main, signal }, path) {
  document.title = `${path} · Key/Value · tribune`;
  const shown = h('div', { id: 'kv-value' }, h('p', {}, 'Loading…'));
  const meta = h('div', { id: 'kv-meta' });
  const status = h('div', { role: 'alert', id: 'kv-message' });
  const actions = h('div', { class: 'actions', id: 'kv-actions' });
  const editorSlot = h('div');
  main.append(breadcrumbs(path), h('h1', { class: 'key-name' }, baseName(path)),
    h('p', { class: 'muted' }, h('code', {}, path)), status, actions, shown, editorSlot, meta);

  let entry; // the latest entry read (null: missing)
  let editing = null; // {base: ModifyIndex the edit started from, textarea, notice}

  const drawActions = () => {
    if (editing || !entry) { actions.replaceChildren(); return; }
    const text = asText(decodeValue(entry.Value));
    actions.replaceChildren(
      text === null ? null : h('button', { type: 'button', class: 'primary', id: 'kv-edit', onclick: startEdit }, 'Edit'),
      ' ',
      confirmButton('Delete', `Delete ${path}?`, remove));
  };

  const draw = () => {
    if (!entry) {
      render(shown, message('info', `No key named ${path}. `, h('a', { href: kvHref(parentOf(path)) }, 'Back to the folder'), '.'));
      meta.replaceChildren();
      drawActions();
      return;
    }
    const bytes = decodeValue(entry.Value);
    const text = asText(bytes);
    const pretty = text === null ? null : asJson(text);
    const label = editing ? h('p', { class: 'muted small' }, `Current value (index ${entry.ModifyIndex}):`) : null;
    if (text === null) {
      render(shown, label, h('p', { class: 'muted' }, `Binary value, ${bytes.length} bytes (base64):`), h('pre', { class: 'value' }, entry.Value));
    } else if (pretty !== null) {
      render(shown, label, h('p', { class: 'muted small' }, 'JSON, formatted:'), h('pre', { class: 'value json' }, pretty));
    } else {
      render(shown, label, text === '' ? h('p', { class: 'muted' }, '(empty value)') : h('pre', { class: 'value' }, text));
    }
    render(meta, h('h2', {}, 'Details'), h('dl', { class: 'facts' },
      h('dt', {}, 'Modify index'), h('dd', { id: 'kv-modify-index' }, String(entry.ModifyIndex)),
      h('dt', {}, 'Create index'), h('dd', {}, String(entry.CreateIndex)),
      h('dt', {}, 'Flags'), h('dd', {}, String(entry.Flags)),
      h('dt', {}, 'Lock index'), h('dd', {}, String(entry.LockIndex)),
      h('dt', {}, 'Session'), h('dd', {}, entry.Session || '—')));
    drawActions();
  };

  const changedNotice = () => {
    if (!editing) return;
    if (!entry) render(editing.notice, message('warn', `${path} was deleted while you were editing.`));
    else if (entry.ModifyIndex !== editing.base) {
      render(editing.notice, message('warn', `${path} changed while you were editing (index ${editing.base} → ${entry.ModifyIndex}). Saving will report a conflict.`));
    } else editing.notice.replaceChildren();
  };

  function stopEdit() {
    editing = null;
    editorSlot.replaceChildren();
    draw();
    document.getElementById('kv-edit')?.focus();
  }

  function startEdit() {
    const textarea = h('textarea', { id: 'kv-edit-value', rows: '12', spellcheck: 'false' });
    textarea.value = asText(decodeValue(entry.Value)) ?? '';
    const notice = h('div', { role: 'status' });
    const form = h('form', { class: 'panel', id: 'kv-editor' },
      h('label', { for: 'kv-edit-value' }, `Value of ${path}`), textarea, notice,
      h('div', { class: 'actions' },
        h('button', { type: 'submit', class: 'primary', id: 'kv-save' }, 'Save'), ' ',
        h('button', { type: 'button', id: 'kv-cancel', onclick: () => { status.replaceChildren(); stopEdit(); } }, 'Cancel')));
    editing = { base: entry.ModifyIndex, flags: entry.Flags, textarea, notice };
    draw();
    form.addEventListener('submit', (e) => { e.preventDefault(); save(); });
    status.replaceChildren();
    editorSlot.replaceChildren(form);
    actions.replaceChildren();
    textarea.focus();
  }

  async function save() {
    const ed = editing;
    const flags = ed.flags ? `&flags=${ed.flags}` : '';
    try {
      const r = await request(`${kvUrl(path)}?cas=${ed.base}${flags}`, { method: 'PUT', body: ed.textarea.value });
      if (r.data === true) {
        render(status, message('ok', `Saved ${path}.`));
        stopEdit();
        return;
      }
      // CAS failed: someone else wrote (or deleted) the key since `base`.
      const now = await request(kvUrl(path));
      const cur = now.status === 200 && Array.isArray(now.data) ? now.data[0] : null;
      conflict(ed, cur);
    } catch (e) {
      render(status, message('error', describe(e)));
    }
  }

  function conflict(ed, cur) {
    const keepMine = h('button', { type: 'button', id: 'kv-keep-mine' }, 'Keep my edits');
    const loadTheirs = h('button', { type: 'button', id: 'kv-load-theirs' }, 'Load the current value');
    // Either choice re-bases the edit on what is there now, so the next
    // Save is a deliberate overwrite of a value the reader has been shown.
    keepMine.addEventListener('click', () => {
      ed.base = cur ? cur.ModifyIndex : 0;
      changedNotice();
      render(status, message('info', 'Your edits are kept. Save again to replace the current value.'));
      ed.textarea.focus();
    });
    loadTheirs.addEventListener('click', () => {
      ed.base = cur ? cur.ModifyIndex : 0;
      ed.textarea.value = cur ? (asText(decodeValue(cur.Value)) ?? '') : '';
      changedNotice();
      render(status, message('info', 'Loaded the current value. Your edits were discarded.'));
      ed.textarea.focus();
    });
    const what = cur
      ? `someone else changed ${path} after you started editing (index ${ed.base} → ${cur.ModifyIndex}).`
      : `someone else deleted ${path} after you started editing.`;
    render(status, message('error', h('strong', {}, 'Conflict: '), what, ' Your edits were not saved.',
      h('div', { class: 'actions' }, keepMine, ' ', cur ? loadTheirs : null)));
    (cur ? loadTheirs : keepMine).focus();
  }

  async function remove() {
    // stop listening first: reading a deleted key is a 404
    reading.abort();
    try {
      const r = await request(`${kvUrl(path)}?cas=${entry.ModifyIndex}`, { method: 'DELETE' });
      if (r.data === true) {
        location.hash = kvHref(parentOf(path));
        return;
      }
      render(status, message('error', h('strong', {}, 'Conflict: '), `${path} changed since you loaded it, so it was not deleted. Review the new value and try again.`));
    } catch (e) {
      render(status, message('error', describe(e)));
    }
    startReading();
  }

  let reading;
  const startReading = () => {
    reading = childController(signal);
    watch(kvUrl(path), (data, r) => {
      entry = r.status === 200 && Array.isArray(data) ? data[0] : null;
      // the value shown stays live while editing; the editor is left alone
      draw();
      changedNotice();
    }, reading.signal, { onError: (e) => render(status, message('error', describe(e))) });
  };
  startReading();
}
