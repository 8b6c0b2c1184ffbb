// Rewinding a recorded live stream in the viewer page, in headless Chromium against
// the real binary: once the DVR window holds 30 s the seek bar appears; dragging it
// 20 s back plays from the DVR playlist about 20 s behind live (frames decode); a
// further 10 s back moves currentTime back; "Live" returns to the low-latency
// playlist within a few seconds of the live edge.
//   node web/tests/dvr.mjs [path/to/rivulet]

import { join } from 'node:path';

import {
  artifactsDir, assert, assertNoPageErrors, launchBrowser, log, newPage, publish,
  rivuletBinary, run, startServer, until, waitInPage,
} from './lib.mjs';

const NAME = 'rewind';
const KEY = 'rewind-web-key-0123';

/** Sets the seek bar as a viewer dragging it would, to `behind` seconds behind live. */
async function dragSeekBar(page, behind) {
  await page.evaluate((b) => {
    const seek = document.getElementById('seek');
    seek.value = String(-b);
    seek.dispatchEvent(new Event('input', { bubbles: true }));
    seek.dispatchEvent(new Event('change', { bubbles: true }));
  }, behind);
}

run('dvr', async () => {
  const bin = rivuletBinary();
  const out = artifactsDir();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source', '--record-default']);
  publish(bin, `${server.rtmp}/live/${KEY}`, { size: '320x180', bitrate: '500k' });
  const dvrPlaylist = async () => {
    const r = await fetch(`${server.http}/live/${NAME}/source/dvr.m3u8`);
    if (!r.ok) return 0;
    return (await r.text()).split('\n').filter((l) => l.startsWith('#EXTINF:')).reduce((s, l) => s + parseFloat(l.slice(8)), 0);
  };
  await until('30 s in the DVR window', async () => (await dvrPlaylist()) >= 30, 90_000, 1000);

  const browser = await launchBrowser();
  const page = await newPage(browser);
  const sources = [];
  page.on('request', (r) => {
    if (r.url().includes('.m3u8')) sources.push(new URL(r.url()).pathname);
  });
  await page.goto(`${server.http}/watch/${NAME}`);
  await waitInPage(page, 'live playback', () => document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 1, undefined, 60_000);
  await waitInPage(page, 'the seek bar', () => !document.getElementById('seek-bar').hidden && Number(document.getElementById('seek').min) <= -30, undefined, 30_000);
  const atLive = await page.evaluate(() => window.rivulet.player.latencyMs);
  log(`live latency ${atLive} ms`);
  assert(atLive !== null && atLive < 8000, `starts at the live edge: ${atLive} ms`);

  // 20 s back: the DVR playlist, about 20 s behind live, frames decoding.
  await dragSeekBar(page, 20);
  await waitInPage(page, 'DVR playback 20 s behind', () => {
    const p = window.rivulet.player;
    return p.mode === 'dvr' && document.body.dataset.state === 'playing' && p.latencyMs !== null && p.latencyMs > 15_000 && p.latencyMs < 28_000;
  }, undefined, 45_000);
  assert(sources.some((p) => p.endsWith('/dvr.m3u8')), 'the player loaded the DVR playlist');
  const frames0 = await page.evaluate(() => document.querySelector('video').getVideoPlaybackQuality().totalVideoFrames);
  const t0 = await page.evaluate(() => document.querySelector('video').currentTime);
  await waitInPage(page, 'frames to decode in the window', ([f, t]) => {
    const v = document.querySelector('video');
    return v.getVideoPlaybackQuality().totalVideoFrames > f + 30 && v.currentTime > t + 1;
  }, [frames0, t0], 30_000);
  const liveButton = await page.isVisible('#live');
  assert(liveButton, 'the Live button shows while rewound');
  await page.screenshot({ path: join(out, 'watch-dvr.png') });

  // 10 s further back: currentTime moves back.
  const before = await page.evaluate(() => document.querySelector('video').currentTime);
  await dragSeekBar(page, 30);
  await waitInPage(page, 'currentTime to move back', (b) => {
    const p = window.rivulet.player;
    return document.querySelector('video').currentTime < b - 5 && p.latencyMs > 25_000;
  }, before, 30_000);
  log(`seeked from ${before.toFixed(1)} s back to ${(await page.evaluate(() => document.querySelector('video').currentTime)).toFixed(1)} s`);

  // "Live": the low-latency playlist again, within a few seconds of the edge.
  await page.click('#live');
  await waitInPage(page, 'back at the live edge', () => {
    const p = window.rivulet.player;
    return p.mode === 'live' && document.body.dataset.state === 'playing' && p.latencyMs !== null && p.latencyMs < 6000;
  }, undefined, 45_000);
  const back = await page.evaluate(() => window.rivulet.player.latencyMs);
  log(`back live at ${back} ms`);
  await waitInPage(page, 'the Live button to hide at the edge', () => document.getElementById('live').hidden, undefined, 10_000);
  assertNoPageErrors(page);
  await browser.close();
});
