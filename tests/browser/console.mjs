// The web console in headless Chromium against a real evidenced daemon (started and filled by
// tests/it/console.rs, which sets the environment below). Plain node + node:assert; exits 0
// when every step passed, 1 with the failing step otherwise.
//
// BASE_URL         http://127.0.0.1:PORT of the daemon
// TOKEN            a supervisor token (the main user)
// OFFICER_TOKEN    an officer token (sees only their own recordings; may not cut clips)
// ARCHIVIST_TOKEN  an archivist token (sees the annual report)
// SEARCH_DEVICE    the device of the 5 s H.264 recording to search for, play and clip
// CLASSIFIED_NAME  original name of a classified recording (opens only with a reason)
// DOCK_DIR         a watched dock; NEW_VIDEO is copied there as NEW_VIDEO_DEST (relative)
// SCREENSHOT_DIR   where the PNG screenshots go

import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

function env(name) {
  const v = process.env[name];
  if (!v) {
    console.error(`FAIL: environment variable ${name} is not set (run this through tests/it/console.rs)`);
    process.exit(2);
  }
  return v;
}

const BASE = env('BASE_URL').replace(/\/$/, '');
const TOKEN = env('TOKEN');
const OFFICER_TOKEN = env('OFFICER_TOKEN');
const ARCHIVIST_TOKEN = env('ARCHIVIST_TOKEN');
const SEARCH_DEVICE = env('SEARCH_DEVICE');
const CLASSIFIED_NAME = env('CLASSIFIED_NAME');
const DOCK_DIR = env('DOCK_DIR');
const NEW_VIDEO = env('NEW_VIDEO');
const NEW_VIDEO_DEST = env('NEW_VIDEO_DEST');
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const CASE_ID = `K-${new Date().getUTCFullYear()}-0117`;
const H264 = 'video/mp4; codecs="avc1.42E01E, mp4a.40.2"';

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1).padStart(5)} s`;
let current = 'start';
function step(name) {
  current = name;
  console.log(`[${elapsed()}] ${name}`);
}

// The whole run is bounded: a hung step fails the test instead of hanging it.
const watchdog = setTimeout(() => {
  console.error(`FAIL: the browser test exceeded 100 s (during: ${current})`);
  process.exit(1);
}, 100_000);

fs.mkdirSync(SHOTS, { recursive: true });

// ------------------------------------------------------------------ page problems

/** Console errors, page errors, 5xx answers and unexpected 4xx answers, per page. */
const problems = [];
/** 4xx answers the steps provoke on purpose (method, path pattern, status). */
const expected4xx = [
  ['GET', /^\/api\/v1\/session$/, 401], // page load while signed out
  ['POST', /^\/api\/v1\/session$/, 401], // the wrong token
  ['GET', /^\/api\/v1\/cases\/[^/]+$/, 404], // the case does not exist yet
  ['POST', /^\/api\/v1\/recordings\/[^/]+\/clips$/, 403], // an officer may not cut clips
];
const seen4xx = [];

function watch(page, who) {
  page.on('pageerror', (e) => problems.push(`${who}: uncaught error in the page: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const text = m.text();
    // Chromium logs every 4xx resource load as a console error; those are judged below by URL.
    if (/^Failed to load resource: the server responded with a status of 4\d\d/.test(text)) return;
    problems.push(`${who}: console.error: ${text}`);
  });
  page.on('response', (r) => {
    const u = new URL(r.url());
    if (u.origin !== BASE) {
      problems.push(`${who}: request to another origin: ${r.url()}`);
      return;
    }
    const st = r.status();
    if (st >= 500) problems.push(`${who}: ${st} for ${r.request().method()} ${u.pathname}`);
    if (st >= 400 && st < 500) {
      const method = r.request().method();
      seen4xx.push(`${who}: ${st} ${method} ${u.pathname}`);
      if (!expected4xx.some(([m, p, s]) => m === method && p.test(u.pathname) && s === st)) {
        problems.push(`${who}: unexpected ${st} for ${method} ${u.pathname}`);
      }
    }
  });
}

// ------------------------------------------------------------------ helpers

async function apiAs(token, p, init = {}) {
  const r = await fetch(`${BASE}${p}`, { ...init, headers: { Authorization: `Bearer ${token}`, ...(init.headers || {}) } });
  const text = await r.text();
  let body = null;
  try {
    body = JSON.parse(text);
  } catch {
    body = text;
  }
  return { status: r.status, body };
}

async function shot(page, name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, animations: 'disabled' });
  console.log(`           screenshot ${file}`);
}

async function signIn(page, token) {
  await page.locator('#token').fill(token);
  await page.locator('#signin-submit').click();
}

/** Seeks the open player to `t` seconds and waits until it is there with a decoded frame. */
async function seek(page, t) {
  await page.evaluate((t) => new Promise((resolve, reject) => {
    const v = document.querySelector('#detail video');
    const timer = setTimeout(() => reject(new Error(`no 'seeked' within 10 s (readyState ${v.readyState}, error ${v.error?.code})`)), 10_000);
    v.addEventListener('seeked', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
    v.currentTime = t;
  }), t);
  await page.waitForFunction((t) => {
    const v = document.querySelector('#detail video');
    return Math.abs(v.currentTime - t) < 0.5 && v.readyState >= 2;
  }, t, { timeout: 10_000 });
}

const rowByName = (page, name) => page.locator('#results li.row').filter({ has: page.locator('.name', { hasText: name }) });

async function posterLoaded(row) {
  return row.locator('img').evaluate((img) => img.complete && img.naturalWidth > 0).catch(() => false);
}

// ------------------------------------------------------------------ the run

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
    '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required', '--mute-audio',
  ],
});
const contexts = [];
async function newPage(who) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 960 }, deviceScaleFactor: 1, acceptDownloads: false });
  ctx.setDefaultTimeout(15_000);
  contexts.push(ctx);
  const page = await ctx.newPage();
  watch(page, who);
  return { ctx, page };
}

let failed = false;
let failPage = null;
try {
  // ---------------------------------------------------------------- supervisor
  const { ctx, page } = await newPage('supervisor');
  failPage = page;
  step('load the console');
  const resp = await page.goto(`${BASE}/`);
  assert.equal(resp.status(), 200);
  const csp = resp.headers()['content-security-policy'] || '';
  assert.match(csp, /script-src 'self'/, `Content-Security-Policy: ${csp}`);
  assert.match(csp, /frame-ancestors 'none'/);
  await page.locator('#signin').waitFor({ state: 'visible' });

  step('H.264 support of this Chromium');
  const canPlay = await page.evaluate((t) => document.createElement('video').canPlayType(t), H264);
  console.log(`           canPlayType('${H264}') = ${JSON.stringify(canPlay)}`);
  assert.ok(canPlay, `this Chromium (${CHROMIUM}) cannot play H.264/AAC MP4: canPlayType answered "" — install Debian's chromium (it plays H.264) and rerun`);
  await shot(page, '01-sign-in.png');

  step('a wrong token is refused with a clear message');
  await signIn(page, `evd_${'A'.repeat(43)}`);
  await page.locator('#signin-error').waitFor({ state: 'visible' });
  const wrong = await page.locator('#signin-error').textContent();
  assert.match(wrong, /not valid/i, `sign-in error: ${wrong}`);
  assert.equal(await page.locator('#whoami').isHidden(), true);

  step('sign in as the supervisor');
  await signIn(page, TOKEN);
  await page.locator('#whoami').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#who-name').textContent(), 'sup');
  assert.equal(await page.locator('#who-role').textContent(), 'supervisor');
  assert.equal(await page.locator('#token').inputValue(), '', 'the token field is cleared');
  const stored = await page.evaluate(() => JSON.stringify({ ...localStorage }) + JSON.stringify({ ...sessionStorage }) + location.href);
  assert.ok(!stored.includes(TOKEN.slice(4, 20)), 'the token is not kept in web storage or the URL');
  const cookies = await ctx.cookies();
  assert.ok(cookies.length > 0, 'a session cookie is set');
  for (const c of cookies) {
    assert.ok(c.httpOnly, `cookie ${c.name} is HttpOnly`);
    assert.equal(c.sameSite, 'Strict', `cookie ${c.name} is SameSite=Strict`);
    assert.ok(!c.value.includes(TOKEN.slice(4, 20)), `cookie ${c.name} is not the token itself`);
  }
  await page.waitForFunction(() => document.querySelector('#live')?.classList.contains('on'), null, { timeout: 10_000 });

  step('every recording is listed, video ones with their poster');
  await page.waitForFunction(() => document.querySelectorAll('#results li.row').length >= 3, null, { timeout: 10_000 });
  await page.waitForFunction(() => [...document.querySelectorAll('#results li.row img')].every((i) => i.complete && i.naturalWidth > 0)
    && document.querySelectorAll('#results li.row img').length >= 1, null, { timeout: 10_000 });
  assert.ok(await page.locator('#results .thumb.locked').count() >= 1, 'the classified recording shows a lock, not its poster');
  assert.ok(await page.locator('#results .thumb.audio').count() >= 1, 'the audio recording shows an audio icon');
  await shot(page, '02-recordings.png');

  step(`search by device ${SEARCH_DEVICE}`);
  await page.locator('#f-device').fill(SEARCH_DEVICE);
  await page.locator('#search button[type=submit]').click();
  await page.waitForFunction(() => {
    const rows = document.querySelectorAll('#results li.row');
    return rows.length === 1 && !document.querySelector('#results-count').textContent.startsWith('Searching');
  }, null, { timeout: 10_000 });
  const row = page.locator('#results li.row').first();
  assert.match(await row.textContent(), new RegExp(`Device ${SEARCH_DEVICE}`));
  await page.waitForFunction(() => {
    const img = document.querySelector('#results li.row img');
    return img && img.complete && img.naturalWidth > 0;
  }, null, { timeout: 10_000 });
  const recId = await row.getAttribute('data-id');

  step('open, play and seek to 2 s');
  await row.locator('button.rec').click();
  await page.waitForFunction(() => document.querySelector('#detail video')?.getAttribute('src'), null, { timeout: 10_000 });
  const src = await page.locator('#detail video').getAttribute('src');
  console.log(`           video.src = ${src.replace(/([?&](sig|signature|token|s)=)[^&]+/g, '$1…')}`);
  await page.evaluate(() => {
    const v = document.querySelector('#detail video');
    v.muted = true;
    return v.play();
  });
  await page.waitForFunction(() => document.querySelector('#detail video').currentTime > 0.3, null, { timeout: 10_000 });
  await page.evaluate(() => document.querySelector('#detail video').pause());
  await seek(page, 2.0);
  const v = await page.evaluate(() => {
    const el = document.querySelector('#detail video');
    return { t: el.currentTime, readyState: el.readyState, w: el.videoWidth, h: el.videoHeight, d: el.duration };
  });
  console.log(`           after seek: ${JSON.stringify(v)}`);
  assert.ok(v.w > 0 && v.h > 0, 'the video decodes frames');
  assert.ok(v.d >= 4.5, `duration ${v.d}`);

  step('mark 1 s to 3 s and make a clip');
  await seek(page, 1.0);
  await page.locator('#mark-in').click();
  await seek(page, 3.0);
  await page.locator('#mark-out').click();
  assert.match(await page.locator('#detail .marks').textContent(), /In 0:01\.0 · Out 0:03\.0/);
  await page.locator('#clip-reason').fill('Excerpt for the incident report');
  await page.locator('#make-clip').click();
  const sha = page.locator('#clips li.clip .clip-sha').first();
  await sha.waitFor({ state: 'visible', timeout: 60_000 });
  const clipSha = (await sha.textContent()).trim();
  assert.match(clipSha, /^[0-9a-f]{64}$/);
  const clipId = await page.locator('#clips li.clip').first().getAttribute('data-clip-id');
  const clip = await apiAs(TOKEN, `/api/v1/clips/${clipId}`);
  assert.equal(clip.status, 200, JSON.stringify(clip.body));
  assert.equal(clip.body.sha256, clipSha, 'the console shows the clip\'s SHA-256');
  assert.equal(clip.body.recording_id, recId);
  assert.deepEqual([clip.body.start_ms, clip.body.end_ms], [1000, 3000]);
  assert.equal(await page.locator('#clips li.clip a').first().getAttribute('href'), `/api/v1/clips/${clipId}/media`);

  step('custody history shows the access and the clip');
  await page.waitForFunction(() => {
    const kinds = [...document.querySelectorAll('#custody li.event')].map((e) => e.dataset.kind);
    return kinds.includes('archived') && kinds.includes('clipped');
  }, null, { timeout: 10_000 });
  // Tall enough for the whole panel: player, clip, facts, cases and the custody timeline.
  await page.setViewportSize({ width: 1400, height: 1800 });
  await page.evaluate(() => { document.querySelector('#detail').scrollTop = 0; });
  await shot(page, '03-player-custody.png');
  await page.setViewportSize({ width: 1400, height: 960 });

  step(`link the recording to a new case ${CASE_ID}`);
  await page.locator('#case-id').fill(CASE_ID);
  await page.locator('#case-title').fill('Disturbance at 5th & Main');
  await page.locator('#case-form button[type=submit]').click();
  await page.locator(`#case-chips li[data-case="${CASE_ID}"]`).waitFor({ state: 'visible', timeout: 10_000 });
  assert.match(await page.locator('#case-status').textContent(), /Created case/);
  const kase = await apiAs(TOKEN, `/api/v1/cases/${encodeURIComponent(CASE_ID)}`);
  assert.equal(kase.status, 200, JSON.stringify(kase.body));
  assert.equal(kase.body.title, 'Disturbance at 5th & Main');
  assert.equal(kase.body.recordings, 1);
  const inCase = await apiAs(TOKEN, `/api/v1/recordings?case=${encodeURIComponent(CASE_ID)}`);
  assert.deepEqual(inCase.body.items.map((r) => r.id), [recId]);
  // The list row shows the case too (live event or refresh).
  await page.waitForFunction((c) => document.querySelector('#results li.row')?.textContent.includes(`Case ${c}`), CASE_ID, { timeout: 10_000 });
  await page.locator('#facts-title').evaluate((el) => el.scrollIntoView({ block: 'start' }));
  await shot(page, '04-case-linked.png');

  step('a classified recording opens only with a reason');
  await page.locator('#search button[type=reset]').click();
  await page.waitForFunction(() => document.querySelectorAll('#results li.row').length >= 3, null, { timeout: 10_000 });
  await rowByName(page, CLASSIFIED_NAME).locator('button.rec').click();
  const dialog = page.locator('dialog[open]');
  await dialog.waitFor({ state: 'visible', timeout: 5_000 });
  await page.locator('#reason-input').fill('Internal affairs review IA-77');
  await dialog.locator('button[type=submit]').click();
  await page.locator('#rec-sha256').waitFor({ state: 'visible' });
  assert.equal(await page.locator('#detail .detail-title').textContent(), CLASSIFIED_NAME);
  await page.waitForFunction(() => document.querySelector('#detail video')?.getAttribute('src'), null, { timeout: 10_000 });
  assert.equal(await page.locator('#detail .alert').count(), 0, 'no error in the panel');
  // The reason reached the custody log with the access.
  const secretId = await rowByName(page, CLASSIFIED_NAME).getAttribute('data-id');
  const why = 'Internal affairs review IA-77';
  const log = await apiAs(TOKEN, `/api/v1/recordings/${secretId}/custody`, { headers: { 'X-Access-Reason': encodeURIComponent('test check') } });
  assert.equal(log.status, 200, JSON.stringify(log.body));
  assert.ok(log.body.items.some((e) => e.kind === 'accessed' && e.actor === 'sup' && e.details?.reason === why),
    `an 'accessed' entry by sup with the reason: ${JSON.stringify(log.body.items.filter((e) => e.kind === 'accessed'))}`);

  step('a new recording on the dock appears live, then its poster');
  const newName = path.basename(NEW_VIDEO_DEST);
  const dest = path.join(DOCK_DIR, NEW_VIDEO_DEST);
  fs.mkdirSync(path.dirname(dest), { recursive: true });
  fs.copyFileSync(NEW_VIDEO, `${dest}.part`); // ignored by the daemon until renamed
  fs.renameSync(`${dest}.part`, dest);
  const fresh = rowByName(page, newName);
  await fresh.waitFor({ state: 'visible', timeout: 30_000 });
  assert.equal(await fresh.locator('.badge.new').count(), 1, 'the arrival is marked new');
  assert.equal(await page.locator('#results li.row').first().getAttribute('data-id'), await fresh.getAttribute('data-id'), 'at the top');
  console.log(`           arrived after ${elapsed()}`);
  const posterBy = Date.now() + 45_000;
  while (!(await posterLoaded(fresh))) {
    assert.ok(Date.now() < posterBy, 'the new recording\'s poster appears in place once its media is ready');
    await page.waitForTimeout(500);
  }
  await shot(page, '05-live-arrival.png');

  step('sign out');
  await page.locator('#sign-out').click();
  await page.locator('#signin').waitFor({ state: 'visible' });
  const after = await page.evaluate(() => fetch('/api/v1/session').then((r) => r.status));
  assert.equal(after, 401, 'the session is gone after signing out');

  // ---------------------------------------------------------------- officer
  step('an officer may not cut clips: the 403 is explained');
  const off = (await newPage('officer')).page;
  failPage = off;
  await off.goto(`${BASE}/`);
  await signIn(off, OFFICER_TOKEN);
  await off.locator('#whoami').waitFor({ state: 'visible' });
  assert.equal(await off.locator('#who-role').textContent(), 'officer');
  assert.equal(await off.locator('#tab-report').isHidden(), true, 'no report tab for officers');
  await off.waitForFunction(() => document.querySelectorAll('#results li.row').length >= 1, null, { timeout: 10_000 });
  const offRows = await off.locator('#results li.row').evaluateAll((rows) => rows.map((r) => r.dataset.id));
  assert.deepEqual(offRows, [recId], 'an officer sees only their own recordings');
  await off.locator('#results li.row button.rec').first().click();
  await off.waitForFunction(() => document.querySelector('#detail video')?.readyState >= 1, null, { timeout: 10_000 });
  await off.locator('#mark-in').click();
  await off.evaluate(() => { document.querySelector('#detail video').currentTime = 2; });
  await off.waitForFunction(() => document.querySelector('#detail video').currentTime >= 1.5);
  await off.locator('#mark-out').click();
  await off.locator('#make-clip').click();
  await off.waitForFunction(() => /may not/i.test(document.querySelector('#clip-status')?.textContent || ''), null, { timeout: 10_000 });
  console.log(`           ${await off.locator('#clip-status').textContent()}`);
  assert.match(await off.locator('#clip-status').textContent(), /Your role (\(officer\) )?may not do this/);

  // ---------------------------------------------------------------- archivist
  step('the archivist\'s annual report: chart, table and CSV');
  const arc = (await newPage('archivist')).page;
  failPage = arc;
  await arc.goto(`${BASE}/`);
  await signIn(arc, ARCHIVIST_TOKEN);
  await arc.locator('#tab-report').waitFor({ state: 'visible' });
  await arc.locator('#tab-report').click();
  const year = String(new Date().getUTCFullYear());
  assert.equal(await arc.locator('#report-year').inputValue(), year);
  await arc.locator('#report-table tbody tr').first().waitFor({ state: 'visible', timeout: 10_000 });
  assert.ok(await arc.locator('svg.chart rect.seg').count() >= 2, 'bars are drawn');
  const csvHref = await arc.locator('#report-csv').getAttribute('href');
  assert.equal(csvHref, `/api/v1/reports/${year}?format=csv`);
  const csv = await arc.evaluate((u) => fetch(u).then(async (r) => [r.status, r.headers.get('content-type'), await r.text()]), csvHref);
  assert.equal(csv[0], 200);
  assert.match(csv[1], /^text\/csv/);
  assert.match(csv[2], /\r\nTOTAL,,/);
  await shot(arc, '06-annual-report.png');

  // ---------------------------------------------------------------- verdict
  step('no page errors, console errors or unexpected answers');
  if (seen4xx.length) console.log(`           4xx seen (all expected): ${seen4xx.join('; ')}`);
  assert.deepEqual(problems, []);
} catch (e) {
  failed = true;
  console.error(`\nFAIL during "${current}" after ${elapsed()}:\n${e?.stack || e}`);
  if (problems.length) console.error(`page problems:\n  ${problems.join('\n  ')}`);
  if (failPage) {
    const file = path.join(os.tmpdir(), `evidenced-console-failure-${process.pid}.png`);
    await failPage.screenshot({ path: file }).catch(() => {});
    console.error(`screenshot of the failing page: ${file}`);
    const detail = await failPage.locator('body').innerText().catch(() => '');
    console.error(`page text:\n${detail.slice(0, 3000)}`);
  }
} finally {
  for (const c of contexts) await c.close().catch(() => {});
  await browser.close().catch(() => {});
  clearTimeout(watchdog);
}

if (failed) process.exit(1);
console.log(`[${elapsed()}] all console steps passed`);
