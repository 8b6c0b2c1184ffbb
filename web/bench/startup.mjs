// Viewer-side benchmark in headless Chromium on loopback, against the real binary:
//   node web/bench/startup.mjs [--runs 5] [--duration 60] [--bin target/release/rivulet]
//        [--renditions source,360p] [--size 1280x720] [--bitrate 3M] [--edge]
//        [--modes hls,webrtc]
// Starts `rivulet serve` and `rivulet publish --test-pattern`, then per run opens
// /watch/NAME?debug=1 in a fresh browser context (through a `rivulet edge` in front of
// the origin with --edge: a cold edge cache for the first viewer) and prints:
//   startup     navigation start → first video frame on screen (goal ≤ 0.5 s)
//   g2g         glass-to-glass latency, the test pattern's time strip read from the
//               frames on screen vs this machine's clock (goal p50 ≤ 1.0 s, p95 ≤ 1.5 s)
//   rebuffers   stalls after the first frame during --duration seconds
// With --modes hls,webrtc each run opens the page in each mode (webrtc: ?mode=webrtc,
// real time over WHEP), side by side on the same server and publisher.
// Figures are printed, never asserted: the machine may be busy.

import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { launchBrowser, newPage, publish, rivuletBinary, startEdge, startServer, until } from '../tests/lib.mjs';

const { values: opt } = parseArgs({
  options: {
    runs: { type: 'string', default: '5' },
    duration: { type: 'string', default: '60' },
    bin: { type: 'string' },
    renditions: { type: 'string', default: 'source,360p' },
    size: { type: 'string', default: '1280x720' },
    bitrate: { type: 'string', default: '3M' },
    edge: { type: 'boolean', default: false },
    modes: { type: 'string', default: 'hls' },
  },
});
const runs = Number(opt.runs);
const duration = Number(opt.duration);
const bin = opt.bin ? resolve(opt.bin) : rivuletBinary();
const NAME = 'bench';
const KEY = 'bench-secret-key-1234';

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}
const sec = (ms) => (Number.isFinite(ms) ? `${(ms / 1000).toFixed(3)} s` : '-');

const modes = opt.modes.split(',');
const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', opt.renditions, '--webrtc-listen', '127.0.0.1:0']);
publish(bin, `${server.rtmp}/live/${KEY}`, { size: opt.size, bitrate: opt.bitrate });
await until('the stream to be playable', async () => {
  const r = await fetch(`${server.http}/live/${NAME}/master.m3u8`);
  return r.ok && (await r.text()).includes('#EXT-X-STREAM-INF');
}, 60_000);
// Let the ladder settle (every rendition with a few segments).
await new Promise((r) => setTimeout(r, 8000));
const edge = opt.edge ? await startEdge(bin, [server.http]) : null;
const viewerBase = edge ? edge.url : server.http;
console.log(`rivulet ${bin}${edge ? ' (viewers through rivulet edge)' : ''}\nrenditions ${opt.renditions}, test pattern ${opt.size} at ${opt.bitrate}, ${runs} runs of ${duration} s`);

const browser = await launchBrowser();
const figures = {};
for (let i = 1; i <= runs; i++) {
  for (const mode of modes) {
    const f = (figures[mode] ||= { startups: [], g2g: [], rebuffers: [] });
    const page = await newPage(browser); // a fresh context: cold cache, a new viewer
    await page.goto(`${viewerBase}/watch/${NAME}?debug=1${mode === 'webrtc' ? '&mode=webrtc' : ''}`);
    await page.waitForFunction(() => window.rivulet && window.rivulet.player.firstFrameAt != null, undefined, { timeout: 60_000 });
    const startup = await page.evaluate(() => window.rivulet.player.firstFrameAt);
    await page.waitForTimeout(duration * 1000);
    const r = await page.evaluate(() => ({
      // Without the first 5 s: the player is still settling on its target latency.
      g2g: window.rivulet.debug ? window.rivulet.debug.samples.filter((_, i) => window.rivulet.debug.sampleTimes[i] > window.rivulet.player.firstFrameAt + 5000) : [],
      reads: window.rivulet.debug ? window.rivulet.debug.reads : null,
      rebuffers: window.rivulet.qoe ? window.rivulet.qoe.totals.rebufferCount : NaN,
      level: window.rivulet.player.level,
      mode: window.rivulet.mode,
    }));
    const settled = r.g2g;
    f.startups.push(startup);
    f.g2g.push(...settled);
    f.rebuffers.push(r.rebuffers);
    console.log(
      `run ${i} ${r.mode}: startup ${sec(startup)}, g2g p50 ${sec(pct(settled, 50))} p95 ${sec(pct(settled, 95))} (${settled.length} frames read, ${r.reads ? r.reads.failed : '-'} unreadable), rebuffers ${r.rebuffers}, rendition ${r.level ? r.level.name : '-'}`,
    );
    await page.context().close();
  }
}
await browser.close();
for (const [mode, f] of Object.entries(figures)) {
  console.log(`--- ${mode}`);
  console.log(`startup (navigation → first frame): p50 ${sec(pct(f.startups, 50))}, max ${sec(Math.max(...f.startups))}  (goal ≤ 0.5 s)`);
  console.log(`glass-to-glass: p50 ${sec(pct(f.g2g, 50))}, p95 ${sec(pct(f.g2g, 95))} over ${f.g2g.length} frames  (goals: LL-HLS ≤ 1.0 s / ≤ 1.5 s; WebRTC p50 ≤ 0.4 s)`);
  console.log(`rebuffers per ${duration} s: ${f.rebuffers.join(', ')}`);
}
process.exit(0);
