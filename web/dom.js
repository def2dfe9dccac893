// DOM and formatting helpers. Every element is built with createElement and textContent:
// recording fields are untrusted input and are never parsed as markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (k === 'text') el.textContent = String(v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (v === true) el.setAttribute(k, '');
    else el.setAttribute(k, String(v));
  }
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** An HTML element: h('button', {class: 'btn', onclick: f}, 'Text', child, ...). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  return append(el, children);
}

/** An SVG element (same arguments as `h`). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  return append(el, children);
}

/** Removes every child of `el` (and appends `children`, if any). */
export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

/** Small line icons (24×24, stroked), drawn with DOM calls. */
const ICONS = {
  lock: [['rect', { x: 5, y: 11, width: 14, height: 10, rx: 2 }], ['path', { d: 'M8 11V8a4 4 0 0 1 8 0v3' }]],
  audio: [['path', { d: 'M9 18V6l10-2v12' }], ['circle', { cx: 6.5, cy: 18, r: 2.5 }], ['circle', { cx: 16.5, cy: 16, r: 2.5 }]],
  film: [['rect', { x: 3, y: 5, width: 18, height: 14, rx: 2 }], ['path', { d: 'M10 9l5 3-5 3z' }]],
  clock: [['circle', { cx: 12, cy: 12, r: 9 }], ['path', { d: 'M12 7v5l3 2' }]],
  alert: [['path', { d: 'M12 3l10 18H2z' }], ['path', { d: 'M12 10v5M12 18v.01' }]],
  close: [['path', { d: 'M6 6l12 12M18 6L6 18' }]],
};

/** An icon by name, hidden from assistive technology (give the surrounding control a label). */
export function icon(name, cls = 'icon') {
  return s('svg', { class: cls, viewBox: '0 0 24 24', 'aria-hidden': 'true', focusable: 'false' },
    (ICONS[name] || []).map(([tag, attrs]) => s(tag, attrs)));
}

const pad = (n, w = 2) => String(n).padStart(w, '0');

/** An RFC 3339 time as `YYYY-MM-DD HH:MM:SS UTC` (or '—'). */
export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** An RFC 3339 time as a date only. */
export function fmtDate(iso) {
  return iso ? fmtTime(iso).slice(0, 10) : '—';
}

/** Milliseconds as `m:ss` or `h:mm:ss`. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  const t = Math.round(ms / 1000);
  const hh = Math.floor(t / 3600), mm = Math.floor((t % 3600) / 60), ss = t % 60;
  return hh ? `${hh}:${pad(mm)}:${pad(ss)}` : `${mm}:${pad(ss)}`;
}

/** Seconds as `m:ss.t` (player positions). */
export function fmtClock(sec) {
  const t = Math.max(0, Math.round(sec * 10)) / 10;
  const mm = Math.floor(t / 60);
  return `${mm}:${pad((t - mm * 60).toFixed(1), 4)}`;
}

/** A byte count in binary units. */
export function fmtBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = Number(n), i = 0;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(v < 10 ? 1 : 0) : v} ${units[i]}`;
}

/** A path segment for an API URL. */
export const seg = (v) => encodeURIComponent(String(v));

/** Whether `url` (absolute or relative) points at this origin: media URLs from the API must. */
export function sameOrigin(url) {
  try {
    return new URL(url, location.href).origin === location.origin;
  } catch {
    return false;
  }
}
