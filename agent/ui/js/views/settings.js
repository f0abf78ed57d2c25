// Settings: the ACL token sent as X-Consul-Token with every request,
// kept in this browser's localStorage.

import { h, render, message } from '../dom.js';
import { getToken, setToken } from '../api.js';

export function view({ main }) {
  document.title = 'Settings · tribune';
  const input = h('input', { id: 'token', name: 'token', type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'token-help' });
  input.value = getToken();
  const show = h('input', { id: 'token-show', type: 'checkbox' });
  show.addEventListener('change', () => { input.type = show.checked ? 'text' : 'password'; });
  const status = h('div', { role: 'status', id: 'token-message' });
  const clear = h('button', { type: 'button', id: 'token-clear' }, 'Clear');
  const form = h('form', { class: 'panel', id: 'token-form' },
    h('h2', {}, 'ACL token'),
    h('label', { for: 'token' }, 'Token'),
    input,
    h('p', { class: 'muted small', id: 'token-help' },
      'Sent as the X-Consul-Token header with every request. Stored in this browser only (localStorage).'),
    h('div', { class: 'check-row' }, show, h('label', { for: 'token-show' }, 'Show token')),
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Save'), ' ', clear),
    status);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    setToken(t);
    render(status, message('ok', t ? 'Token saved.' : 'Token cleared.'));
    window.dispatchEvent(new Event('tribune:token'));
  });
  clear.addEventListener('click', () => {
    input.value = '';
    setToken('');
    render(status, message('ok', 'Token cleared.'));
    window.dispatchEvent(new Event('tribune:token'));
  });
  main.append(h('h1', {}, 'Settings'), form);
}
