// The console's one way to reach /api/v1: same-origin fetch with the session cookie, JSON in and
// out, errors as ApiError with the API's code, and classified recordings' access reasons.

import { h } from './dom.js';

/** A failed API call: HTTP status, the API's error code and message, and the body if any. */
export class ApiError extends Error {
  constructor(status, code, message, data = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.data = data;
  }
}

let unauthorized = () => {};

/** Sets what happens when any call answers 401 (the session ended): show the sign-in screen. */
export function onUnauthorized(f) {
  unauthorized = f;
}

/**
 * Calls `/api/v1{path}`. Options: method, body (sent as JSON), reason (sent as the
 * percent-encoded `X-Access-Reason` header), quiet401 (do not end the session on 401: sign-in
 * itself). Returns the parsed JSON (null when there is none); throws ApiError.
 */
export async function api(path, { method = 'GET', body, reason, quiet401 = false } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  if (reason) headers['X-Access-Reason'] = encodeURIComponent(reason);
  let resp;
  try {
    resp = await fetch(`/api/v1${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'same-origin',
      cache: 'no-store',
    });
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached. Check the connection and try again.');
  }
  const text = await resp.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data?.error?.code || `http_${resp.status}`, data?.error?.message || resp.statusText, data);
    if (resp.status === 401 && !quiet401) unauthorized(err);
    throw err;
  }
  return data;
}

/** What an error means for the user, in one sentence. */
export function explain(err) {
  if (!(err instanceof ApiError)) return `Something went wrong in the console: ${err?.message || err}`;
  const detail = err.message ? ` (${err.message})` : '';
  switch (err.status) {
    case 0:
      return err.message;
    case 401:
      return 'You are not signed in, or your session has expired. Sign in again.';
    case 403:
      if (err.code === 'reason_required') return 'This recording is classified: a reason is required to open it.';
      if (err.code === 'grant_required') return 'This state-secret recording needs an explicit grant from an archivist.';
      if (err.code === 'cancelled') return err.message;
      {
        const role = /^role (\S+) may not do this$/.exec(err.message || '');
        if (role) return `Your role (${role[1]}) may not do this.`;
      }
      return `Your role may not do this${detail}.`;
    case 404:
      return err.code === 'not_found' ? 'Not found, or outside your scope.' : `Not found: ${err.message}.`;
    case 429:
      return `Too many failed sign-ins from this address${detail}.`;
    default:
      if (err.status >= 500) return 'The server could not complete this; try again later.';
      return err.message || `The request failed (HTTP ${err.status}).`;
  }
}

// ------------------------------------------------------------------ access reasons

/** Reasons given this session, per recording id (memory only: gone with the page). */
const reasons = new Map();

/** Questions on screen, per recording id: concurrent calls share one dialog. */
const asking = new Map();

function ask(id, title, message) {
  if (!asking.has(id)) {
    asking.set(id, askReason(title, message).then((r) => {
      asking.delete(id);
      if (r) reasons.set(id, r);
      return r;
    }));
  }
  return asking.get(id);
}

/**
 * Asks for a reason in a modal dialog. Resolves to the trimmed text, or null when cancelled.
 */
export function askReason(title, message) {
  const dialog = h('dialog', { class: 'dialog', 'aria-labelledby': 'reason-title' });
  const input = h('textarea', { id: 'reason-input', name: 'reason', rows: 3, required: true, maxlength: 2000 });
  const form = h('form', { method: 'dialog' },
    h('h2', { id: 'reason-title', text: title }),
    h('p', { class: 'muted', text: message }),
    h('label', { for: 'reason-input', text: 'Reason (recorded in the custody log)' }),
    input,
    h('div', { class: 'actions' },
      h('button', { type: 'button', class: 'btn ghost', value: 'cancel', onclick: () => dialog.close('cancel') }, 'Cancel'),
      h('button', { type: 'submit', class: 'btn primary', value: 'ok' }, 'Continue')));
  dialog.append(form);
  document.body.append(dialog);
  return new Promise((resolve) => {
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      const v = input.value.trim();
      if (!v) {
        input.focus();
        return;
      }
      dialog.close('ok');
    });
    dialog.addEventListener('close', () => {
      const v = dialog.returnValue === 'ok' ? input.value.trim() : '';
      dialog.remove();
      resolve(v || null);
    });
    dialog.showModal();
    input.focus();
  });
}

/**
 * Runs `call(reason)` for recording `rec`. A classified recording needs a reason: it is asked
 * for up front (once per recording and page) and also whenever the server answers 403
 * `reason_required`; the call is then retried with it. Cancelling throws ApiError `cancelled`.
 */
export async function withReason(rec, call) {
  const name = rec.original_name || rec.id;
  const cancelled = () => new ApiError(403, 'cancelled', 'Not opened: a reason is required for classified recordings.');
  let reason = reasons.get(rec.id);
  if (!reason && rec.classification && rec.classification !== 'normal') {
    reason = await ask(rec.id, 'Open a classified recording', `“${name}” is classified (${rec.classification}). ` +
      'Say why you need it; the reason is recorded with every access.');
    if (!reason) throw cancelled();
  }
  for (let attempt = 0; ; attempt++) {
    try {
      return await call(reason);
    } catch (e) {
      if (!(e instanceof ApiError) || e.code !== 'reason_required' || attempt >= 2) throw e;
      reasons.delete(rec.id);
      reason = await ask(rec.id, 'A reason is required', `${e.message || 'This recording is classified.'} ` +
        `Say why you need “${name}”; the reason is recorded in the custody log.`);
      if (!reason) throw cancelled();
    }
  }
}

/** Forgets every reason (sign-out). */
export function forgetReasons() {
  reasons.clear();
}
