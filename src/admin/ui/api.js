// The admin API from the browser: sign-in and sign-out, the session's CSRF
// token, JSON calls with keygate's error bodies, paging, shared look-ups.
//
// The admin token is sent once, to POST /admin/v1/session, and kept
// nowhere: the daemon answers with an HttpOnly session cookie (which this
// code never sees) and a CSRF token, kept in memory only, that every
// request that changes something carries in X-CSRF-Token.

const TIMEOUT_MS = 30000;
// The most items listAll() gathers, whatever the pages say.
const LIST_MAX = 2000;

let session = null; // {tokenId, name, readOnly, csrfToken, expiresAt}
let sessionLost = () => {};
const cache = new Map();

// An error answer of the admin API: status, message, and the request field
// at fault (error.param) when there is one.
export class ApiError extends Error {
  constructor(status, message, param = null, code = null) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.param = param;
    this.code = code;
  }
}

// The signed-in session, or null.
export function currentSession() {
  return session;
}

// Whether the session may change things.
export function canWrite() {
  return session !== null && !session.readOnly;
}

// fn() runs when a call answers 401: the session ended or was revoked.
export function onSessionLost(fn) {
  sessionLost = fn;
}

// path with the query's non-empty values, as a same-origin URL string.
export function apiUrl(path, query = {}) {
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') {
      params.set(name, String(value));
    }
  }
  const q = params.toString();
  return q ? `${path}?${q}` : path;
}

async function request(method, path, { query, body } = {}) {
  const headers = { Accept: 'application/json' };
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  if (method !== 'GET' && session !== null) {
    headers['X-CSRF-Token'] = session.csrfToken;
  }
  init.signal = AbortSignal.timeout(TIMEOUT_MS);
  let resp;
  try {
    resp = await fetch(apiUrl(path, query), init);
  } catch (err) {
    const why = err.name === 'TimeoutError' ? 'did not answer in time' : 'cannot be reached';
    throw new ApiError(0, `The keygate admin listener ${why}.`);
  }
  if (resp.status === 204) {
    return null;
  }
  let data = null;
  try {
    data = await resp.json();
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const e = data && data.error ? data.error : {};
    throw new ApiError(resp.status, e.message || `The request failed (HTTP ${resp.status}).`,
      e.param || null, e.code || null);
  }
  return data;
}

// Call the admin API: the answer's JSON (null for 204), or an ApiError.
// A 401 means the session is over: the sign-in page comes back.
export async function api(method, path, options = {}) {
  try {
    return await request(method, path, options);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      session = null;
      cache.clear();
      sessionLost();
    }
    throw err;
  }
}

// Every item of a list route, following nextCursor, at most max items.
export async function listAll(path, query = {}, max = LIST_MAX) {
  const items = [];
  let cursor = null;
  do {
    const page = await api('GET', path, { query: { ...query, cursor } });
    items.push(...page.data);
    cursor = page.nextCursor;
  } while (cursor && items.length < max);
  return items.slice(0, max);
}

// The session of the cookie, if any (null when signed out).
export async function loadSession() {
  try {
    const s = await request('GET', '/admin/v1/session');
    session = s.via === 'session' ? s : null;
  } catch (err) {
    if (!(err instanceof ApiError) || err.status !== 401) {
      throw err;
    }
    session = null;
  }
  return session;
}

// Trade an admin token for a session cookie. The token is not kept.
export async function signIn(token) {
  session = await request('POST', '/admin/v1/session', { body: { token } });
  cache.clear();
  return session;
}

// End the session (the daemon forgets it and clears the cookie).
export async function signOut() {
  try {
    await request('DELETE', '/admin/v1/session');
  } finally {
    session = null;
    cache.clear();
  }
}

// A value fetched once per session (config, workspaces, key names):
// forget(name) makes the next call fetch it again.
function cached(name, fetcher) {
  if (!cache.has(name)) {
    const p = fetcher();
    cache.set(name, p);
    p.catch(() => cache.delete(name));
  }
  return cache.get(name);
}

export function forget(...names) {
  for (const n of names) {
    cache.delete(n);
  }
}

// The effective configuration (redacted): models, providers, key TTLs.
export function getConfig() {
  return cached('config', () => api('GET', '/admin/v1/config'));
}

// Every workspace.
export function getWorkspaces() {
  return cached('workspaces', () => listAll('/admin/v1/workspaces'));
}

// Every key, revoked ones too (for names in the usage pages).
export function getAllKeys() {
  return cached('keys', () => listAll('/admin/v1/keys', { status: 'all', limit: 500 }));
}

// The names of the configured models and providers, sorted.
export function configNames(config, kind) {
  const prefix = `${kind} `;
  return Object.keys(config)
    .filter((k) => k.startsWith(prefix))
    .map((k) => k.slice(prefix.length))
    .sort();
}
