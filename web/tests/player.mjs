// The viewer page in headless Chromium against the real binary:
//   node web/tests/player.mjs [path/to/rivulet]
// Offline page → a publisher arrives → it plays by itself (≥ 5 s of media, no fatal
// errors) with every rendition loaded at go-live; the quality menu lists every rendition and a manual pick takes effect; a
// title changed through the API appears without reload; beacons reach analytics; the
// debug overlay reads the time strip; the page fits a 375 px screen. Screenshots go
// to $CARGO_TARGET_DIR/web-artifacts/.

import { join } from 'node:path';

import {
  api, artifactsDir, assert, assertNoPageErrors, launchBrowser, log, newPage, publish,
  rivuletBinary, run, startServer, until, waitInPage,
} from './lib.mjs';

const NAME = 'webtest';
const KEY = 'webtest-secret-key-1234';

run('player', async () => {
  const bin = rivuletBinary();
  const out = artifactsDir();
  // The passthrough rendition plus one transcoded rung: a real choice for the menu
  // without crowding a 2-core machine with encoders.
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source,234p']);
  log(`server ${server.http} ${server.rtmp}`);
  const browser = await launchBrowser();
  const page = await newPage(browser);
  await page.goto(`${server.http}/watch/${NAME}?debug=1`);
  await page.evaluate(() => {
    window.__marker = 'no reload';
    window.__errors = [];
    document.querySelector('video').addEventListener('error', (e) => window.__errors.push(`video error ${e.target.error?.message}`));
  });

  // 1. Offline: says so, and waits.
  await waitInPage(page, 'the offline state', () => document.body.dataset.state === 'offline');
  const offlineText = await page.textContent('#status-text');
  assert(/offline/i.test(offlineText) && /starts playing/i.test(offlineText), `offline message: ${offlineText}`);
  await page.screenshot({ path: join(out, 'watch-offline.png') });

  // 2. A publisher arrives: the page starts by itself.
  const publisher = publish(bin, `${server.rtmp}/live/${KEY}`);
  await waitInPage(page, 'playback to start by itself', () => document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 0, undefined, 90_000);
  await page.evaluate(() => {
    window.rivulet.hls.on('hlsError', (_, d) => {
      if (d.fatal) window.__errors.push(`fatal hls.js error ${d.type}/${d.details}`);
    });
  });
  // The multivariant playlist it loaded the moment the stream went live lists the
  // whole ladder (source and 234p), not just the first rendition that had media.
  const levelsAtGoLive = await page.evaluate(() => window.rivulet.hls.levels.map((l) => l.height));
  assert(levelsAtGoLive.length === 2, `hls.js saw every rendition at go-live, not ${JSON.stringify(levelsAtGoLive)}`);
  const t0 = await page.evaluate(() => document.querySelector('video').currentTime);
  await waitInPage(page, '5 s of playback', (t) => document.querySelector('video').currentTime >= t + 5, t0, 60_000);
  let errors = await page.evaluate(() => window.__errors);
  assert(errors.length === 0, `errors while playing: ${errors.join('; ')}`);
  log(`played from ${t0.toFixed(2)} s to at least ${(t0 + 5).toFixed(2)} s`);

  // 3. The quality menu: every rendition of the multivariant playlist, and Auto.
  const master = await (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).text();
  const variants = master.split('\n').filter((l) => l.startsWith('#EXT-X-STREAM-INF')).map((l) => Number(/RESOLUTION=\d+x(\d+)/.exec(l)?.[1]));
  await waitInPage(page, 'the quality menu', (n) => document.querySelectorAll('#quality option').length === n + 1, variants.length, 30_000);
  const options = await page.$$eval('#quality option', (os) => os.map((o) => ({ value: o.value, label: o.textContent })));
  log('quality menu:', options.map((o) => o.label).join(' | '));
  assert(variants.length >= 2, `two renditions expected in\n${master}`);
  assert(/^Auto/.test(options[0].label) && options[0].value === '-1', 'Auto comes first');
  for (const h of variants) {
    assert(options.some((o) => o.label.startsWith(`${h}p`) && /bit\/s/.test(o.label)), `a menu entry for ${h}p with its bitrate`);
  }
  // Pick the rendition not playing now; it must take effect.
  const current = await page.evaluate(() => window.rivulet.hls.currentLevel);
  const levels = await page.evaluate(() => window.rivulet.player.levels);
  const target = levels.find((l) => l.index !== current);
  await page.focus('#quality');
  await page.selectOption('#quality', String(target.index));
  await waitInPage(page, `rendition ${target.height}p to play`, (l) => window.rivulet.hls.currentLevel === l.index && document.querySelector('video').videoHeight === l.height && !document.querySelector('video').paused, target, 60_000);
  const t1 = await page.evaluate(() => document.querySelector('video').currentTime);
  await waitInPage(page, 'playback after the switch', (t) => document.querySelector('video').currentTime > t + 1, t1, 30_000);
  log(`switched from level ${current} to ${target.name} (${target.height}p); video height follows`);
  // And back to Auto.
  await page.selectOption('#quality', '-1');
  assert(await page.evaluate(() => window.rivulet.player.autoLevel && window.rivulet.hls.autoLevelEnabled), 'Auto re-enables ABR');

  // 4. A title changed through the API appears without a reload, as text: markup in
  // it (the stream's owner controls it) is shown, never run.
  const title = `<img src=x onerror="window.__xss=1">Changed ${Date.now()}`;
  const description = '<script>window.__xss=2</script>A new <b>description</b>';
  const patched = await api(server, 'PATCH', `/api/streams/${NAME}`, { title, description, tags: ['news', 'Live'] });
  assert(patched.status === 200, `PATCH answered ${patched.status} ${JSON.stringify(patched.json)}`);
  await waitInPage(page, 'the new title', (t) => document.getElementById('title').textContent === t, title, 30_000);
  assert((await page.textContent('#description')) === description, 'the description follows');
  assert(await page.evaluate(() => window.__xss === undefined && !document.querySelector('#title *, #description *')), 'markup in the title and description stays text');
  assert((await page.$$eval('#tags li', (l) => l.map((x) => x.textContent))).join(',') === 'live,news', 'the tags follow');
  assert((await page.evaluate(() => window.__marker)) === 'no reload', 'the page did not reload');
  assert((await page.textContent('#badge')) === 'live', 'the live badge');

  // 5. Beacons arrive at the analytics server (the first is sent at the first frame).
  const sessionId = await page.evaluate(() => window.rivulet.sessionId);
  const summary = await until('a beacon in the analytics summary', async () => {
    const r = await fetch(`${server.http}/api/analytics/streams/${NAME}/summary`);
    const s = await r.json();
    return s.startups >= 1 && s.startup_p50_ms !== null ? s : null;
  }, 60_000, 1000);
  log(`analytics: startups ${summary.startups}, startup p50 ${summary.startup_p50_ms} ms, viewers now ${summary.concurrent_viewers}, latency ${summary.avg_live_latency_ms} ms`);
  assert(summary.concurrent_viewers >= 1, 'the viewer is counted');
  assert(await page.evaluate(() => window.rivulet.qoe.failed === 0), 'no beacon was refused');
  // CMCD: the media requests carry the same session id (hls.js `cmcd` config).
  assert(sessionId.length === 32, `session id ${sessionId}`);
  await waitInPage(page, 'the viewer count', () => /\d+ watching/.test(document.getElementById('viewers').textContent), undefined, 30_000);

  // 6. The debug overlay decodes the time strip of the real video.
  await waitInPage(page, 'a glass-to-glass sample from the time strip', () => window.rivulet.debug && window.rivulet.debug.samples.length >= 3, undefined, 30_000);
  const g2g = await page.evaluate(() => window.rivulet.debug.samples.slice(-5));
  log(`glass-to-glass (ms): ${g2g.join(', ')}`);
  assert(g2g.every((ms) => ms > 0 && ms < 30_000), `plausible glass-to-glass latencies: ${g2g}`);

  // 7. Controls: unmute is offered while muted, and works from the keyboard.
  assert(await page.isVisible('#unmute'), 'an unmute control while muted');
  await page.focus('#unmute');
  await page.keyboard.press('Enter');
  assert(await page.evaluate(() => !document.querySelector('video').muted), 'Enter on unmute unmutes');
  assert(!(await page.isVisible('#unmute')), 'the unmute prompt goes away');
  await page.keyboard.press('m');
  assert(await page.evaluate(() => document.querySelector('video').muted), '"m" mutes again');
  await page.waitForTimeout(1500); // let the readouts refresh before the picture
  await page.screenshot({ path: join(out, 'watch.png') });

  // The page's Content-Security-Policy is enforced: a script written into the page
  // (as an injection would) does not run. (On a page of its own: the refusal is
  // logged as an error.) Nothing the page itself does was refused (assertNoPageErrors).
  const probe = await newPage(browser);
  const csp = (await probe.goto(`${server.http}/watch/${NAME}`)).headers()['content-security-policy'] || '';
  assert(/script-src 'self' 'sha256-[^']+';/.test(csp) && !/unsafe/.test(csp), `the watch page's policy: ${csp}`);
  const ran = await probe.evaluate(() => {
    const s = document.createElement('script');
    s.textContent = 'window.__injected = true';
    document.head.appendChild(s);
    return window.__injected === true;
  });
  assert(!ran, 'an injected inline script is refused');
  // ...and reported, as any refusal of the pages' own doing would be (newPage).
  await until('the refusal in the console', async () => probe.pageErrors.some((e) => /Content Security Policy/.test(e)), 5000, 100);
  await probe.context().close();

  // 8. A phone-sized screen: nothing wider than the screen, controls reachable.
  const phone = await newPage(browser, { viewport: { width: 375, height: 740 }, isMobile: true, hasTouch: true });
  await phone.goto(`${server.http}/watch/${NAME}`);
  await waitInPage(phone, 'playback on a phone-sized page', () => document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 1, undefined, 60_000);
  // A page opened on a live stream loads the master playlist once, with the page
  // (the preload in its head), not after its scripts; and it starts at the first part
  // it buffered, the segment's start (see Player.showFirstPart).
  const start = await phone.evaluate(() => ({
    masters: performance.getEntriesByType('resource').filter((e) => /\/master\.m3u8$/.test(new URL(e.name).pathname)).map((e) => e.initiatorType),
    firstFrameAt: window.rivulet.player.firstFrameAt,
    firstPartStart: window.rivulet.player.firstPartStart,
    // Off only when the page's round trip is long (not on loopback, unless very busy).
    fastStart: window.rivulet.player.fastStart,
  }));
  assert(start.masters.length === 1 && start.masters[0] === 'link', `the master playlist loaded once, by the preload: ${JSON.stringify(start.masters)}`);
  assert(start.firstFrameAt !== null && (!start.fastStart || Number.isFinite(start.firstPartStart)), `the first frame, from the first part buffered: ${JSON.stringify(start)}`);
  log(`phone page: ${JSON.stringify(start)}`);
  const width = await phone.evaluate(() => document.documentElement.scrollWidth);
  assert(width <= 375, `the page is ${width} px wide at 375 px`);
  for (const id of ['play', 'mute', 'quality', 'fullscreen']) {
    const box = await phone.locator(`#${id}`).boundingBox();
    assert(box && box.x >= 0 && box.x + box.width <= 375, `#${id} is on screen: ${JSON.stringify(box)}`);
  }
  await phone.waitForTimeout(1000);
  await phone.screenshot({ path: join(out, 'watch-375.png') });

  errors = await page.evaluate(() => window.__errors);
  assert(errors.length === 0, `errors: ${errors.join('; ')}`);
  assertNoPageErrors(page);
  assertNoPageErrors(phone);
  await browser.close();
  assert(publisher.exitCode === null, `the publisher is still running: ${publisher.output.join('\n')}`);
  log(`screenshots in ${out}`);
});
