// The latency budget (issue 13 item 1), measured, not estimated:
//   node web/bench/latency.mjs [--bin target/release/rivulet] [--duration 45]
//        [--renditions source,360p,234p] [--part-target-ms N]
// (`rivulet-bench latency` runs this.) An external ffmpeg publisher (libx264 veryfast,
// zerolatency, 2 s GOP, 1.5 Mbit/s, 640x360, 30 fps) draws the wall clock into every
// picture twice: as text (drawtext, for a person) and as the machine-readable time
// strip the watch page's debug overlay reads (web/src/timestrip.js: the same cells,
// drawn by ffmpeg's geq filter from the frame's wall-clock time). `rivulet serve` runs
// the ladder, `rivulet edge` sits in front of it, and hls.js in headless Chromium plays
// /watch/NAME through the edge. Stages, each from its own timestamps:
//   capture → RTMP arrival       strip time of the frame on screen vs hls.js's
//                                playingDate (PROGRAM-DATE-TIME: the ingest wall clock)
//   arrival → part servable      per rendition: a blocking reload for the hinted part at
//     at the origin              the origin answers at t_o; the part ends (in the
//                                ingest clock) at its segment's PDT + its parts'
//                                durations; t_o − that end (transcoder + packager)
//   origin → edge                the same blocking reload at the edge, t_e − t_o
//   edge → on screen             arrival → on screen minus the above (the player:
//                                hold-back behind the newest part, fetch, decode)
// and glass to glass (strip vs this machine's clock). Prints figures, asserts nothing.

import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { launchBrowser, newPage, rivuletBinary, startEdge, startServer, until } from '../tests/lib.mjs';

const { values: opt } = parseArgs({
  options: {
    bin: { type: 'string' },
    duration: { type: 'string', default: '45' },
    renditions: { type: 'string' },
    'part-target-ms': { type: 'string' },
  },
});
const bin = opt.bin ? resolve(opt.bin) : rivuletBinary();
const duration = Number(opt.duration);
const NAME = 'latency';
const KEY = 'latency-secret-key-1234';
const WIDTH = 640;
const HEIGHT = 360;

// --- The time strip as an ffmpeg geq expression (web/src/timestrip.js's layout) ---
const CELLS = 58;
function crc8(bytes) {
  let crc = 0;
  for (const b of bytes) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}
/** Which of the 48 data bits (0 = most significant) each CRC bit is the XOR of: CRC-8 with initial 0 is linear. */
function crcMasks() {
  const masks = Array.from({ length: 8 }, () => []);
  for (let j = 0; j < 48; j++) {
    const value = 2 ** (47 - j);
    const bytes = [];
    for (let k = 0; k < 6; k++) bytes.push(Math.floor(value / 2 ** (8 * (5 - k))) % 256);
    const crc = crc8(bytes);
    for (let i = 0; i < 8; i++) if ((crc >> (7 - i)) & 1) masks[i].push(j);
  }
  return masks;
}
function stripFilter() {
  const rows = Math.max(Math.floor(HEIGHT / 10), 4);
  const margin = Math.floor(HEIGHT / 40);
  const top = Math.max(HEIGHT - (rows + margin), 0);
  // ld(0): the capture time in ms (the frame's time is the wall clock, see setpts);
  // ld(1): the cell under X.
  const bit = (j) => `mod(floor(ld(0)/${2 ** (47 - j)}),2)`;
  const crcBit = (mask) => `mod(${mask.map(bit).join('+')},2)`;
  const masks = crcMasks();
  let cell = '0';
  for (let i = 7; i >= 0; i--) cell = `if(eq(ld(1),${50 + i}),${crcBit(masks[i])},${cell})`;
  cell = `if(lt(ld(1),50),mod(floor(ld(0)/pow(2,49-ld(1))),2),${cell})`;
  cell = `if(eq(ld(1),0),1,if(eq(ld(1),1),0,${cell}))`;
  const lum = `if(between(Y,${top},${top + rows - 1}),st(0,floor(T*1000+0.5))*0+st(1,floor(X*${CELLS}/W))*0+16+219*${cell},lum(X,Y))`;
  const esc = (s) => s.replace(/,/g, '\\,');
  return [
    // The frame's time becomes the wall clock when it is made (ms), for geq's T.
    'settb=1/1000', 'setpts=RTCTIME/1000',
    `drawbox=x=0:y=${top}:w=${WIDTH}:h=${rows}:color=gray:t=fill`,
    `geq=lum='${esc(lum)}':cb='cb(X,Y)':cr='cr(X,Y)'`,
    "drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:fontsize=28:fontcolor=white:box=1:boxcolor=black:x=10:y=10:text='%{localtime\\:%T}'",
    'setpts=PTS-STARTPTS',
  ].join(',');
}

function ffmpegPublisher(url) {
  const args = [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-vf', stripFilter(),
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', '60', '-keyint_min', '60', '-b:v', '1500k', '-maxrate', '1500k', '-bufsize', '1500k',
    '-c:a', 'aac', '-b:a', '128k', '-f', 'flv', url,
  ];
  const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  proc.output = [];
  proc.stderr.on('data', (d) => proc.output.push(String(d)));
  process.on('exit', () => proc.kill('SIGKILL'));
  return proc;
}

function pct(xs, p) {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.max(0, Math.ceil((p / 100) * s.length) - 1)];
}
const ms = (x) => (Number.isFinite(x) ? `${Math.round(x)} ms` : '-');

// --- Probes: when the hinted part of a rendition is servable at the origin and at the edge ---
function parsePlaylist(text) {
  // Parts with their end on the ingest wall clock (segment PDT + part durations).
  const parts = [];
  let pdt = null;
  let msn = Number(/#EXT-X-MEDIA-SEQUENCE:(\d+)/.exec(text)?.[1] ?? 0);
  let offset = 0;
  let partIndex = 0;
  let hint = null;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) {
      pdt = Date.parse(line.slice(25));
      offset = 0;
      partIndex = 0;
    } else if (line.startsWith('#EXT-X-PART:')) {
      offset += Number(/DURATION=([\d.]+)/.exec(line)[1]) * 1000;
      parts.push({ msn, part: partIndex, end: pdt + offset });
      partIndex += 1;
    } else if (line.startsWith('#EXTINF:')) {
      // next segment
    } else if (line && !line.startsWith('#')) {
      msn += 1;
    } else if (line.startsWith('#EXT-X-PRELOAD-HINT:')) {
      const m = /part-(\d+)-(\d+)/.exec(line);
      if (m) hint = { msn: Number(m[1]), part: Number(m[2]) };
    }
  }
  return { parts, hint };
}

async function probe(base, edgeBase, rendition, until, out) {
  const path = `/live/${NAME}/${rendition}/index.m3u8`;
  let text = await (await fetch(`${base}${path}`)).text();
  while (Date.now() < until) {
    const { hint } = parsePlaylist(text);
    if (!hint) {
      await new Promise((r) => setTimeout(r, 100));
      text = await (await fetch(`${base}${path}`)).text();
      continue;
    }
    const q = `?_HLS_msn=${hint.msn}&_HLS_part=${hint.part}`;
    const timed = async (url) => {
      const r = await fetch(url);
      const t = Date.now();
      return { t, ok: r.ok, text: await r.text() };
    };
    const [o, e] = await Promise.all([timed(`${base}${path}${q}`), timed(`${edgeBase}${path}${q}`)]);
    if (!o.ok) {
      text = await (await fetch(`${base}${path}`)).text();
      continue;
    }
    const part = parsePlaylist(o.text).parts.find((p) => p.msn === hint.msn && p.part === hint.part);
    if (part && e.ok) out.push({ servable: o.t - part.end, edge: e.t - o.t });
    text = o.text;
  }
}

const extra = [];
if (opt.renditions) extra.push('--renditions', opt.renditions);
if (opt['part-target-ms']) extra.push('--part-target-ms', opt['part-target-ms']);
const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, ...extra]);
const edge = await startEdge(bin, [server.http]);
const publisher = ffmpegPublisher(`${server.rtmp}/live/${KEY}`);
await until('the stream to be playable', async () => {
  const r = await fetch(`${server.http}/live/${NAME}/master.m3u8`);
  return r.ok && (await r.text()).includes('#EXT-X-STREAM-INF');
}, 60_000);
await new Promise((r) => setTimeout(r, 4000));
const master = await (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).text();
const renditions = master.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => l.split('/')[0]);
const partTarget = /PART-TARGET=([\d.]+)/.exec(await (await fetch(`${server.http}/live/${NAME}/${renditions[0]}/index.m3u8`)).text())?.[1];
console.log(`rivulet ${bin}\nffmpeg publisher ${WIDTH}x${HEIGHT} 30 fps libx264 veryfast zerolatency, 2 s GOP, 1.5 Mbit/s; renditions ${renditions.join(',')}; PART-TARGET ${partTarget} s; hls.js through rivulet edge; ${duration} s`);

const browser = await launchBrowser();
const page = await newPage(browser);
await page.goto(`${edge.url}/watch/${NAME}?debug=1`);
await page.waitForFunction(() => window.rivulet && window.rivulet.player.firstFrameAt != null, undefined, { timeout: 60_000 });
const startup = await page.evaluate(() => window.rivulet.player.firstFrameAt);

const probes = Object.fromEntries(renditions.map((r) => [r, []]));
const end = Date.now() + duration * 1000;
const probing = renditions.map((r) => probe(server.http, edge.url, r, end, probes[r]));
// The player: the ingest wall clock (PDT) of the frame on screen vs now, its distance to
// the live edge and the hold-back it aims at.
const player = { arrivalToScreen: [], latency: [], target: [], levels: new Set() };
const settleUntil = Date.now() + 5000;
while (Date.now() < end) {
  const s = await page.evaluate(() => {
    const h = window.rivulet.hls;
    return {
      now: Date.now(),
      playing: h && h.playingDate ? h.playingDate.getTime() : null,
      latency: h ? h.latency : null,
      target: h ? h.targetLatency : null,
      level: h && h.levels[h.currentLevel] ? h.levels[h.currentLevel].height : null,
    };
  });
  if (Date.now() > settleUntil && s.playing) {
    player.arrivalToScreen.push(s.now - s.playing);
    player.latency.push(s.latency * 1000);
    player.target.push(s.target * 1000);
    player.levels.add(s.level);
  }
  await new Promise((r) => setTimeout(r, 250));
}
await Promise.all(probing);
const page_ = await page.evaluate(() => ({
  g2g: window.rivulet.debug.samples.filter((_, i) => window.rivulet.debug.sampleTimes[i] > window.rivulet.player.firstFrameAt + 5000),
  reads: window.rivulet.debug.reads,
  rebuffers: window.rivulet.qoe ? window.rivulet.qoe.totals.rebufferCount : NaN,
}));
await browser.close();
publisher.kill('SIGKILL');

const g2g = pct(page_.g2g, 50);
const arrivalToScreen = pct(player.arrivalToScreen, 50);
const playedHeight = [...player.levels].filter(Boolean).sort((a, b) => b - a)[0];
// The rendition of that height, from the multivariant playlist.
const masterLines = master.split('\n');
const played = renditions.find((r) => masterLines.some((l, i) => l.startsWith(`${r}/`) && new RegExp(`RESOLUTION=\\d+x${playedHeight}(,|$)`).test(masterLines[i - 1]))) || renditions[0];
const rows = [
  ['capture → RTMP arrival (encoder, RTMP)', g2g - arrivalToScreen],
];
for (const r of renditions) {
  rows.push([`arrival → part servable at origin, ${r}`, pct(probes[r].map((p) => p.servable), 50), `${probes[r].length} parts`]);
}
const servable = pct(probes[played].map((p) => p.servable), 50);
const edgeDelay = pct(probes[played].map((p) => p.edge), 50);
rows.push([`origin → servable at edge (${played})`, edgeDelay]);
rows.push([`edge → on screen (player: hold-back, fetch, decode)`, arrivalToScreen - servable - edgeDelay, `hls.js latency p50 ${ms(pct(player.latency, 50))}, target ${ms(pct(player.target, 50))}`]);
console.log(`\n| stage | p50 | note |\n|---|---|---|`);
for (const [stage, v, note] of rows) console.log(`| ${stage} | ${ms(v)} | ${note || ''} |`);
console.log(`| **glass to glass** (strip vs clock) | **${ms(g2g)}** | p95 ${ms(pct(page_.g2g, 95))}, ${page_.g2g.length} frames read, ${page_.reads.failed} unreadable |`);
console.log(`\nplayed ${played} (${playedHeight}p); startup ${ms(startup)}; rebuffers ${page_.rebuffers} in ${duration} s; arrival → on screen p50 ${ms(arrivalToScreen)}`);
process.exit(0);
