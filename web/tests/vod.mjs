// A finished recording plays in hls.js in headless Chromium, against the real binary:
// `rivulet publish` streams ~8 s to `rivulet serve` recording it; when the stream
// ends, the recording's `/vod/ID/master.m3u8` (ENDLIST, PLAYLIST-TYPE VOD) plays in
// hls.js to its end: a finite duration about the recording's, the recorded frames
// decoded (counted by ffprobe), no fatal hls.js error, and the poster loads as an image.
//   node web/tests/vod.mjs [path/to/rivulet]

import {
  api, assert, assertNoPageErrors, ffprobe, launchBrowser, log, newPage, publish, rivuletBinary, run,
  startServer, stop, until, waitInPage,
} from './lib.mjs';

const NAME = 'vodweb';
const KEY = 'vod-web-key-0123';

run('vod', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, [
    '--stream', `${NAME}=${KEY}`, '--renditions', 'source', '--record-default', '--grace-period-ms', '1000',
  ]);
  const publisher = publish(bin, `${server.rtmp}/live/${KEY}`, { size: '320x180', bitrate: '500k' });
  await until('four complete segments', async () => {
    const r = await fetch(`${server.http}/live/${NAME}/source/index.m3u8`);
    return r.ok && ((await r.text()).match(/#EXTINF:/g) || []).length >= 4;
  }, 60_000, 500);
  stop(publisher);
  let recording = null;
  await until('the recording to be listed', async () => {
    const r = await api(server, 'GET', '/api/recordings');
    recording = r.status === 200 && r.json.length > 0 ? r.json[0] : null;
    return recording !== null;
  }, 60_000, 500);
  log(`recording ${recording.id}: ${recording.duration_ms} ms`);

  const browser = await launchBrowser();
  const page = await newPage(browser);
  // A page of this server that has hls.js (the stream itself is offline now).
  await page.goto(`${server.http}/watch/${NAME}`);
  await page.evaluate(async (src) => {
    const script = document.querySelector('script[type="module"][src*="/assets/"]');
    const { default: Hls } = await import(new URL('vendor/hls.min.mjs', script.src).href);
    const video = document.createElement('video');
    video.muted = true;
    document.body.append(video);
    window.vod = { video, fatal: [], events: [] };
    const hls = new Hls();
    const t0 = performance.now();
    const note = (what) => window.vod.events.length < 60 && window.vod.events.push(`${Math.round(performance.now() - t0)} ${what}`);
    for (const e of ['MEDIA_ATTACHED', 'MANIFEST_PARSED', 'LEVEL_LOADED', 'FRAG_BUFFERED', 'BUFFER_EOS']) {
      hls.on(Hls.Events[e], (_, data) => note(`${e}${data?.frag ? ` ${data.frag.sn}` : ''}`));
    }
    for (const e of ['play', 'playing', 'waiting', 'stalled', 'pause', 'ended', 'error']) {
      video.addEventListener(e, () => note(`video ${e}`));
    }
    hls.on(Hls.Events.ERROR, (_, data) => {
      note(`ERROR ${data.type} ${data.details} fatal=${data.fatal}`);
      if (data.fatal) window.vod.fatal.push(`${data.type}: ${data.details}`);
    });
    const ranges = (r) => Array.from({ length: r.length }, (_, i) => `${r.start(i).toFixed(2)}-${r.end(i).toFixed(2)}`).join(',');
    window.diagnose = () => ({
      readyState: video.readyState, networkState: video.networkState, paused: video.paused,
      currentTime: video.currentTime, buffered: ranges(video.buffered), error: video.error?.message,
      events: window.vod.events,
    });
    hls.loadSource(src);
    hls.attachMedia(video);
    video.play().catch(() => {});
  }, `/vod/${recording.id}/master.m3u8`);
  try {
    await waitInPage(page, 'the VOD to play to its end', () => window.vod.video.ended || window.vod.fatal.length > 0, undefined, 60_000);
  } catch (e) {
    // What hls.js was given, for the failure's account.
    const master = await (await fetch(`${server.http}/vod/${recording.id}/master.m3u8`)).text();
    log(`master playlist:\n${master}`);
    for (const uri of master.split('\n').filter((l) => l && !l.startsWith('#'))) {
      log(`${uri}:\n${await (await fetch(`${server.http}/vod/${recording.id}/${uri}`)).text()}`);
    }
    throw e;
  }
  const seen = await page.evaluate(() => ({
    duration: window.vod.video.duration,
    time: window.vod.video.currentTime,
    frames: window.vod.video.getVideoPlaybackQuality().totalVideoFrames,
    fatal: window.vod.fatal,
  }));
  log(`played ${seen.time.toFixed(2)} s of ${seen.duration.toFixed(2)} s, ${seen.frames} frames`);
  assert(seen.fatal.length === 0, `no fatal hls.js error: ${seen.fatal.join(', ')}`);
  assert(Number.isFinite(seen.duration), `a VOD has a finite duration: ${seen.duration}`);
  assert(Math.abs(seen.duration * 1000 - recording.duration_ms) < 1500, `duration ${seen.duration} s vs the recording's ${recording.duration_ms} ms`);
  // Judged against the frames the recording holds: on a loaded machine the publisher
  // drops frames it cannot encode in time, so 30 fps × duration is not what was kept.
  const master = `${server.http}/vod/${recording.id}/master.m3u8`;
  const probe = ffprobe(['-select_streams', 'v:0', '-count_packets', '-show_entries', 'stream=nb_read_packets'], master);
  const recorded = Number(probe.streams[0].nb_read_packets);
  log(`the recording holds ${recorded} video frames`);
  assert(recorded >= 10 * (recording.duration_ms / 1000), `the recording holds a moving picture: ${recorded} frames in ${recording.duration_ms} ms`);
  assert(seen.frames >= recorded * 0.95, `${seen.frames} frames decoded of the ${recorded} recorded`);

  if (recording.poster) {
    const poster = await page.evaluate(async (src) => {
      const img = new Image();
      img.src = src;
      await img.decode();
      return { w: img.naturalWidth, h: img.naturalHeight };
    }, recording.poster);
    log(`poster ${poster.w}x${poster.h}`);
    assert(poster.w === 320 && poster.h === 180, `the poster is a 320x180 picture: ${poster.w}x${poster.h}`);
  }
  assertNoPageErrors(page);
  await browser.close();
});
