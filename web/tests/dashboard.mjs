// The operator dashboard in headless Chromium against the real binary:
//   node web/tests/dashboard.mjs [path/to/rivulet]
// Sign-in refuses a wrong token; the list shows a live stream (viewers, renditions,
// uptime, a thumbnail); creating a stream shows its RTMP URL and key once, and the
// key publishes; the stream page draws its charts and saves an edit.

import { join } from 'node:path';

import {
  ADMIN_TOKEN, api, artifactsDir, assert, assertNoPageErrors, launchBrowser, log, newPage,
  publish, rivuletBinary, run, startEdge, startServer, stop, until, waitInPage,
} from './lib.mjs';

const EVENTS_TOKEN = 'dashboard-events-token';

run('dashboard', async () => {
  const bin = rivuletBinary();
  const out = artifactsDir();
  // The events token lets the edge below POST its deliveries to the server's analytics.
  const server = await startServer(bin, ['--stream', 'cam=cam-secret-key-1234', '--renditions', 'source', '--analytics-token', EVENTS_TOKEN]);
  const publisher = publish(bin, `${server.rtmp}/live/cam-secret-key-1234`);
  await until('the stream to be live', async () => (await api(server, 'GET', '/api/streams/cam')).json?.live?.live, 60_000);
  const browser = await launchBrowser();
  const page = await newPage(browser);
  await page.goto(`${server.http}/dashboard`);

  // Sign in: a wrong token is refused, the right one kept for this tab.
  await page.waitForSelector('#login:not([hidden])');
  await page.fill('#token', 'not-the-token');
  await page.press('#token', 'Enter');
  await waitInPage(page, 'the refusal', () => /not the admin token/.test(document.getElementById('login-error').textContent));
  await page.fill('#token', ADMIN_TOKEN);
  await page.click('#login-form button[type=submit]');
  await page.waitForSelector('#list:not([hidden])');
  assert((await page.evaluate(() => sessionStorage.getItem('rivulet-admin-token'))) === ADMIN_TOKEN, 'token kept in sessionStorage');

  // The live stream: state, renditions, uptime and a thumbnail.
  const card = '.stream-card[data-stream="cam"]';
  await waitInPage(page, 'the live card', (c) => document.querySelector(c)?.dataset.live === 'true', card);
  await waitInPage(page, 'its renditions', (c) => document.querySelector(`${c} .renditions`).textContent === 'source', card, 30_000);
  await waitInPage(page, 'a thumbnail', (c) => {
    const img = document.querySelector(`${c} .thumb img`);
    return img && img.complete && img.naturalWidth > 0;
  }, card, 60_000);
  const uptime = await page.textContent(`${card} .uptime`);
  assert(/\d+ (s|min)/.test(uptime), `uptime: ${uptime}`);
  assert((await page.textContent(`${card} .badge`)) === 'live', 'live badge');
  await page.screenshot({ path: join(out, 'dashboard.png'), fullPage: true });

  // Create a stream: the key is shown once, with the RTMP URL, and it publishes.
  await page.click('#new-stream');
  await page.fill('#create-name', 'newshow');
  // Markup in a title is the owner's text, shown as such (never run).
  const showTitle = '<img src=x onerror="window.__xss=1">The new show';
  await page.fill('#create-title-input', showTitle);
  await page.fill('#create-tags', 'Music, talk');
  await page.click('#create-form button[type=submit]');
  await waitInPage(page, 'the created stream', () => !document.getElementById('created').hidden || document.getElementById('create-error').textContent, undefined, 30_000);
  const createError = await page.textContent('#create-error');
  assert(!createError, `create failed: ${createError}`);
  const key = await page.textContent('#created-key');
  const url = await page.textContent('#created-url');
  assert(key.length >= 16, `a key: ${key}`);
  assert(url === `rtmp://127.0.0.1:${server.rtmpPort}/live/${key}`, `the RTMP URL: ${url}`);
  await page.screenshot({ path: join(out, 'dashboard-created.png') });
  await page.click('#created-done');
  assert(!(await page.content()).includes(key), 'the key is gone from the page');
  const created = await api(server, 'GET', '/api/streams/newshow');
  assert(created.status === 200 && created.json.title === showTitle && created.json.tags.join() === 'music,talk', JSON.stringify(created.json));
  assert(!JSON.stringify(created.json).includes(key), 'the API never shows the key again');
  await waitInPage(page, 'the new card', (t) => document.querySelector('.stream-card[data-stream="newshow"] .title')?.textContent === t, showTitle);
  assert(await page.evaluate(() => window.__xss === undefined && !document.querySelector('.stream-card .title *')), 'the title stays text');
  const policy = (await fetch(`${server.http}/dashboard`)).headers.get('content-security-policy') || '';
  assert(/script-src 'self';/.test(policy) && /frame-ancestors 'none'/.test(policy), `the dashboard's policy: ${policy}`);
  const second = publish(bin, url, { size: '320x180', bitrate: '300k' });
  await until('the new stream to go live with the shown key', async () => (await api(server, 'GET', '/api/streams/newshow')).json?.live?.live, 60_000);
  stop(second);

  // One stream: charts and figures (a viewer watches meanwhile), and the editor.
  const viewer = await newPage(browser);
  await viewer.goto(`${server.http}/watch/cam`);
  await waitInPage(viewer, 'the viewer to play', () => document.body.dataset.state === 'playing', undefined, 60_000);
  await until('the viewer in analytics', async () => (await (await fetch(`${server.http}/api/analytics/streams/cam/summary`)).json()).startups >= 1, 60_000, 1000);
  // An edge in front of the server reports its deliveries (and which upstream
  // served them) to the server's analytics: the stream page lists it.
  const edge = await startEdge(bin, [server.http], ['--analytics-url', server.http, '--analytics-token', EVENTS_TOKEN]);
  await until('playlists through the edge', async () => {
    const r = await fetch(`${edge.url}/live/cam/master.m3u8`);
    return r.ok && r.headers.get('x-rivulet-upstream') === '0';
  }, 30_000, 500);
  await until('the edge in the summary', async () => (await (await fetch(`${server.http}/api/analytics/streams/cam/summary`)).json()).edges?.length >= 1, 30_000, 500);
  await page.click(`${card} h2 a`);
  await page.waitForURL('**/dashboard/streams/cam');
  await page.waitForSelector('#stream:not([hidden])');
  await waitInPage(page, 'six charts', () => document.querySelectorAll('#charts figure').length === 6, undefined, 30_000);
  await waitInPage(page, 'a drawn viewers chart', () => document.querySelector('#chart-viewers .uplot canvas'), undefined, 30_000);
  await waitInPage(page, 'the edge and its pipeline', (origin) => [...document.querySelectorAll('#edges-table tbody tr')].some((tr) => tr.cells[1].textContent === origin), server.http, 30_000);
  const edges = await page.$$eval('#edges-table tbody tr', (rows) => rows.map((r) => [...r.cells].map((c) => c.textContent)));
  log('edges:', JSON.stringify(edges));
  assert(edges.length === 1 && edges[0][0].endsWith(`:${new URL(edge.url).port}`), `one edge, the one started: ${JSON.stringify(edges)}`);
  assert(await page.isVisible('#edges'), 'the edges table is shown');
  stop(edge.proc);
  const facts = await page.$$eval('.fact', (fs) => Object.fromEntries(fs.map((f) => [f.firstChild.textContent, f.lastChild.textContent])));
  log('figures:', JSON.stringify(facts));
  assert(/ms$/.test(facts['Startup p50 / p95']), `startup figures: ${facts['Startup p50 / p95']}`);
  await page.fill('#edit-title-input', 'Camera one');
  await page.fill('#edit-tags', 'outdoor, Cam');
  await page.click('#edit-form button[type=submit]');
  await waitInPage(page, 'the saved edit', () => /Saved/.test(document.getElementById('edit-ok').textContent));
  const edited = await api(server, 'GET', '/api/streams/cam');
  assert(edited.json.title === 'Camera one' && edited.json.tags.join() === 'cam,outdoor', JSON.stringify(edited.json));
  await page.waitForTimeout(500);
  await page.screenshot({ path: join(out, 'dashboard-stream.png'), fullPage: true });

  // Phone width: the list fits.
  const phone = await newPage(browser, { viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  await phone.goto(`${server.http}/dashboard`);
  await phone.evaluate((t) => sessionStorage.setItem('rivulet-admin-token', t), ADMIN_TOKEN);
  await phone.reload();
  await waitInPage(phone, 'the list', () => document.querySelectorAll('.stream-card').length >= 2);
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 375, `the dashboard is ${width} px wide at 375 px`);
  await phone.screenshot({ path: join(out, 'dashboard-375.png'), fullPage: true });

  assertNoPageErrors(page);
  assertNoPageErrors(phone);
  await browser.close();
  stop(publisher);
  log(`screenshots in ${out}`);
});
