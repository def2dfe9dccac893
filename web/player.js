// The panel of one recording: the proxy player (through an audited access grant), clips from a
// marked range, case links, the recording's facts and its custody history.

import { ApiError, api, explain, withReason } from './api.js';
import { fmtBytes, fmtClock, fmtDuration, fmtTime, h, icon, replace, sameOrigin, seg } from './dom.js';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function mediaSummary(m) {
  if (!m) return '—';
  const streams = m.streams || [];
  const v = streams.find((s) => s.type === 'video');
  const a = streams.find((s) => s.type === 'audio');
  const parts = [];
  if (m.container) parts.push(String(m.container).split(',')[0]);
  if (v) parts.push([v.codec, v.width && v.height ? `${v.width}×${v.height}` : null, v.fps ? `${Math.round(Number(v.fps) * 100) / 100} fps` : null].filter(Boolean).join(' '));
  if (a) parts.push([a.codec, a.sample_rate ? `${a.sample_rate / 1000} kHz` : null, a.channels ? `${a.channels} ch` : null].filter(Boolean).join(' '));
  return parts.join(' · ') || '—';
}

function retention(rec) {
  if (rec.state === 'destroyed') return 'Destroyed (tombstone kept)';
  const parts = [];
  if (rec.retention_permanent) parts.push('permanent');
  else if (rec.retention_until) parts.push(`until ${fmtTime(rec.retention_until)}`);
  else parts.push('no fixed end (case-driven or unknown)');
  if (rec.legal_hold) parts.push('legal hold');
  if (rec.state === 'pending_destruction') parts.push('pending destruction');
  return `${rec.category || 'uncategorized'}: ${parts.join(', ')}`;
}

const pretty = (kind) => String(kind).replace(/_/g, ' ').replace(/^./, (c) => c.toUpperCase());

/** A detail value in a few words: hashes shortened, objects by their hash or plain fields. */
function short(v) {
  if (v === null || v === undefined) return '';
  if (typeof v === 'string') return /^[0-9a-f]{64}$/.test(v) ? `${v.slice(0, 12)}…` : v;
  if (Array.isArray(v)) return v.map(short).filter(Boolean).join(', ');
  if (typeof v === 'object') {
    if (typeof v.sha256 === 'string') return `SHA-256 ${short(v.sha256)}`;
    return Object.entries(v)
      .filter(([k, x]) => k !== 'key' && x !== null && typeof x !== 'object')
      .slice(0, 3)
      .map(([k, x]) => `${k.replace(/_/g, ' ')} ${short(x)}`)
      .join(', ');
  }
  return String(v);
}

/** The key details of a custody entry as short `key: value` pairs (store keys left out). */
function detailPairs(details) {
  if (!details || typeof details !== 'object') return [];
  const out = [];
  for (const [k, v] of Object.entries(details)) {
    if (k === 'user_agent' || k === 'key' || k.endsWith('_key')) continue;
    let text = short(v);
    if (!text) continue;
    if (text.length > 90) text = `${text.slice(0, 89)}…`;
    out.push([k.replace(/_/g, ' '), text]);
    if (out.length >= 6) break;
  }
  return out;
}

export class Player {
  /** `root`: the panel element; `opts`: { toast, onChange(rec), badges(rec) }. */
  constructor(root, opts) {
    this.root = root;
    this.opts = opts;
    this.id = null;
    this.rec = null;
    this.seq = 0;
    this.empty = [...root.childNodes];
  }

  /** Empties the panel (sign-out). */
  close() {
    this.seq++;
    this.stopVideo();
    this.id = null;
    this.rec = null;
    replace(this.root, this.empty);
  }

  stopVideo() {
    if (this.video) {
      this.video.pause();
      this.video.removeAttribute('src');
      this.video.load();
    }
    this.video = null;
  }

  /** Opens recording `rec` (a search result): details, player, custody. */
  async open(rec) {
    const seq = ++this.seq;
    this.stopVideo();
    this.id = rec.id;
    this.rec = rec;
    this.ready = false;
    this.grant = null;
    this.refreshes = 0;
    this.inMs = null;
    this.outMs = null;
    this.build();
    this.root.querySelector('h2')?.focus();
    try {
      const full = await withReason(rec, (reason) => api(`/recordings/${seg(rec.id)}`, { reason }));
      if (seq !== this.seq) return;
      this.rec = full;
      this.ready = true;
      this.opts.onChange(full);
      this.renderFacts();
    } catch (err) {
      if (seq !== this.seq) return;
      this.fail(err);
      return;
    }
    await Promise.all([this.loadMedia(seq), this.loadCustody(seq)]);
  }

  /** A live change of the open recording. */
  update(rec, change) {
    if (!this.rec || rec.id !== this.id) return;
    const wasPlayable = this.rec.playable;
    this.rec = { ...this.rec, ...rec };
    this.renderFacts();
    // Until the recording is open (a reason may still be being asked for), only show the change.
    if (!this.ready) return;
    if (!wasPlayable && this.rec.playable && !this.grant) this.loadMedia(this.seq);
    clearTimeout(this.custodyTimer);
    this.custodyTimer = setTimeout(() => this.loadCustody(this.seq), 400);
    if (change === 'derived' && this.rec.media_state === 'ready') this.opts.toast(`The proxy of ${this.rec.original_name} is ready.`);
  }

  fail(err) {
    const again = h('button', { type: 'button', class: 'btn ghost', onclick: () => this.open(this.rec) }, 'Try again');
    replace(this.el.body, h('p', { class: 'alert', role: 'alert' }, explain(err)), again);
  }

  // -------------------------------------------------------------- layout

  build() {
    const rec = this.rec;
    const el = (this.el = {});
    el.title = h('h2', { tabindex: '-1', class: 'detail-title' }, rec.original_name);
    el.badges = h('div', { class: 'badges' });
    this.video = h('video', {
      class: 'video',
      controls: true,
      preload: 'auto',
      playsinline: true,
      'aria-label': `Proxy of ${rec.original_name}`,
    });
    this.video.addEventListener('error', (e) => this.onVideoError(e.target));
    el.msg = h('p', { class: 'player-msg', role: 'status' });
    el.inOut = h('output', { class: 'marks', 'aria-live': 'polite' });
    el.clipReason = h('input', { id: 'clip-reason', type: 'text', maxlength: 2000, placeholder: 'Why is the clip made?' });
    el.makeClip = h('button', { type: 'button', class: 'btn primary', id: 'make-clip', disabled: true, onclick: () => this.makeClip() }, 'Make clip');
    el.clipStatus = h('p', { class: 'status', role: 'status', id: 'clip-status' });
    el.clips = h('ul', { class: 'clips', id: 'clips', 'aria-label': 'Clips' });
    el.original = h('a', { class: 'btn ghost small', id: 'original-link', hidden: true, download: rec.original_name }, 'Download original');
    el.facts = h('dl', { class: 'facts' });
    el.cases = h('ul', { class: 'chips', id: 'case-chips', 'aria-label': 'Linked cases' });
    el.caseId = h('input', { id: 'case-id', name: 'case', required: true, maxlength: 200, autocomplete: 'off' });
    el.caseTitle = h('input', { id: 'case-title', name: 'title', maxlength: 1000, autocomplete: 'off' });
    el.caseReason = h('input', { id: 'case-reason', name: 'reason', maxlength: 2000, autocomplete: 'off' });
    el.caseStatus = h('p', { class: 'status', role: 'status', id: 'case-status' });
    el.custody = h('ol', { class: 'timeline', id: 'custody', 'aria-labelledby': 'custody-title', tabindex: '0' });
    el.custodyCount = h('span', { class: 'muted' });

    const caseForm = h('form', { class: 'case-form', id: 'case-form', onsubmit: (e) => { e.preventDefault(); this.linkCase(); } },
      h('div', { class: 'field' }, h('label', { for: 'case-id' }, 'Case number'), el.caseId),
      h('div', { class: 'field' }, h('label', { for: 'case-title' }, 'Title (if the case is new)'), el.caseTitle),
      h('div', { class: 'field' }, h('label', { for: 'case-reason' }, 'Reason (optional)'), el.caseReason),
      h('button', { type: 'submit', class: 'btn primary' }, 'Link to case'));

    el.body = h('div', { class: 'detail-body' },
      h('div', { class: 'player' }, this.video, h('div', { class: 'player-bar' }, el.msg, el.original)),
      h('div', { class: 'tools', role: 'group', 'aria-label': 'Clip from the marked range' },
        h('button', { type: 'button', class: 'btn', id: 'mark-in', onclick: () => this.mark('in') }, 'Mark in'),
        h('button', { type: 'button', class: 'btn', id: 'mark-out', onclick: () => this.mark('out') }, 'Mark out'),
        el.inOut,
        h('label', { for: 'clip-reason', class: 'sr-only' }, 'Reason for the clip'),
        el.clipReason,
        el.makeClip),
      el.clipStatus,
      el.clips,
      h('section', { class: 'sub', 'aria-labelledby': 'facts-title' }, h('h3', { id: 'facts-title' }, 'Recording'), el.facts),
      h('section', { class: 'sub', 'aria-labelledby': 'cases-title' }, h('h3', { id: 'cases-title' }, 'Cases'), el.cases, caseForm, el.caseStatus),
      h('section', { class: 'sub', 'aria-labelledby': 'custody-title' },
        h('div', { class: 'sub-head' }, h('h3', { id: 'custody-title' }, 'Custody history'), el.custodyCount),
        el.custody));

    replace(this.root,
      h('div', { class: 'detail-head' },
        h('div', { class: 'detail-heading' }, el.title, h('p', { class: 'muted mono small' }, rec.id)),
        h('button', { type: 'button', class: 'btn icon-btn', 'aria-label': 'Close the recording', onclick: () => this.close() }, icon('close'))),
      el.badges,
      el.body);
    this.renderMarks();
    this.renderFacts();
    this.message(rec.playable ? 'Requesting access…' : '');
  }

  message(text, kind = '') {
    this.el.msg.textContent = text;
    this.el.msg.className = `player-msg ${kind}`;
  }

  renderFacts() {
    const rec = this.rec;
    replace(this.el.badges, this.opts.badges(rec));
    const rows = [
      ['SHA-256', h('code', { class: 'hash', id: 'rec-sha256' }, rec.sha256)],
      ['Size', fmtBytes(rec.size)],
      ['Device', rec.device || '—'],
      ['Officer', rec.officer || '—'],
      ['Unit', rec.unit || '—'],
      ['Started', fmtTime(rec.started_at)],
      ['Duration', fmtDuration(rec.duration_ms ?? rec.media?.duration_ms)],
      ['Archived', fmtTime(rec.archived_at)],
      ['Retention', retention(rec)],
      ['Classification', rec.classification || 'normal'],
      ['Media', mediaSummary(rec.media)],
    ];
    if (rec.location && typeof rec.location.lat === 'number') rows.push(['Location', `${rec.location.lat.toFixed(5)}, ${rec.location.lon.toFixed(5)}`]);
    if (rec.needs_review) rows.push(['Review', (rec.review_reasons || []).join('; ') || 'needs review']);
    if (rec.media_warning) rows.push(['Media note', rec.media_warning]);
    if (rec.media_error) rows.push(['Media error', rec.media_error]);
    replace(this.el.facts, rows.map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
    this.renderCases();
  }

  renderCases() {
    const cases = this.rec.cases || [];
    replace(this.el.cases, cases.length === 0 ? h('li', { class: 'muted' }, 'Not linked to any case.') : cases.map((c) =>
      h('li', { class: 'chip', dataset: { case: c } },
        h('span', {}, c),
        h('button', { type: 'button', class: 'chip-x', 'aria-label': `Unlink from case ${c}`, title: `Unlink from case ${c}`, onclick: () => this.unlinkCase(c) }, icon('close')))));
  }

  // -------------------------------------------------------------- media

  async loadMedia(seq) {
    const rec = this.rec;
    if (rec.state === 'destroyed') return this.message('This recording was destroyed; only its record remains.', 'muted');
    if (rec.media_state === 'pending') return this.message('The proxy is still being made; it plays here as soon as it is ready.', 'muted');
    if (rec.media_state === 'failed' || !rec.playable) {
      return this.message(`No playable media: ${rec.media_error || 'derivation failed'}. The original is archived intact.`, 'warn');
    }
    try {
      const grant = await withReason(rec, (reason) =>
        api(`/recordings/${seg(rec.id)}/access`, { method: 'POST', reason, body: reason ? { reason } : {} }));
      if (seq !== this.seq) return;
      this.applyGrant(grant);
    } catch (err) {
      if (seq === this.seq) this.message(explain(err), 'error');
    }
  }

  applyGrant(grant, resumeAt) {
    const v = this.video;
    if (!v || !grant || !sameOrigin(grant.proxy_url)) {
      this.message('The server offered media from another origin; it was not loaded.', 'error');
      return;
    }
    this.grant = grant;
    if (this.rec.media?.has_video !== false && grant.poster_url && sameOrigin(grant.poster_url)) v.poster = grant.poster_url;
    v.src = grant.proxy_url;
    if (resumeAt) v.addEventListener('loadedmetadata', () => { v.currentTime = resumeAt; }, { once: true });
    const o = this.el.original;
    if (grant.original_url && sameOrigin(grant.original_url)) {
      o.href = grant.original_url;
      o.hidden = false;
    } else {
      o.hidden = true;
    }
    const until = grant.expires_at ? ` Access granted until ${fmtTime(grant.expires_at)}.` : '';
    this.message(`${this.rec.media_warning ? `Partial media: ${this.rec.media_warning}.` : ''}${until}`.trim(), this.rec.media_warning ? 'warn' : 'muted');
  }

  /** A player error: after the grant expired, ask for a new one and carry on where it was. */
  async onVideoError(v) {
    if (!v || v !== this.video || !this.grant || !v.getAttribute('src')) return;
    const expired = this.grant.expires_at && Date.now() >= Date.parse(this.grant.expires_at) - 5000;
    if (expired && this.refreshes < 3) {
      this.refreshes++;
      const at = v.currentTime;
      const seq = this.seq;
      try {
        const grant = await withReason(this.rec, (reason) =>
          api(`/recordings/${seg(this.id)}/access`, { method: 'POST', reason, body: reason ? { reason } : {} }));
        if (seq === this.seq) this.applyGrant(grant, at);
      } catch (err) {
        if (seq === this.seq) this.message(explain(err), 'error');
      }
      return;
    }
    this.message(`The proxy could not be played${v.error?.message ? ` (${v.error.message})` : ''}.`, 'error');
  }

  // -------------------------------------------------------------- clips

  mark(which) {
    if (!this.video) return;
    const ms = Math.round(this.video.currentTime * 1000);
    if (which === 'in') this.inMs = ms;
    else this.outMs = ms;
    this.renderMarks();
  }

  renderMarks() {
    const f = (ms) => (ms === null ? '—' : fmtClock(ms / 1000));
    this.el.inOut.textContent = `In ${f(this.inMs)} · Out ${f(this.outMs)}`;
    const ok = this.inMs !== null && this.outMs !== null && this.outMs > this.inMs;
    this.el.makeClip.disabled = !ok;
    this.el.makeClip.title = ok ? '' : 'Mark in, then mark out at a later time';
  }

  async makeClip() {
    const rec = this.rec;
    const seq = this.seq;
    const own = this.el.clipReason.value.trim();
    this.el.makeClip.disabled = true;
    this.el.clipStatus.className = 'status';
    this.el.clipStatus.textContent = `Cutting ${fmtClock(this.inMs / 1000)}–${fmtClock(this.outMs / 1000)}…`;
    const body = { start_ms: this.inMs, end_ms: this.outMs, accurate: false };
    try {
      let clip = await withReason(rec, (reason) =>
        api(`/recordings/${seg(rec.id)}/clips`, { method: 'POST', reason, body: { ...body, reason: own || reason || '' } }));
      if (seq !== this.seq) return;
      this.showClip(clip);
      const deadline = Date.now() + 120000;
      while (clip.state === 'pending' && Date.now() < deadline) {
        await sleep(1000);
        if (seq !== this.seq) return;
        clip = await withReason(rec, (reason) => api(`/clips/${seg(clip.id)}`, { reason }));
        this.showClip(clip);
      }
      this.el.clipStatus.textContent = clip.state === 'ready' ? 'Clip ready.' : clip.state === 'failed' ? `The clip failed: ${clip.error || 'unknown error'}.` : 'The clip is still being made.';
    } catch (err) {
      if (seq !== this.seq) return;
      if (err instanceof ApiError && err.data?.id && err.data?.state) {
        this.showClip(err.data);
        this.el.clipStatus.textContent = `The clip failed: ${err.data.error || err.message}.`;
      } else {
        this.el.clipStatus.className = 'status alert';
        this.el.clipStatus.textContent = `No clip: ${explain(err)}`;
      }
    } finally {
      if (seq === this.seq) this.renderMarks();
    }
  }

  showClip(c) {
    const range = `${fmtClock(c.start_ms / 1000)}–${fmtClock(c.end_ms / 1000)}`;
    const li = h('li', { class: ['clip', c.state], dataset: { clipId: c.id } },
      h('div', { class: 'clip-head' },
        h('strong', {}, `Clip ${range}`),
        h('span', { class: `badge ${c.state === 'ready' ? 'ok' : c.state === 'failed' ? 'danger' : 'muted'}` }, c.state),
        c.size ? h('span', { class: 'muted' }, fmtBytes(c.size)) : null,
        c.state === 'ready' ? h('a', { class: 'btn ghost small', href: `/api/v1/clips/${seg(c.id)}/media`, download: `clip-${c.id}.mp4` }, 'Download clip') : null),
      c.sha256 ? h('div', { class: 'clip-hash' }, h('span', { class: 'muted' }, 'SHA-256 '), h('code', { class: 'hash clip-sha' }, c.sha256)) : null,
      c.error ? h('p', { class: 'alert' }, c.error) : null);
    const old = this.el.clips.querySelector(`li[data-clip-id="${CSS.escape(c.id)}"]`);
    if (old) old.replaceWith(li);
    else this.el.clips.prepend(li);
  }

  // -------------------------------------------------------------- cases

  async linkCase() {
    const rec = this.rec;
    const seq = this.seq;
    const id = this.el.caseId.value.trim();
    const title = this.el.caseTitle.value.trim();
    const why = this.el.caseReason.value.trim();
    const status = this.el.caseStatus;
    status.className = 'status';
    if (!id) {
      status.textContent = 'Enter a case number.';
      this.el.caseId.focus();
      return;
    }
    status.textContent = `Linking to case ${id}…`;
    try {
      let created = false;
      try {
        await api(`/cases/${seg(id)}`);
      } catch (err) {
        if (err.status !== 404 || err.code !== 'case_not_found') throw err;
        await api(`/cases/${seg(id)}`, { method: 'PUT', body: { title, status: 'open' } });
        created = true;
      }
      await withReason(rec, (reason) =>
        api(`/cases/${seg(id)}/recordings/${seg(rec.id)}`, { method: 'PUT', reason, body: why || reason ? { reason: why || reason } : {} }));
      if (seq !== this.seq) return;
      await this.refresh();
      status.textContent = created ? `Created case ${id} and linked the recording.` : `Linked to case ${id}.`;
      this.el.caseId.value = '';
      this.el.caseTitle.value = '';
      this.el.caseReason.value = '';
    } catch (err) {
      if (seq !== this.seq) return;
      status.className = 'status alert';
      status.textContent = `Not linked: ${explain(err)}`;
    }
  }

  async unlinkCase(id) {
    const rec = this.rec;
    const seq = this.seq;
    const status = this.el.caseStatus;
    status.className = 'status';
    try {
      await withReason(rec, (reason) =>
        api(`/cases/${seg(id)}/recordings/${seg(rec.id)}`, { method: 'DELETE', reason, body: reason ? { reason } : {} }));
      if (seq !== this.seq) return;
      await this.refresh();
      status.textContent = `Unlinked from case ${id}.`;
    } catch (err) {
      if (seq !== this.seq) return;
      status.className = 'status alert';
      status.textContent = `Not unlinked: ${explain(err)}`;
    }
  }

  /** Reloads the recording (after a change made here) and its custody history. */
  async refresh() {
    const seq = this.seq;
    const full = await withReason(this.rec, (reason) => api(`/recordings/${seg(this.id)}`, { reason }));
    if (seq !== this.seq) return;
    this.rec = full;
    this.renderFacts();
    this.opts.onChange(full);
    await this.loadCustody(seq);
  }

  // -------------------------------------------------------------- custody

  async loadCustody(seq) {
    if (!this.rec) return;
    try {
      const page = await withReason(this.rec, (reason) => api(`/recordings/${seg(this.id)}/custody`, { reason }));
      if (seq !== this.seq) return;
      const items = page.items || [];
      this.el.custodyCount.textContent = `${items.length} ${items.length === 1 ? 'entry' : 'entries'}, oldest first`;
      replace(this.el.custody, items.map((e) =>
        h('li', { class: 'event', dataset: { kind: e.kind } },
          h('div', { class: 'event-head' },
            h('time', { datetime: e.at }, fmtTime(e.at)),
            h('span', { class: `kind k-${e.kind}` }, pretty(e.kind)),
            h('span', { class: 'actor' }, `by ${e.actor}`)),
          (() => {
            const pairs = detailPairs(e.details);
            return pairs.length ? h('p', { class: 'event-details' }, pairs.map(([k, v], i) => [i ? ' · ' : '', h('span', { class: 'k' }, `${k}: `), v])) : null;
          })(),
          h('p', { class: 'event-hash mono small muted', title: `hash ${e.hash}\nprevious ${e.prev_hash}` }, `#${e.seq} · ${String(e.hash).slice(0, 16)}…`))));
      this.el.custody.scrollTop = this.el.custody.scrollHeight;
    } catch (err) {
      if (seq !== this.seq) return;
      replace(this.el.custody, h('li', { class: 'alert' }, `Custody history: ${explain(err)}`));
    }
  }
}
