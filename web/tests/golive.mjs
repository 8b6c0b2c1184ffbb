// A viewer waiting on /watch/NAME through a `rivulet edge` when an ffmpeg publisher
// goes live gets the whole ladder (issue 13 item 4):
//   node web/tests/golive.mjs [path/to/rivulet]
// The page is open (offline) before the publish; once it plays by itself, hls.js has
// every rendition of the ladder as a level, and forcing each other level plays frames
// of that level's height. Every multivariant playlist the page received (through the
// edge) lists the whole ladder. Once the stream has ended, a new viewer's page says
// offline (the page no longer reads a media playlist before attaching hls.js: the first
// level hls.js loads tells it the stream ended).

import {
  assert, assertNoPageErrors, ffmpeg, launchBrowser, log, newPage, rivuletBinary, run, startEdge,
  startServer, stop, until, waitInPage,
} from './lib.mjs';

const NAME = 'golive';
const KEY = 'golive-secret-key-1234';
// 480p source: the passthrough and two transcoded rungs under it.
const RENDITIONS = ['source', '360p', '234p'];
const HEIGHTS = [480, 360, 234];

/** An ordinary ffmpeg publisher (not our encoder): libx264 veryfast, zerolatency, 2 s GOP. */
function ffmpegPublisher(url) {
  return ffmpeg([
    '-re',
    '-f', 'lavfi', '-i', 'testsrc2=size=854x480:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', '60', '-b:v', '1500k', '-maxrate', '1500k', '-bufsize', '1500k',
    '-c:a', 'aac', '-b:a', '128k', '-f', 'flv', url,
  ]);
}

run('golive', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', RENDITIONS.join(','), '--grace-period-ms', '1000']);
  const edge = await startEdge(bin, [server.http]);
  log(`origin ${server.http}, edge ${edge.url}`);

  const browser = await launchBrowser();
  const page = await newPage(browser);
  // Every multivariant playlist the page got through the edge, with its status.
  const masters = [];
  page.on('response', async (r) => {
    if (!new URL(r.url()).pathname.endsWith('/master.m3u8')) return;
    const entry = { status: r.status(), body: null };
    masters.push(entry);
    if (r.status() === 200) entry.body = await r.text().catch(() => null);
  });
  await page.goto(`${edge.url}/watch/${NAME}`);
  await page.evaluate(() => {
    window.__errors = [];
  });
  await waitInPage(page, 'the offline state', () => document.body.dataset.state === 'offline');

  const publisher = ffmpegPublisher(`${server.rtmp}/live/${KEY}`);
  try {
    await waitInPage(page, 'playback to start by itself', () => document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 0, undefined, 90_000);
    await page.evaluate(() => {
      window.rivulet.hls.on('hlsError', (_, d) => {
        if (d.fatal) window.__errors.push(`fatal hls.js error ${d.type}/${d.details}`);
      });
    });
    // The levels hls.js loaded the moment the stream went live: the whole ladder.
    const levels = await page.evaluate(() => window.rivulet.hls.levels.map((l, index) => ({ index, height: l.height, bitrate: l.bitrate })));
    log(`levels at go-live: ${levels.map((l) => `${l.height}p@${l.bitrate}`).join(', ')}`);
    assert(levels.length === RENDITIONS.length, `hls.js saw ${levels.length} levels at go-live, not ${RENDITIONS.length}: ${JSON.stringify(levels)}`);
    assert(JSON.stringify(levels.map((l) => l.height).sort((a, b) => b - a)) === JSON.stringify(HEIGHTS), `level heights ${JSON.stringify(levels)}`);
    const byHeight = [...levels].sort((a, b) => a.height - b.height);
    assert(byHeight.every((l, i) => i === 0 || l.bitrate > byHeight[i - 1].bitrate), `BANDWIDTH grows with the picture: ${JSON.stringify(byHeight)}`);

    // Switch to every other level, and back: frames of that level's height play.
    // Every level other than the one playing, then back to the first visited.
    const start = await page.evaluate(() => window.rivulet.hls.currentLevel);
    const others = levels.filter((l) => l.index !== start);
    const order = [...others, levels.find((l) => l.index === start) || others[0]];
    for (const target of order) {
      await page.evaluate((i) => {
        window.rivulet.hls.currentLevel = i;
      }, target.index);
      await waitInPage(page, `level ${target.index} (${target.height}p) on screen`, (l) => window.rivulet.hls.currentLevel === l.index && document.querySelector('video').videoHeight === l.height, target, 60_000);
      const t = await page.evaluate(() => document.querySelector('video').currentTime);
      await waitInPage(page, `playback at ${target.height}p`, (t0) => document.querySelector('video').currentTime > t0 + 1, t, 30_000);
      log(`level ${target.index}: ${target.height}p plays`);
    }

    const ok = masters.filter((m) => m.status === 200);
    assert(ok.length >= 1, `the page got a multivariant playlist: ${JSON.stringify(masters.map((m) => m.status))}`);
    for (const m of ok) {
      if (m.body === null) continue;
      const variants = m.body.split('\n').filter((l) => l.startsWith('#EXT-X-STREAM-INF')).length;
      assert(variants === RENDITIONS.length, `every multivariant playlist through the edge is whole:\n${m.body}`);
    }
    log(`multivariant answers through the edge: ${masters.map((m) => m.status).join(' ')}`);
    const errors = await page.evaluate(() => window.__errors);
    assert(errors.length === 0, `errors: ${errors.join('; ')}`);
    assertNoPageErrors(page);
    assert(publisher.exitCode === null, `the publisher is still running: ${publisher.output.join('')}`);

    // The stream ends: a viewer who opens the page now is told it is offline.
    stop(publisher);
    await until('the playlist to end', async () => (await (await fetch(`${server.http}/live/${NAME}/234p/index.m3u8`)).text()).includes('#EXT-X-ENDLIST'), 30_000);
    const late = await newPage(browser);
    const states = [];
    await late.exposeFunction('__state', (s) => states.push(s));
    await late.goto(`${edge.url}/watch/${NAME}`);
    await late.evaluate(() => window.rivulet.player.addEventListener('state', (e) => window.__state(e.detail.state)));
    await waitInPage(late, 'the ended stream to show as offline', () => document.body.dataset.state === 'offline', undefined, 30_000);
    assert(!states.includes('playing'), `an ended stream does not play: ${states.join(' ')}`);
    assertNoPageErrors(late);
  } finally {
    stop(publisher);
    await browser.close();
  }
});
