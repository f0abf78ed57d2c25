// The HTTP API client: every request carries the token from Settings and,
// while the UI shows another datacenter, ?dc=; watch() keeps a view live
// with Consul blocking queries (?index=&wait=).

const TOKEN_KEY = 'tribune.token';

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until reload */ }
}

// The datacenter the pages show when it is not the agent's own ('' while
// it is): set once at start from the URL (/ui/<dc>/), by app.js.
let remoteDc = '';

export function setRemoteDatacenter(dc) {
  remoteDc = dc || '';
}

/** The other datacenter the UI shows, or '' for the agent's own. */
export function remoteDatacenter() {
  return remoteDc;
}

/**
 * `path` for the datacenter shown: ?dc= on everything a datacenter
 * answers. Agent endpoints are this agent's own, and the datacenter list
 * is the same from anywhere, so they go without it.
 */
function forDatacenter(path) {
  if (!remoteDc || path.startsWith('/v1/agent/') || path.startsWith('/v1/catalog/datacenters')) return path;
  const q = path.includes('?') ? '&' : '?';
  return `${path}${q}dc=${encodeURIComponent(remoteDc)}`;
}

/** Connection state for the banner: 'ok' or 'lost' events with a detail message. */
export const connection = new EventTarget();

function report(ok, detail) {
  connection.dispatchEvent(new CustomEvent(ok ? 'ok' : 'lost', { detail }));
}

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
  /** What to tell a person. */
  explain() {
    if (this.status === 403) return `Permission denied (${this.message}). Set an ACL token in Settings.`;
    if (this.message.includes('No path to datacenter')) {
      return `No path to datacenter ${remoteDc}: no server of it is reachable from this agent now.`;
    }
    return `The agent answered ${this.status}: ${this.message}`;
  }
}

/**
 * One request. Resolves {status, index, data} for 2xx and, for GETs, 404
 * (a missing key or node is an answer, not a failure); throws ApiError for
 * other statuses and TypeError when the agent cannot be reached.
 */
export async function request(path, { method = 'GET', body, signal } = {}) {
  const headers = {};
  const token = getToken();
  if (token) headers['X-Consul-Token'] = token;
  let resp;
  try {
    resp = await fetch(forDatacenter(path), { method, body, signal, headers, cache: 'no-store' });
  } catch (e) {
    if (e.name !== 'AbortError') report(false, e.message);
    throw e;
  }
  report(true);
  const text = await resp.text();
  if (!resp.ok && !(resp.status === 404 && method === 'GET')) {
    throw new ApiError(resp.status, text.trim() || resp.statusText);
  }
  let data = null;
  if (resp.ok && text) {
    const type = resp.headers.get('Content-Type') || '';
    data = type.includes('json') ? JSON.parse(text) : text;
  }
  return { status: resp.status, index: Number(resp.headers.get('X-Consul-Index')) || 0, data };
}

function sleep(ms, signal) {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
  });
}

/**
 * Long-poll `path` until `signal` aborts, calling onData(data, response)
 * first at once and then whenever X-Consul-Index moves. A wait that times
 * out with the same index renders nothing. An index that goes backwards
 * (a restored snapshot) restarts from 0, as Consul's clients do.
 */
export function watch(path, onData, signal, { wait = '60s', onError } = {}) {
  const sep = path.includes('?') ? '&' : '?';
  (async () => {
    let index = 0;
    let first = true;
    let delay = 0;
    while (!signal.aborted) {
      let r;
      try {
        r = await request(index ? `${path}${sep}index=${index}&wait=${wait}` : path, { signal });
      } catch (e) {
        if (signal.aborted) return;
        if (e instanceof ApiError && onError) onError(e);
        // back off on errors so a down agent is not hammered
        delay = Math.min(delay ? delay * 2 : 500, 10000);
        await sleep(delay, signal);
        continue;
      }
      delay = 0;
      if (signal.aborted) return;
      if (first || r.index !== index) {
        first = false;
        try { onData(r.data, r); } catch (e) { console.error('rendering', path, e); }
      }
      index = r.index < index ? 0 : r.index;
      // no index to block on: fall back to a slow poll rather than spin
      if (!index) await sleep(2000, signal);
    }
  })();
}

/** An AbortController that also aborts with `parent` (a view's signal). */
export function childController(parent) {
  const c = new AbortController();
  if (parent.aborted) c.abort();
  else parent.addEventListener('abort', () => c.abort(), { once: true });
  return c;
}

/** Bytes of a KV entry's base64 Value (null means empty). */
export function decodeValue(b64) {
  if (!b64) return new Uint8Array();
  const bin = atob(b64);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}
