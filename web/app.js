// The evidenced console: sign-in, recording search with posters, live arrivals over
// Server-Sent Events, and the two views (recordings with the player panel; the annual report).

import { api, explain, forgetReasons, onUnauthorized } from './api.js';
import { fmtDuration, fmtTime, fmtDate, h, icon, replace, seg } from './dom.js';
import { Player } from './player.js';
import { Report } from './report.js';

const $ = (id) => document.getElementById(id);
const PAGE = 25;

const state = {
  principal: null,
  /** The filter of the shown list (query parameters). */
  filter: {},
  cursor: null,
  /** id -> { rec, li } of the rows shown. */
  rows: new Map(),
  events: null,
  lastEventId: null,
  /** Bumped by every new search, so a late page of an older one is dropped. */
  gen: 0,
  retry: null,
  retryDelay: 2000,
  expiry: null,
};

let player;
let report;

// ------------------------------------------------------------------ messages

let toastTimer;
/** A short message in the polite live region at the bottom of the page. */
function toast(text) {
  const t = $('toast');
  t.textContent = text;
  t.classList.add('show');
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => t.classList.remove('show'), 5000);
}

function showAlert(el, text) {
  el.textContent = text || '';
  el.hidden = !text;
}

// ------------------------------------------------------------------ session

function showSignIn(note) {
  state.principal = null;
  stopEvents();
  player?.close();
  forgetReasons();
  $('booting').hidden = true;
  $('whoami').hidden = true;
  $('tabs').hidden = true;
  $('view-recordings').hidden = true;
  $('view-report').hidden = true;
  $('signin').hidden = false;
  showAlert($('signin-error'), '');
  const n = $('signin-note');
  n.textContent = note || '';
  n.hidden = !note;
  $('token').value = '';
  $('token').focus();
  clearTimeout(state.expiry);
  for (const el of $('search').elements) if (el.name) el.value = '';
  state.rows.clear();
  state.filter = {};
  state.lastEventId = null;
  replace($('results'));
  $('more').hidden = true;
  report?.reset();
}

function enter(session) {
  const p = session.principal;
  state.principal = p;
  $('booting').hidden = true;
  $('signin').hidden = true;
  $('who-name').textContent = p.name;
  const unit = p.unit ? `unit ${p.unit}` : 'all units';
  $('who-detail').textContent = p.officer ? `${unit} · officer ${p.officer}` : unit;
  $('who-role').textContent = p.role;
  $('who-role').dataset.role = p.role;
  $('whoami').title = session.expires_at ? `Session valid until ${fmtTime(session.expires_at)}` : '';
  $('whoami').hidden = false;
  $('tabs').hidden = false;
  $('tab-report').hidden = !['archivist', 'auditor'].includes(p.role);
  show('recordings');
  search({});
  // Admins see no footage, so they get no event stream either.
  if (p.role !== 'admin') startEvents();
  // At the session's end, ask once more: a 401 brings the sign-in screen back.
  clearTimeout(state.expiry);
  const left = Date.parse(session.expires_at || '') - Date.now();
  if (left > 0) state.expiry = setTimeout(() => api('/session').catch(() => {}), Math.min(left + 1000, 2 ** 31 - 1));
}

onUnauthorized(() => {
  if (state.principal) showSignIn('Your session has ended (expired, revoked or signed out elsewhere). Sign in again.');
});

async function signIn(e) {
  e.preventDefault();
  const input = $('token');
  const token = input.value.trim();
  const button = $('signin-submit');
  showAlert($('signin-error'), '');
  $('signin-note').hidden = true;
  if (!token) {
    showAlert($('signin-error'), 'Enter your API token.');
    input.focus();
    return;
  }
  button.disabled = true;
  try {
    const session = await api('/session', { method: 'POST', body: { token }, quiet401: true });
    input.value = '';
    enter(session);
  } catch (err) {
    const msg = err.status === 401
      ? 'Sign-in failed: this token is not valid (unknown, revoked or expired).'
      : `Sign-in failed: ${explain(err)}`;
    showAlert($('signin-error'), msg);
    input.select();
  } finally {
    button.disabled = false;
  }
}

async function signOut() {
  try {
    await api('/session', { method: 'DELETE', quiet401: true });
  } catch (err) {
    if (err.status !== 401) toast(`Sign-out: ${explain(err)}`);
  }
  showSignIn('You are signed out.');
}

// ------------------------------------------------------------------ views

function show(view) {
  for (const tab of document.querySelectorAll('.tab')) {
    const on = tab.dataset.view === view;
    if (on) tab.setAttribute('aria-current', 'page');
    else tab.removeAttribute('aria-current');
  }
  $('view-recordings').hidden = view !== 'recordings';
  $('view-report').hidden = view !== 'report';
  if (view === 'report') report.open();
}

// ------------------------------------------------------------------ search

function readFilter() {
  const f = {};
  for (const el of $('search').elements) {
    if (!el.name || !el.value.trim()) continue;
    let v = el.value.trim();
    // datetime-local has no zone: the labels say UTC.
    if (el.type === 'datetime-local') v = `${v.length === 16 ? `${v}:00` : v}Z`;
    f[el.name] = v;
  }
  return f;
}

async function search(filter) {
  state.gen++;
  state.filter = filter;
  state.cursor = null;
  state.rows.clear();
  replace($('results'));
  $('more').hidden = true;
  $('results-count').textContent = 'Searching…';
  await loadPage();
}

async function loadPage() {
  const q = new URLSearchParams({ ...state.filter, limit: String(PAGE) });
  if (state.cursor) q.set('cursor', state.cursor);
  showAlert($('results-error'), '');
  $('more').disabled = true;
  const gen = state.gen;
  try {
    const page = await api(`/recordings?${q}`);
    if (gen !== state.gen) return; // a newer search replaced this one
    for (const rec of page.items) addRow(rec, { append: true });
    state.cursor = page.next_cursor || null;
    $('more').hidden = !state.cursor;
  } catch (err) {
    if (gen === state.gen) showAlert($('results-error'), explain(err));
  } finally {
    $('more').disabled = false;
    updateCount();
  }
}

function updateCount() {
  const n = state.rows.size;
  $('results-count').textContent = n === 0 ? 'No recordings match.' : `${n}${state.cursor ? '+' : ''} shown`;
}

/** Whether a recording (from a live event) belongs in the list under the current filter. */
function matches(rec) {
  const f = state.filter;
  if (f.officer && rec.officer !== f.officer) return false;
  if (f.device && rec.device !== f.device) return false;
  if (f.unit && !(rec.unit === f.unit.replace(/\/+$/, '') || (rec.unit || '').startsWith(`${f.unit.replace(/\/+$/, '')}/`))) return false;
  if (f.case && !(rec.cases || []).includes(f.case)) return false;
  if (f.category && rec.category !== f.category) return false;
  if (f.state && rec.state !== f.state) return false;
  if (f.needs_review && String(rec.needs_review) !== f.needs_review) return false;
  const at = Date.parse(rec.started_at || rec.archived_at || '');
  if (f.from && !(at >= Date.parse(f.from))) return false;
  if (f.to && !(at <= Date.parse(f.to))) return false;
  return true;
}

// ------------------------------------------------------------------ rows

const CLASS_LABEL = { privacy: 'Privacy', trade_secret: 'Trade secret', state_secret: 'State secret' };

/** The badges of a recording: classification, retention, hold, review, media, cases. */
export function badges(rec) {
  const out = [];
  const b = (cls, text, title) => out.push(h('span', { class: `badge ${cls}`, title }, text));
  if (rec.classification && rec.classification !== 'normal') {
    b(`cls ${rec.classification}`, CLASS_LABEL[rec.classification] || rec.classification, 'Classified: every access needs a reason');
  }
  if (rec.legal_hold) b('hold', 'Legal hold', 'Kept until the hold is lifted');
  if (rec.state === 'pending_destruction') b('danger', 'Pending destruction');
  else if (rec.state === 'destroyed') b('danger', 'Destroyed');
  else if (rec.retention_permanent) b('keep', 'Kept permanently', `Category ${rec.category}`);
  else if (rec.retention_until) b('keep', `Kept until ${fmtDate(rec.retention_until)}`, `Category ${rec.category}`);
  else if (rec.category) b('keep', `Category ${rec.category}`);
  if (rec.needs_review) b('warn', 'Needs review', (rec.review_reasons || []).join('; '));
  if (rec.media_state === 'pending') b('muted', 'Processing');
  else if (rec.media_state === 'failed') b('danger', 'No media', rec.media_error || '');
  else if (rec.media_warning) b('warn', 'Partial media', rec.media_warning);
  if (rec.timestamped) b('ok', 'Time-stamped', 'An RFC 3161 token covers the original');
  for (const c of rec.cases || []) b('case', `Case ${c}`);
  return out;
}

/** What the thumbnail shows: it is rebuilt (and the poster fetched again) only when this changes. */
const thumbKey = (rec) => `${rec.classification}|${rec.media_state}|${rec.media?.has_video}`;

/** The thumbnail: poster, or a lock (classified), a note (audio), or the media state. */
function thumb(rec) {
  const hasVideo = rec.media?.has_video;
  if (rec.classification && rec.classification !== 'normal') {
    return h('span', { class: 'thumb locked', title: 'Classified: open it and give a reason to see its media' },
      icon('lock'), h('span', { class: 'sr-only' }, 'Classified'));
  }
  if (rec.media_state === 'pending') {
    return h('span', { class: 'thumb pending', title: 'The proxy and poster are being made' }, icon('clock'), h('span', { class: 'sr-only' }, 'Processing'));
  }
  if (rec.media_state === 'failed') {
    return h('span', { class: 'thumb failed', title: rec.media_error || 'Media could not be derived' }, icon('alert'), h('span', { class: 'sr-only' }, 'No media'));
  }
  if (hasVideo === false) {
    return h('span', { class: 'thumb audio', title: 'Audio only' }, icon('audio'), h('span', { class: 'sr-only' }, 'Audio only'));
  }
  const box = h('span', { class: 'thumb' });
  const img = h('img', {
    src: `/api/v1/recordings/${seg(rec.id)}/poster`,
    alt: '', // the name is in the row's text
    loading: 'lazy',
    decoding: 'async',
    onerror: () => replace(box, icon('film')),
  });
  box.append(img);
  return box;
}

function rowContent(rec, fresh, oldThumb) {
  const who = [rec.device && `Device ${rec.device}`, rec.officer && `Officer ${rec.officer}`, rec.unit && `Unit ${rec.unit}`].filter(Boolean);
  const button = h('button', { type: 'button', class: 'rec', title: `Open ${rec.original_name}` },
    oldThumb || thumb(rec),
    h('span', { class: 'info' },
      h('span', { class: 'title' }, fresh ? h('span', { class: 'badge new' }, 'New') : null, h('span', { class: 'name' }, rec.original_name)),
      h('span', { class: 'meta' }, who.join(' · ') || 'Unattributed'),
      h('span', { class: 'meta' }, `${fmtTime(rec.started_at)} · ${fmtDuration(rec.duration_ms ?? rec.media?.duration_ms)}`),
      h('span', { class: 'badges' }, badges(rec))));
  button.addEventListener('click', () => select(rec.id));
  return button;
}

function addRow(rec, { append = false, fresh = false } = {}) {
  if (state.rows.has(rec.id)) return updateRow(rec);
  const li = h('li', { class: ['row', fresh && 'fresh'], dataset: { id: rec.id } }, rowContent(rec, fresh));
  state.rows.set(rec.id, { rec, li, fresh });
  if (append) $('results').append(li);
  else $('results').prepend(li);
  if (player?.id === rec.id) li.classList.add('selected');
}

function updateRow(rec) {
  const row = state.rows.get(rec.id);
  if (!row) return;
  const before = thumbKey(row.rec);
  row.rec = { ...row.rec, ...rec };
  const focused = row.li.contains(document.activeElement);
  const keep = before === thumbKey(row.rec) ? row.li.querySelector('.thumb') : null;
  replace(row.li, rowContent(row.rec, row.fresh, keep));
  if (focused) row.li.querySelector('button')?.focus();
}

function select(id) {
  const row = state.rows.get(id);
  if (!row) return;
  for (const r of state.rows.values()) r.li.classList.toggle('selected', r === row);
  player.open(row.rec);
}

// ------------------------------------------------------------------ live events

function setLive(mode) {
  const el = $('live');
  el.className = `live ${mode}`;
  el.textContent = { on: 'Live', wait: 'Reconnecting…', off: 'Offline' }[mode];
}

function startEvents() {
  stopEvents();
  const url = state.lastEventId ? `/api/v1/events?after=${seg(state.lastEventId)}` : '/api/v1/events';
  const es = new EventSource(url);
  state.events = es;
  es.addEventListener('open', () => {
    state.retryDelay = 2000;
    setLive('on');
  });
  es.addEventListener('recording', (ev) => {
    if (ev.lastEventId) state.lastEventId = ev.lastEventId;
    let rec;
    try {
      rec = JSON.parse(ev.data);
    } catch {
      return;
    }
    onRecordingEvent(rec);
  });
  es.addEventListener('error', () => {
    if (es !== state.events) return;
    if (es.readyState !== EventSource.CLOSED) {
      setLive('wait');
      return;
    }
    // The browser gave up (e.g. 401, or the server restarted): is the session still there?
    // Then try again, waiting longer each time (up to a minute).
    setLive('off');
    const delay = state.retryDelay || 2000;
    state.retryDelay = Math.min(delay * 2, 60000);
    state.retry = setTimeout(async () => {
      try {
        await api('/session');
        if (state.principal) startEvents();
      } catch {
        // 401 shows the sign-in screen through onUnauthorized.
      }
    }, delay);
  });
}

function stopEvents() {
  clearTimeout(state.retry);
  state.events?.close();
  state.events = null;
  setLive('off');
}

function onRecordingEvent(rec) {
  const { change, ...plain } = rec;
  if (state.rows.has(plain.id)) {
    updateRow(plain);
  } else if (change === 'archived' && matches(plain)) {
    addRow(plain, { fresh: true });
    updateCount();
    toast(`New recording: ${plain.original_name}`);
  }
  if (player?.id === plain.id) player.update(plain, change);
}

// ------------------------------------------------------------------ start

async function boot() {
  player = new Player($('detail'), { toast, onChange: (rec) => updateRow(rec), badges });
  report = new Report({ year: $('report-year'), form: $('report-form'), csv: $('report-csv'), body: $('report-body'), error: $('report-error') });
  $('signin-form').addEventListener('submit', signIn);
  $('sign-out').addEventListener('click', signOut);
  $('search').addEventListener('submit', (e) => {
    e.preventDefault();
    search(readFilter());
  });
  $('search').addEventListener('reset', () => setTimeout(() => search({}), 0));
  $('more').addEventListener('click', loadPage);
  for (const tab of document.querySelectorAll('.tab')) tab.addEventListener('click', () => show(tab.dataset.view));
  try {
    enter(await api('/session', { quiet401: true }));
  } catch (err) {
    showSignIn(err.status === 401 ? '' : explain(err));
  }
}

boot();
