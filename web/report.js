// The annual report (archivists and auditors): per unit and retention category, recordings and
// hours as stacked bar charts (inline SVG built with DOM calls), the full table, and the CSV.

import { api, explain } from './api.js';
import { fmtBytes, fmtTime, h, replace, s, seg } from './dom.js';

const PALETTE = 8; // colour classes c0..c7 in app.css

/** Axis ticks for values up to `max`: about four round steps (1, 2, 2.5 or 5 × 10^k). */
function ticks(max, integer) {
  const raw = max > 0 ? max / 4 : 1;
  const p = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 2.5, 5, 10].map((m) => m * p).find((x) => x >= raw);
  if (integer) step = Math.max(1, Math.ceil(step));
  const n = Math.max(1, Math.ceil(max / step - 1e-9));
  const digits = Math.max(0, -Math.floor(Math.log10(step) + 1e-9) + (String(step / p).includes('.') ? 1 : 0));
  return { end: n * step, values: Array.from({ length: n + 1 }, (_, i) => i * step), digits };
}

const fmtNum = (v, digits = 0) => Number(v).toLocaleString('en', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** A value with as many decimals as its size needs (12.5, 3.25, 0.016). */
const fmtAuto = (v) => fmtNum(v, v === 0 || Number.isInteger(v) ? 0 : v >= 100 ? 0 : v >= 10 ? 1 : v >= 1 ? 2 : 3);

/**
 * A horizontal stacked bar chart: one bar per unit, one segment per category.
 * `data`: [{ unit, parts: [{ category, value }] }] sorted; `cats`: category -> colour index.
 */
function barChart(title, data, cats, { integer = false, unit = '' } = {}) {
  const W = 560, LEFT = 150, RIGHT = 56, ROW = 30, BAR = 18, TOP = 6, AXIS = 26;
  const inner = W - LEFT - RIGHT;
  const H = TOP + data.length * ROW + AXIS;
  const totals = data.map((d) => d.parts.reduce((a, p) => a + p.value, 0));
  const axis = ticks(Math.max(0, ...totals), integer);
  const max = axis.end;
  const x = (v) => LEFT + (v / max) * inner;
  const summary = data.map((d, i) => `${d.unit}: ${fmtAuto(totals[i])}${unit}`).join('; ');
  const svg = s('svg', { class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': `${title}. ${summary}` });
  // Grid and axis.
  for (const t of axis.values) {
    svg.append(s('line', { class: t === 0 ? 'axis' : 'grid', x1: x(t), x2: x(t), y1: TOP - 2, y2: TOP + data.length * ROW }));
    svg.append(s('text', { class: 'tick', x: x(t), y: H - 8, 'text-anchor': 'middle' }, fmtNum(t, axis.digits)));
  }
  data.forEach((d, i) => {
    const y = TOP + i * ROW + (ROW - BAR) / 2;
    const label = d.unit.length > 22 ? `${d.unit.slice(0, 21)}…` : d.unit;
    svg.append(s('text', { class: 'label', x: LEFT - 8, y: y + BAR / 2 + 4, 'text-anchor': 'end' }, s('title', {}, d.unit), label));
    let at = 0;
    for (const p of d.parts) {
      if (!(p.value > 0)) continue;
      const w = Math.max(1, x(at + p.value) - x(at));
      svg.append(s('rect', { class: `seg c${cats.get(p.category) % PALETTE}`, x: x(at), y, width: w, height: BAR, rx: 2 },
        s('title', {}, `${d.unit} · ${p.category}: ${fmtAuto(p.value)}${unit}`)));
      at += p.value;
    }
    svg.append(s('text', { class: 'value', x: x(at) + 6, y: y + BAR / 2 + 4 }, fmtAuto(totals[i])));
  });
  return h('figure', { class: 'chart-box' }, h('figcaption', {}, title), svg);
}

export class Report {
  /** `els`: { year, form, csv, body, error }. */
  constructor(els) {
    this.els = els;
    this.loaded = null;
    els.year.value = String(new Date().getUTCFullYear());
    els.form.addEventListener('submit', (e) => {
      e.preventDefault();
      this.load();
    });
    this.setCsv();
  }

  setCsv() {
    this.els.csv.href = `/api/v1/reports/${seg(this.els.year.value)}?format=csv`;
    this.els.csv.setAttribute('download', `evidenced-report-${this.els.year.value}.csv`);
  }

  /** Forgets the shown report (sign-out). */
  reset() {
    this.loaded = null;
    this.els.year.value = String(new Date().getUTCFullYear());
    this.setCsv();
    this.els.error.hidden = true;
    replace(this.els.body);
  }

  /** Shows the report (loads it the first time). */
  open() {
    if (this.loaded === null) this.load();
  }

  async load() {
    const { year, body, error } = this.els;
    const y = year.value.trim();
    this.setCsv();
    error.hidden = true;
    replace(body, h('p', { class: 'muted' }, `Loading ${y}…`));
    try {
      const r = await api(`/reports/${seg(y)}`);
      this.loaded = y;
      this.render(r);
    } catch (err) {
      replace(body);
      error.textContent = explain(err);
      error.hidden = false;
    }
  }

  render(r) {
    const rows = r.rows || [];
    const cats = new Map();
    for (const row of rows) if (!cats.has(row.category)) cats.set(row.category, cats.size);
    const units = new Map();
    for (const row of rows) {
      if (!units.has(row.unit)) units.set(row.unit, { unit: row.unit, recordings: [], hours: [], n: 0 });
      const u = units.get(row.unit);
      u.recordings.push({ category: row.category, value: row.recordings });
      u.hours.push({ category: row.category, value: row.hours });
      u.n += row.recordings;
    }
    const sorted = [...units.values()].sort((a, b) => b.n - a.n || a.unit.localeCompare(b.unit));
    const t = r.total || {};
    const kpi = (label, value) => h('div', { class: 'kpi' }, h('span', { class: 'kpi-value' }, value), h('span', { class: 'kpi-label' }, label));
    const parts = [
      h('p', { class: 'muted' }, `Year ${r.year} (UTC) · generated ${fmtTime(r.generated_at)}`),
      h('div', { class: 'kpis' },
        kpi('recordings', fmtNum(t.recordings || 0)),
        kpi('hours', fmtAuto(t.hours || 0)),
        kpi('stored', fmtBytes(t.bytes || 0)),
        kpi('accesses', fmtNum(t.accesses || 0)),
        kpi('clips', fmtNum(t.clips || 0)),
        kpi('exports', fmtNum(t.exports || 0)),
        kpi('holds', fmtNum(t.holds || 0)),
        kpi('destructions', fmtNum(t.destructions || 0))),
    ];
    if (rows.length === 0) {
      parts.push(h('p', { class: 'empty-note' }, `Nothing was recorded for ${r.year} in your scope.`));
      replace(this.els.body, parts);
      return;
    }
    parts.push(
      h('ul', { class: 'legend', 'aria-label': 'Categories' },
        [...cats.entries()].map(([c, i]) => h('li', {}, h('span', { class: `swatch c${i % PALETTE}`, 'aria-hidden': 'true' }), c))),
      h('div', { class: 'charts' },
        barChart('Recordings per unit', sorted.map((u) => ({ unit: u.unit, parts: u.recordings })), cats, { integer: true }),
        barChart('Hours per unit', sorted.map((u) => ({ unit: u.unit, parts: u.hours })), cats, { unit: ' h' })));
    const num = (v, d = 0) => h('td', { class: 'num' }, fmtNum(v || 0, d));
    const line = (row, head) => [
      head,
      num(row.recordings), num(row.hours, 3), h('td', { class: 'num' }, fmtBytes(row.bytes || 0)),
      num(row.accesses), num(row.clips), num(row.exports), num(row.holds), num(row.destructions),
    ];
    parts.push(h('div', { class: 'table-wrap' },
      h('table', { class: 'table', id: 'report-table' },
        h('caption', { class: 'sr-only' }, `Annual report ${r.year}`),
        h('thead', {}, h('tr', {}, ['Unit', 'Category', 'Recordings', 'Hours', 'Size', 'Accesses', 'Clips', 'Exports', 'Holds', 'Destructions']
          .map((c, i) => h('th', { scope: 'col', class: i > 1 ? 'num' : null }, c)))),
        h('tbody', {}, rows.map((row) => h('tr', {}, line(row, [h('th', { scope: 'row' }, row.unit), h('td', {}, row.category)])))),
        h('tfoot', {}, h('tr', {}, line(t, [h('th', { scope: 'row', colspan: 2 }, 'Total')]))))));
    replace(this.els.body, parts);
  }
}
