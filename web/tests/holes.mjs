// A publisher that drops frames mid-GOP (OBS's "skipped frames", an encoder stamping
// late pictures by the wall clock) plays on without a frozen picture:
//   node web/tests/holes.mjs [path/to/rivulet]
// ffmpeg (not our encoder) leaves out three frames in the middle of every 2 s GOP, with
// their timestamps left as holes. Browsers' MSE takes a decode gap of more than twice a
// frame for a discontinuity and drops every frame after it up to the next keyframe: the
// picture froze for two thirds of every GOP while the sound played. The watch page in
// Chromium must decode (nearly) every frame the source has, in the passthrough rendition
// and in a transcoded one.

import {
  assert, assertNoPageErrors, ffmpeg, launchBrowser, log, newPage, rivuletBinary, run, startServer,
  waitInPage,
} from './lib.mjs';

const NAME = 'holes';
const KEY = 'holes-secret-key-1234';
const FPS = 30;
const GOP = 60;
// Frames 20, 21 and 22 of every GOP are never sent: 57 of 60 pictures, a 133 ms hole.
const KEPT_PER_GOP = GOP - 3;

function ffmpegPublisher(url) {
  return ffmpeg([
    '-re',
    '-f', 'lavfi', '-i', `testsrc2=size=640x360:rate=${FPS}`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    // select keeps each picture's timestamp: the three left out are a hole in time.
    '-vf', `select='not(between(mod(n\\,${GOP})\\,20\\,22))'`, '-fps_mode', 'passthrough',
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', String(GOP), '-keyint_min', String(GOP), '-sc_threshold', '0', '-b:v', '1000k',
    '-c:a', 'aac', '-b:a', '96k', '-f', 'flv', url,
  ]);
}

run('holes', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source,234p']);
  const publisher = ffmpegPublisher(`${server.rtmp}/live/${KEY}`);
  publisher.on('exit', (code) => log(`ffmpeg exited (${code}): ${publisher.output.join('')}`));
  const browser = await launchBrowser();
  try {
    for (const rendition of ['source', '234p']) {
      const page = await newPage(browser);
      await page.goto(`${server.http}/watch/${NAME}`);
      await waitInPage(page, 'playback', () => document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 0, undefined, 90_000);
      const level = await page.evaluate((name) => {
        const h = window.rivulet.hls;
        const index = h.levels.findIndex((l) => (l.url[0] || l.url).includes(`/${name}/`));
        h.currentLevel = index;
        return index;
      }, rendition);
      assert(level >= 0, `no level for ${rendition}`);
      // Past the switch: three GOPs (each with its hole) of the chosen rendition.
      await new Promise((r) => setTimeout(r, 3000));
      const sample = () => page.evaluate(() => {
        const v = document.querySelector('video');
        return { t: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames, height: v.videoHeight };
      });
      const before = await sample();
      await new Promise((r) => setTimeout(r, 6000));
      const after = await sample();
      const played = after.t - before.t;
      const decoded = after.frames - before.frames;
      const made = played * FPS * (KEPT_PER_GOP / GOP);
      log(`${rendition} (${after.height}p): ${played.toFixed(2)} s played, ${decoded} frames decoded of ~${Math.round(made)} the source made`);
      assert(played > 4, `${rendition}: the playhead moved only ${played.toFixed(2)} s in 6 s`);
      // Without the fix about a third were decoded (the frames before each hole).
      assert(decoded >= 0.85 * made, `${rendition}: ${decoded} frames decoded in ${played.toFixed(2)} s, the source made ~${Math.round(made)}: the picture froze after a hole`);
      assertNoPageErrors(page);
      await page.close();
    }
  } finally {
    await browser.close();
  }
});
