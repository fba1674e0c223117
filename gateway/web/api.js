// The API of DESIGN §6 as the page uses it: JSON in and out, errors as ApiError with the
// server's message and field, and the one place that sends a visitor to the login page.

/** An answer other than 2xx: `status`, the server's `message` and the `field` it names. */
export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.field = (body && body.field) || null;
    this.retryAfter = null;
  }
}

/** `fetch` of a JSON API path; resolves to the parsed body (null for 204). */
export async function api(path, { method = 'GET', body, signal } = {}) {
  const init = { method, headers: { accept: 'application/json' }, credentials: 'same-origin', signal };
  if (body !== undefined) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  if (res.status === 204) return null;
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = { error: text.trim() || res.statusText };
  }
  if (!res.ok) {
    const e = new ApiError(res.status, data);
    e.retryAfter = res.headers.get('retry-after');
    throw e;
  }
  return data;
}

/** Who is asking: {user, role}, null when nobody is logged in (401), or {user: null,
 * role: null} when the server cannot say (then the server alone decides what is allowed). */
export async function whoAmI() {
  try {
    return await api('/api/me');
  } catch (e) {
    if (e.status === 401) return null;
    return { user: null, role: null };
  }
}

/** Sends the visitor to the login page, to come back here afterwards. */
export function toLogin() {
  const back = location.pathname + location.search + location.hash;
  location.assign(`/login?next=${encodeURIComponent(back)}`);
}

const RANK = { viewer: 1, operator: 2, admin: 3 };

/** Whether `who` may do what needs `role` (unknown role: yes, and the server decides). */
export function mayAct(who, role = 'operator') {
  if (!who) return false;
  if (!who.role) return true;
  return (RANK[who.role] || 0) >= RANK[role];
}

/** The WebSocket URL of an API path on this origin. */
export function wsUrl(path) {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${path}`;
}
