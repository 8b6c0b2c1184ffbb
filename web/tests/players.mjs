// Players we did not write, in headless Chromium: Shaka Player and video.js (VHS), from
// npm, play a live LL-HLS master playlist for a while and report what they did:
//   node web/tests/players.mjs --player shaka|videojs --url http://HOST/live/NAME/master.m3u8 --seconds 20
// The page is served from another origin (http://localhost:7/) so that CORS is part of
// the test. Prints one line `RESULT {json}` and exits 0 (the Rust test asserts on it),
// or prints the failure and exits 1 if the player never started.
//
// RESULT: currentTime at start and end, the playhead's advance, frames decoded, the
// largest videoHeight, the heights of the variants the player had active, the player's
// errors, failed responses, and the playlist requests: per rendition, how many, and the
// most times one exact URL (with its _HLS_msn/_HLS_part) was asked for.
// PLAYERS_DEBUG=1 prints each playlist answer (its last lines, Cache-Control, Date);
// (and video.js's VHS debug log: its rendition choices); PLAYERS_NOCACHE=1 turns the browser's HTTP cache off (to tell its answers apart).

import { createServer } from 'node:http';
import { createRequire } from 'node:module';

import { launchBrowser, log, newPage, run, waitInPage } from './lib.mjs';

const require = createRequire(import.meta.url);
const args = { player: 'shaka', url: null, seconds: 20 };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
const seconds = Number(args.seconds);

// A page embedding video.js loads its style sheet too: without it the <video> keeps
// its default 300x150 box inside the player, which VHS takes for the player's size.
const styles = { videojs: [require.resolve('video.js/dist/video-js.min.css')] };
const scripts = {
  shaka: [require.resolve('shaka-player/dist/shaka-player.compiled.js')],
  videojs: [require.resolve('video.js/dist/video.min.js')],
};

// Runs in the page: starts the player on `url`, and keeps window.__p up to date.
async function startPlayer({ player, url, debug }) {
  const p = { errors: [], heights: [], started: false };
  window.__p = p;
  const video = document.querySelector('video');
  const note = (h) => {
    if (h && !p.heights.includes(h)) p.heights.push(h);
  };
  if (player === 'shaka') {
    shaka.polyfill.installAll();
    const s = new shaka.Player();
    await s.attach(video);
    s.configure({ streaming: { lowLatencyMode: true } });
    s.addEventListener('error', (e) => p.errors.push(`shaka ${e.detail.code} ${e.detail.message || ''}`));
    setInterval(() => {
      const t = s.getVariantTracks().find((v) => v.active);
      if (t) note(t.height);
    }, 200);
    window.__player = s;
    s.load(url).catch((e) => p.errors.push(`shaka load ${e.code} ${JSON.stringify(e.data || [])}`));
  } else {
    if (debug) videojs.log.level('debug');
    // A player of the page's size (640x360). VHS (limitRenditionByPlayerDimensions, on
    // by default) picks the smallest rendition larger than the player, and, once the
    // player has the video's own size, the rendition of exactly that size: with a
    // 300x150 player it kept the lowest rung whatever the bandwidth.
    // As a page embedding video.js marks it: its style sheet sizes the <video> by it.
    video.classList.add('video-js');
    const v = videojs(video, { width: 640, height: 360, autoplay: 'muted', html5: { vhs: { overrideNative: true, llhls: true } } });
    v.on('error', () => p.errors.push(`video.js ${JSON.stringify(v.error())}`));
    setInterval(() => {
      const vhs = v.tech(true).vhs;
      const media = vhs && vhs.playlists && vhs.playlists.media();
      const res = media && media.attributes && media.attributes.RESOLUTION;
      if (res) note(res.height);
    }, 200);
    window.__player = v;
    v.src({ src: url, type: 'application/x-mpegURL' });
  }
  video.muted = true;
  video.play().catch((e) => p.errors.push(`play(): ${e}`));
}

run(`players ${args.player}`, async () => {
  if (!scripts[args.player]) throw new Error(`--player must be shaka or videojs, not ${args.player}`);
  if (!args.url) throw new Error('--url MASTER is required');
  const browser = await launchBrowser();
  const page = await newPage(browser);
  const requests = [];
  const failed = [];
  // A real server, not a routed page: Chromium keeps pages without an address (as
  // routed ones are) off loopback.
  const site = createServer((_, res) => {
    res.setHeader('content-type', 'text/html');
    res.end('<!doctype html><video id="v" muted playsinline width="640" height="360"></video>');
  });
  await new Promise((r) => site.listen(0, '127.0.0.1', r));
  const siteUrl = `http://127.0.0.1:${site.address().port}/`;
  page.on('request', (r) => {
    if (r.url().startsWith(siteUrl)) return;
    requests.push(r.url());
  });
  page.on('response', async (r) => {
    if (process.env.PLAYERS_DEBUG && r.url().includes('.m3u8')) {
      const b = await r.text().catch(() => '');
      const lines = b.split('\n');
      console.error(`DBG ${Date.now() % 100000} ${r.status()} ${r.url().split('/').slice(-2).join('/')} | ${lines.filter((l) => /MEDIA-SEQUENCE|SKIP:|PRELOAD|^seg-/.test(l)).slice(-4).join(' ')} | cc=${r.headers()['cache-control']} xc=${r.headers()['x-cache']} date=${r.headers().date}`);
    }
    if (r.status() >= 400) failed.push(`${r.status()} ${r.url()}`);
  });
  page.on('requestfailed', (r) => {
    // A player that gives up a request on purpose (a newer playlist, a switch) aborts it.
    const why = r.failure() ? r.failure().errorText : '';
    if (!/ERR_ABORTED/.test(why)) failed.push(`${why} ${r.url()}`);
  });
  if (process.env.PLAYERS_NOCACHE) {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
  }
  await page.goto(siteUrl);
  for (const path of scripts[args.player]) await page.addScriptTag({ path });
  for (const path of styles[args.player] || []) await page.addStyleTag({ path });
  if (process.env.PLAYERS_DEBUG) page.on('console', (m) => /choosing|bandwidth/i.test(m.text()) && console.error(`PAGE ${m.text().slice(0, 400)}`));
  await page.evaluate(startPlayer, { player: args.player, url: args.url, debug: !!process.env.PLAYERS_DEBUG });
  try {
    await waitInPage(page, `${args.player} to play`, () => document.querySelector('video').currentTime > 1, undefined, 60_000);
  } catch (e) {
    const errors = await page.evaluate(() => window.__p.errors).catch(() => []);
    throw new Error(`${e.message}\nplayer errors: ${errors.join('\n')}\nfailed responses: ${failed.join('\n')}`);
  }
  const sample = () =>
    page.evaluate(() => {
      const v = document.querySelector('video');
      const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : {};
      return { t: v.currentTime, frames: q.totalVideoFrames || 0, height: v.videoHeight, errors: window.__p.errors, heights: window.__p.heights };
    });
  const first = await sample();
  const since = requests.length;
  log(`${args.player} plays at ${first.t.toFixed(2)} s; watching ${seconds} s`);
  let maxHeight = first.height;
  for (let i = 0; i < seconds * 2; i++) {
    await new Promise((r) => setTimeout(r, 500));
    maxHeight = Math.max(maxHeight, (await sample()).height);
  }
  const last = await sample();
  // Playlist requests while watching (not the start), per rendition.
  const playlists = {};
  for (const u of requests.slice(since)) {
    const url = new URL(u);
    if (!url.pathname.endsWith('.m3u8')) continue;
    const name = url.pathname.split('/').slice(-2).join('/');
    const entry = (playlists[name] ||= { requests: 0, same: {} });
    entry.requests += 1;
    entry.same[u] = (entry.same[u] || 0) + 1;
  }
  for (const e of Object.values(playlists)) {
    e.maxSameUrl = Math.max(...Object.values(e.same));
    e.mostRepeated = Object.entries(e.same).sort((a, b) => b[1] - a[1])[0][0];
    delete e.same;
  }
  const result = {
    player: args.player,
    t0: first.t,
    t1: last.t,
    advanced: last.t - first.t,
    seconds,
    frames: last.frames,
    maxHeight,
    heights: last.heights,
    errors: last.errors,
    failed,
    playlists,
  };
  console.log(`RESULT ${JSON.stringify(result)}`);
  await browser.close();
  site.close();
});
