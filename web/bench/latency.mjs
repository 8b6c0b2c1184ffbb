// The latency budget (issue 13 item 1), measured, not estimated:
//   node web/bench/latency.mjs [--bin target/release/rivulet] [--duration 45]
//        [--renditions source,360p,234p] [--part-target-ms N] [--peer nginx-rtmp|none]
//        [--netem DELAY_MS,JITTER_MS,LOSS_PERCENT] [--trace] [--profile] [--at-origin]
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
// and glass to glass (strip vs this machine's clock); startup of the first viewer (the
// edge's cache cold) step by step, and of five later ones. Then real time: the page's
// WHEP mode (?mode=webrtc) at the origin, on the same encode. Then the peer on the same
// encode (ffmpeg's tee muxer): nginx-rtmp's HLS in hls.js, its strip read the same way,
// side by side with ratios. `--profile` records Chromium's trace of the first viewer's start
// and prints where its main thread went. `--netem` puts a delaying, lossy link (a proxy in this
// process) between the browser and the edge. Prints figures, asserts nothing.

import { spawn } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { ffmpeg, launchBrowser, newPage, rivuletBinary, startEdge, startServer, until } from '../tests/lib.mjs';

const { values: opt } = parseArgs({
  options: {
    bin: { type: 'string' },
    duration: { type: 'string', default: '45' },
    renditions: { type: 'string' },
    'part-target-ms': { type: 'string' },
    // The peer run side by side: nginx-rtmp's HLS (Debian's libnginx-mod-rtmp), or none.
    peer: { type: 'string', default: 'nginx-rtmp' },
    // A lossy, delaying link between the viewer and the edge: DELAY_MS,JITTER_MS,LOSS_PERCENT.
    netem: { type: 'string' },
    // Print what hls.js did in the 3 s before each stall (loads, switches, errors, buffer).
    trace: { type: 'boolean', default: false },
    // Record Chromium's trace of the first viewer's start and print where its main thread went.
    profile: { type: 'boolean', default: false },
    // The viewers watch at the origin instead of through the edge (to tell the two apart).
    'at-origin': { type: 'boolean', default: false },
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
/**
 * The publisher's video filter graph ([0:v] → [v]): the wall clock as text and as the
 * time strip. The strip is computed on a 58×2 picture (one pixel per cell: geq runs a
 * long expression per pixel, and over the whole frame it cost the publisher most of a
 * core, which slowed everything else in the run) and scaled up over the frame's bottom.
 */
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
  const lum = `st(0,floor(T*1000+0.5))*0+st(1,floor(X*${CELLS}/W))*0+16+219*${cell}`;
  const esc = (s) => s.replace(/,/g, '\\,');
  return [
    // The frame's time becomes the wall clock when it is made (ms), for geq's T.
    '[0:v]format=yuv420p,settb=1/1000,setpts=RTCTIME/1000,split[main][cells]',
    `[cells]scale=${CELLS}:2:flags=neighbor,geq=lum='${esc(lum)}':cb=128:cr=128,scale=${WIDTH}:${rows}:flags=neighbor[strip]`,
    `[main][strip]overlay=0:${top},drawtext=fontfile=/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf:fontsize=28:fontcolor=white:box=1:boxcolor=black:x=10:y=10:text='%{localtime\\:%T}',setpts=PTS-STARTPTS[v]`,
  ].join(';');
}

/** One encode published to every URL (ffmpeg's tee muxer: the same frames everywhere). */
function ffmpegPublisher(urls) {
  const out = urls.length === 1
    ? ['-map', '[v]', '-map', '1:a', '-f', 'flv', urls[0]]
    // FLV wants the parameter sets in the stream header: tee does not tell the encoders.
    : ['-flags', '+global_header', '-map', '[v]', '-map', '1:a', '-f', 'tee', urls.map((u) => `[f=flv:onfail=ignore]${u}`).join('|')];
  return ffmpeg([
    '-re',
    '-f', 'lavfi', '-i', `testsrc2=size=${WIDTH}x${HEIGHT}:rate=30`,
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-filter_complex', stripFilter(),
    '-c:v', 'libx264', '-preset', 'veryfast', '-tune', 'zerolatency', '-pix_fmt', 'yuv420p',
    '-g', '60', '-keyint_min', '60', '-b:v', '1500k', '-maxrate', '1500k', '-bufsize', '1500k',
    '-c:a', 'aac', '-b:a', '128k', ...out,
  ]);
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

// --- The peer: nginx-rtmp's HLS, played by hls.js with its defaults, strip read the same way ---
const here = dirname(fileURLToPath(import.meta.url));
const freePort = () => new Promise((ok, fail) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => ok(port));
  }).on('error', fail);
});

async function startNginxRtmp() {
  const module = '/usr/lib/nginx/modules/ngx_rtmp_module.so';
  const dir = mkdtempSync(join(tmpdir(), 'rivulet-peer-'));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'logs'));
  mkdirSync(join(dir, 'html/hls'), { recursive: true });
  spawn('chmod', ['-R', '0777', dir]);
  const [rtmpPort, httpPort] = [await freePort(), await freePort()];
  const web = resolve(here, '..');
  // hls_fragment 1s: nginx-rtmp cuts at the first keyframe after it, so fragments are
  // the 2 s GOP, its shortest; a 6 s playlist. hls.js plays it with its defaults
  // (3 fragments behind live), as a page pointed at nginx-rtmp would.
  writeFileSync(join(dir, 'nginx.conf'), `load_module ${module};
daemon off; master_process off; pid ${dir}/nginx.pid; error_log ${dir}/logs/error.log warn;
events { worker_connections 256; }
rtmp { server { listen 127.0.0.1:${rtmpPort};
  application live { live on; hls on; hls_path ${dir}/html/hls; hls_fragment 1s; hls_playlist_length 6s; } } }
http { access_log off;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; text/html html; text/javascript js mjs; }
  server { listen 127.0.0.1:${httpPort};
    location /hls/ { root ${dir}/html; add_header Cache-Control no-cache; }
    location = /hls.min.mjs { alias ${web}/node_modules/hls.js/dist/hls.min.mjs; }
    location = /timestrip.js { alias ${web}/src/timestrip.js; }
    location = /peer.html { root ${dir}/html; } } }
`);
  writeFileSync(join(dir, 'html/peer.html'), `<!doctype html><meta charset="utf-8">
<video id="video" muted autoplay playsinline width="${WIDTH}" height="${HEIGHT}"></video>
<script type="module">
import Hls from '/hls.min.mjs';
import { readVideo } from '/timestrip.js';
const video = document.getElementById('video');
const canvas = document.createElement('canvas');
const peer = { firstFrameAt: null, samples: [], sampleTimes: [], failed: 0, rebuffers: 0 };
window.peer = peer;
const hls = new Hls();
hls.loadSource('/hls/${NAME}.m3u8');
hls.attachMedia(video);
hls.on(Hls.Events.MANIFEST_PARSED, () => video.play().catch(() => {}));
video.addEventListener('waiting', () => { if (peer.firstFrameAt !== null) peer.rebuffers += 1; });
let last = 0;
const onFrame = (now) => {
  if (peer.firstFrameAt === null) peer.firstFrameAt = performance.now();
  if (now - last >= 250) {
    last = now;
    const r = readVideo(video, canvas);
    if (r && r.millis !== undefined) { peer.samples.push(Date.now() - r.millis); peer.sampleTimes.push(performance.now()); } else peer.failed += 1;
  }
  video.requestVideoFrameCallback(onFrame);
};
video.requestVideoFrameCallback(onFrame);
</script>
`);
  const proc = spawn('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], { stdio: 'ignore' });
  process.on('exit', () => proc.kill('SIGKILL'));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const up = await new Promise((ok) => net.connect(httpPort, '127.0.0.1').on('connect', function () { this.destroy(); ok(true); }).on('error', () => ok(false)));
    if (up) break;
    if (Date.now() > deadline) throw new Error(`nginx did not start (see ${dir}/logs/error.log)`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return { rtmp: `rtmp://127.0.0.1:${rtmpPort}/live/${NAME}`, page: `http://127.0.0.1:${httpPort}/peer.html`, proc };
}

/** Watches the peer's page for `seconds`: glass to glass after the first 5 s, startup, rebuffers. */
async function watchPeer(browser, url, seconds) {
  const page = await newPage(browser);
  await page.goto(url);
  await page.waitForFunction(() => window.peer && window.peer.firstFrameAt != null, undefined, { timeout: 60_000 });
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const p = await page.evaluate(() => ({
    startup: window.peer.firstFrameAt,
    g2g: window.peer.samples.filter((_, i) => window.peer.sampleTimes[i] > window.peer.firstFrameAt + 5000),
    failed: window.peer.failed,
    rebuffers: window.peer.rebuffers,
  }));
  await page.close();
  return p;
}

// --- A lossy, delaying link (tc netem does not work on these machines) ---
// Each direction of each TCP connection is cut into 1448-byte packets; every packet
// is held DELAY ± JITTER ms (in order: a packet never overtakes the one before it),
// and a lost one (LOSS %) — with everything behind it on that connection — waits one
// more round trip, at least 200 ms (Linux's minimum retransmission timeout), as TCP's
// head-of-line blocking makes a receiver wait. TCP's congestion response to loss
// (a smaller window) is not modelled.
function lossyLink(targetPort, { delay, jitter, loss }) {
  const stats = { packets: 0, lost: 0 };
  const rto = Math.max(200, 2 * delay);
  const pipe = (from, to) => {
    // One queue per direction, drained in order by one timer (timers of different
    // delays may fire out of order).
    const queue = [];
    let last = 0;
    let timer = null;
    let ended = false;
    const drain = () => {
      timer = null;
      const now = Date.now();
      while (queue.length && queue[0].at <= now) to.write(queue.shift().packet);
      if (queue.length) timer = setTimeout(drain, queue[0].at - now);
      else if (ended) to.end();
    };
    from.on('data', (chunk) => {
      for (let off = 0; off < chunk.length; off += 1448) {
        stats.packets += 1;
        let at = Date.now() + delay + (Math.random() * 2 - 1) * jitter;
        if (Math.random() < loss / 100) {
          stats.lost += 1;
          at += rto;
        }
        last = Math.max(last, at);
        queue.push({ at: last, packet: chunk.subarray(off, off + 1448) });
      }
      if (!timer) timer = setTimeout(drain, Math.max(0, queue[0].at - Date.now()));
    });
    from.on('end', () => {
      ended = true;
      if (!timer) to.end();
    });
    from.on('error', () => to.destroy());
  };
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1');
    pipe(client, upstream);
    pipe(upstream, client);
    upstream.on('close', () => client.destroy());
    client.on('close', () => upstream.destroy());
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok({ url: `http://127.0.0.1:${server.address().port}`, stats })));
}

/**
 * The same link for WebRTC's datagrams: the server advertises 127.0.0.2 as its host
 * candidate on its UDP port, and this relay, bound there, forwards each viewer's
 * datagrams to the server on 127.0.0.1 from a socket of the viewer's own and back.
 * Each datagram is held DELAY ± JITTER ms (in order) and LOSS % of them, either way,
 * are lost: what NACK and retransmission, or a keyframe request, must repair.
 */
function lossyUdpRelay(port, { delay, jitter, loss }) {
  const stats = { datagrams: 0, lost: 0 };
  const relay = dgram.createSocket('udp4');
  const upstreams = new Map();
  const delayed = () => {
    let last = 0;
    return (send) => {
      stats.datagrams += 1;
      if (Math.random() < loss / 100) {
        stats.lost += 1;
        return;
      }
      last = Math.max(last, Date.now() + delay + (Math.random() * 2 - 1) * jitter);
      setTimeout(send, last - Date.now());
    };
  };
  relay.on('message', (msg, from) => {
    const key = `${from.address}:${from.port}`;
    let up = upstreams.get(key);
    if (!up) {
      const socket = dgram.createSocket('udp4');
      up = { socket, toServer: delayed(), toViewer: delayed() };
      upstreams.set(key, up);
      const toViewer = up.toViewer;
      socket.on('message', (back) => toViewer(() => relay.send(back, from.port, from.address)));
      socket.bind(0, '127.0.0.1');
    }
    up.toServer(() => up.socket.send(msg, port, '127.0.0.1'));
  });
  return new Promise((ok) => relay.bind(port, '127.0.0.2', () => ok({ stats })));
}

/** A free UDP port on 127.0.0.1 (and, for the relay, on 127.0.0.2). */
function freeUdpPort() {
  const probe = dgram.createSocket('udp4');
  return new Promise((ok) => probe.bind(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => ok(port));
  }));
}

/** Real time on the same encode: the page's WHEP mode at the origin (the edge serves HTTP, not WebRTC). */
async function watchWebRtc(browser, url, seconds) {
  const page = await newPage(browser);
  await page.goto(url);
  await page.waitForFunction(() => window.rivulet && window.rivulet.player.firstFrameAt != null, undefined, { timeout: 60_000 });
  const mode = await page.evaluate(() => window.rivulet.mode);
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const r = await page.evaluate(async () => {
    // The browser's own account of the video it received: frames, freezes, repairs.
    const pc = window.rivulet.player.pc;
    const stats = pc ? [...(await pc.getStats()).values()] : [];
    const video = stats.find((s) => s.type === 'inbound-rtp' && s.kind === 'video') || {};
    return {
      startup: window.rivulet.player.firstFrameAt,
      g2g: window.rivulet.debug.samples.filter((_, i) => window.rivulet.debug.sampleTimes[i] > window.rivulet.player.firstFrameAt + 5000),
      rebuffers: window.rivulet.qoe ? window.rivulet.qoe.totals.rebufferCount : NaN,
      video: {
        framesDecoded: video.framesDecoded,
        freezeCount: video.freezeCount,
        totalFreezesDuration: video.totalFreezesDuration,
        packetsLost: video.packetsLost,
        nackCount: video.nackCount,
        pliCount: video.pliCount,
      },
    };
  });
  await page.context().close();
  return { ...r, mode, seconds };
}

/**
 * In the page: records what hls.js does from now on (ms after the first frame): each
 * part or segment loaded (when asked, first byte, last byte), playlist reloads, level
 * switches, errors, and the buffer ahead of the playhead at each stall.
 */
function traceHls() {
  const h = window.rivulet.hls;
  const v = document.querySelector('video');
  const first = window.rivulet.player.firstFrameAt;
  const trace = (window.hlsTrace = []);
  const header = (window.hlsTraceHeader = []);
  for (const e of [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')]) {
    header.push(`request ${new URL(e.name).pathname}: round trip ${Math.round(e.responseStart - e.requestStart)} ms, ${e.transferSize} B transferred`);
  }
  const at = (t) => Math.round((t || performance.now()) - first);
  const ahead = () => window.rivulet.player.bufferedAheadS();
  const ranges = () => window.describeBuffer(v);
  const E = h.constructor.Events;
  h.on(E.FRAG_LOADED, (_, d) => {
    const st = d.part ? d.part.stats : d.frag.stats;
    const what = d.part ? `part ${d.frag.sn}.${d.part.index}` : `segment ${d.frag.sn}`;
    trace.push([at(st.loading.end), `${what} L${d.frag.level} asked ${at(st.loading.start)} first byte ${at(st.loading.first)} ${st.total} B`]);
  });
  h.on(E.LEVEL_LOADED, (_, d) => {
    const st = d.stats;
    trace.push([at(st.loading.end), `playlist L${d.level} asked ${at(st.loading.start)} (${d.details.lastPartSn}.${d.details.lastPartIndex})`]);
  });
  h.on(E.BUFFER_APPENDED, (_, d) => trace.push([at(), `appended ${d.type} ${d.frag.sn}.${d.part ? d.part.index : '-'}: ${ranges()}`]));
  h.on(E.LEVEL_SWITCHING, (_, d) => trace.push([at(), `switching to L${d.level}`]));
  h.on(E.ERROR, (_, d) => trace.push([at(), `error ${d.details}${d.fatal ? ' (fatal)' : ''}`]));
  // Frames the renderer dropped and decoded so far: a stall with data buffered and
  // drops climbing before it is decoding that fell behind, not the network.
  const frames = () => {
    const q = v.getVideoPlaybackQuality();
    return `frames ${q.totalVideoFrames} (${q.droppedVideoFrames} dropped)`;
  };
  v.addEventListener('waiting', () => trace.push([at(), `STALL: ${ranges()}, ahead ${ahead().toFixed(2)} s, latency ${h.latency.toFixed(2)} s, target ${h.targetLatency.toFixed(2)} s, rate ${v.playbackRate}, ${frames()}`]));
  v.addEventListener('playing', () => trace.push([at(), `playing: ahead ${ahead().toFixed(2)} s`]));
  setInterval(() => trace.push([at(), `tick: ${ranges()}${window.describeSourceBuffers()}, ahead ${ahead().toFixed(2)} s, latency ${h.latency.toFixed(2)} s, target ${h.targetLatency.toFixed(2)} s, rate ${v.playbackRate}, bw estimate ${Math.round(h.bandwidthEstimate / 1000)} kbit/s, ttfb ${Math.round(h.ttfbEstimate)} ms, ${frames()}`]), 500);
  header.push(`levels: ${h.levels.map((l, i) => `L${i} ${l.height}p ${Math.round(l.maxBitrate / 1000)}/${Math.round(l.averageBitrate / 1000)} kbit/s`).join(', ')}`);
}

/** Prints the trace: its header, the whole run briefly, and 3 s before each stall to 1 s after. */
function printTrace(header, trace, stalls) {
  trace.sort((a, b) => a[0] - b[0]);
  for (const line of header) console.log(line);
  console.log('\n--- the whole run: every other tick, switches, stalls ---');
  let ticks = 0;
  for (const [t, what] of trace) {
    if (what.startsWith('tick') ? ticks++ % 2 === 0 : /^(switching|STALL|error)/.test(what)) console.log(`${String(t).padStart(7)} ${what}`);
  }
  for (const s of stalls) {
    console.log(`\n--- stall at ${(s / 1000).toFixed(2)} s ---`);
    for (const [t, what] of trace) if (t >= s - 3000 && t <= s + 1000) console.log(`${String(t).padStart(7)} ${what}`);
  }
}

/** In the page: when the first frame came, and when each step before it ended (ms after navigation). */
function startupTimeline() {
  const firstFrame = window.rivulet.player.firstFrameAt;
  const nav = performance.getEntriesByType('navigation')[0];
  const steps = [['page', nav.responseEnd], ['scripts', nav.domContentLoadedEventEnd], ['attach', window.rivulet.player.attachedAt]];
  for (const e of performance.getEntriesByType('resource')) {
    if (e.responseEnd > firstFrame) continue;
    const path = new URL(e.name).pathname;
    const what = /master\.m3u8$/.test(path) ? 'master' : /index\.m3u8$/.test(path) ? 'playlist' : /init/.test(path) ? 'init' : /\.(m4s|mp4)$/.test(path) ? 'media' : null;
    if (what) steps.push([what, e.responseEnd]);
  }
  steps.push(['first frame', firstFrame]);
  return { firstFrame, steps: steps.sort((a, b) => a[1] - b[1]) };
}

const PROFILE_CATEGORIES = ['devtools.timeline', 'disabled-by-default-devtools.timeline', 'v8.execute', 'blink.user_timing', 'loading'];

/**
 * Where the page's main thread went from navigation to the first frame (`--profile`):
 * busy time by kind (the longest event of each task: script by file, compile, parse,
 * style, layout, paint), and the busy stretches over 20 ms in order. From Chromium's
 * trace (devtools.timeline).
 */
function mainThreadProfile(buffer, firstFrameMs) {
  const events = JSON.parse(buffer.toString()).traceEvents;
  const main = events.find((e) => e.name === 'thread_name' && e.args.name === 'CrRendererMain'
    && events.some((n) => n.pid === e.pid && n.name === 'navigationStart'));
  if (!main) return 'profile: no renderer main thread with a navigation in the trace';
  const nav = events.find((e) => e.pid === main.pid && e.name === 'navigationStart');
  const ms = (ts) => (ts - nav.ts) / 1000;
  const onMain = events.filter((e) => e.pid === main.pid && e.tid === main.tid && e.ph === 'X' && e.dur && ms(e.ts) >= 0 && ms(e.ts) <= firstFrameMs);
  const isTask = (e) => e.name === 'RunTask' || e.name === 'ThreadControllerImpl::RunTask';
  const kinds = new Map();
  const lines = [];
  let busy = 0;
  for (const t of onMain.filter(isTask)) {
    busy += t.dur / 1000;
    const child = onMain.filter((e) => !isTask(e) && e.ts >= t.ts && e.ts + e.dur <= t.ts + t.dur).sort((a, b) => b.dur - a.dur)[0];
    const what = child ? describeTraceEvent(child) : 'other';
    kinds.set(what, (kinds.get(what) || 0) + t.dur / 1000);
    if (t.dur >= 20_000) lines.push(`  ${Math.round(ms(t.ts))}–${Math.round(ms(t.ts + t.dur))} ms: ${what}`);
  }
  const top = [...kinds].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, d]) => `  ${Math.round(d)} ms ${k}`);
  return `\nthe first viewer's main thread, navigation → first frame (${Math.round(firstFrameMs)} ms): busy ${Math.round(busy)} ms\n${top.join('\n')}\nbusy stretches over 20 ms:\n${lines.join('\n')}`;
}

function describeTraceEvent(e) {
  const d = e.args && e.args.data;
  const url = d && (d.url || (d.stackTrace && d.stackTrace[0] && d.stackTrace[0].url));
  const file = url ? url.split('/').pop().split('?')[0] : '';
  const fn = d && d.functionName ? ` ${d.functionName}` : '';
  return `${e.name}${file ? ` ${file}` : ''}${fn}`;
}

const extra = [];
if (opt.renditions) extra.push('--renditions', opt.renditions);
if (opt['part-target-ms']) extra.push('--part-target-ms', opt['part-target-ms']);
// Over a lossy link, WebRTC goes through its own relay on 127.0.0.2 and the server's port.
const webrtcPort = opt.netem ? await freeUdpPort() : 0;
const webrtcArgs = ['--webrtc-listen', `127.0.0.1:${webrtcPort}`, ...(opt.netem ? ['--webrtc-candidate', '127.0.0.2'] : [])];
const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, ...webrtcArgs, ...extra]);
const edge = await startEdge(bin, [server.http]);
const peer = opt.peer === 'nginx-rtmp' ? await startNginxRtmp() : null;
const publisher = ffmpegPublisher([`${server.rtmp}/live/${KEY}`, ...(peer ? [peer.rtmp] : [])]);
let netem = null;
if (opt.netem) {
  const [delay, jitter, loss] = opt.netem.split(',').map(Number);
  if (![delay, jitter, loss].every(Number.isFinite)) throw new Error(`--netem takes DELAY_MS,JITTER_MS,LOSS_PERCENT, e.g. 50,20,1 (got ${opt.netem})`);
  netem = { delay, jitter, loss, ...(await lossyLink(Number(new URL(edge.url).port), { delay, jitter, loss })) };
  netem.udp = await lossyUdpRelay(webrtcPort, { delay, jitter, loss });
}
const viewerBase = netem ? netem.url : opt['at-origin'] ? server.http : edge.url;
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
// Chromium's first page pays for its renderer, JIT and media pipeline; a viewer's
// browser is already running. An offline stream's page (same scripts) warms it without
// touching this stream's playlists, so the first viewer still meets a cold edge.
{
  const warm = await newPage(browser);
  await warm.goto(`${viewerBase}/watch/nobody-here`);
  await warm.waitForFunction(() => document.body.dataset.state === 'offline', undefined, { timeout: 30_000 });
  await warm.context().close();
}
const page = await newPage(browser);
// When the video stalled (after its first frame), to tell start-up from steady state.
await page.addInitScript(() => {
  window.stalls = [];
  document.addEventListener('waiting', (e) => {
    const first = window.rivulet && window.rivulet.player.firstFrameAt;
    if (e.target.tagName === 'VIDEO' && first != null) window.stalls.push(performance.now() - first);
  }, true);
  // The playhead and the buffered ranges, for --trace.
  window.describeBuffer = (v) => {
    const r = [];
    for (let i = 0; i < v.buffered.length; i++) r.push(`${v.buffered.start(i).toFixed(3)}–${v.buffered.end(i).toFixed(3)}`);
    return `at ${v.currentTime.toFixed(3)} in [${r.join(', ')}]`;
  };
  // Each SourceBuffer's own ranges (the element's are their intersection).
  window.describeSourceBuffers = () => {
    const tracks = window.rivulet && window.rivulet.hls && window.rivulet.hls.bufferController && window.rivulet.hls.bufferController.tracks;
    if (!tracks) return '';
    return Object.entries(tracks).map(([type, t]) => (t.buffer ? ` ${type} ${window.describeBuffer({ buffered: t.buffer.buffered, currentTime: NaN })}` : '')).join('');
  };
  // Every append to a SourceBuffer during the start: the timestamp offset it was made
  // with, its size, the first tfdt of each track in it, and the ranges after it
  // (printed with --trace), to tell a hole in the data from one made by re-timing.
  window.appends = [];
  const tfdts = (bytes) => {
    const out = [];
    const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    for (let i = 0; i + 8 <= bytes.length && out.length < 4; i++) {
      if (bytes[i] === 0x74 && bytes[i + 1] === 0x66 && bytes[i + 2] === 0x64 && bytes[i + 3] === 0x74) {
        const v = bytes[i + 4];
        out.push(v === 1 ? Number(d.getBigUint64(i + 8)) : d.getUint32(i + 8));
      }
    }
    return out.join('/');
  };
  // Each moof's track, tfdt and sample durations (trun), for an append that made a hole.
  const truns = (bytes) => {
    const d = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const out = [];
    const box = (at, end, path) => {
      while (at + 8 <= end) {
        const size = d.getUint32(at);
        const type = String.fromCharCode(bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]);
        if (size < 8 || at + size > end) return;
        if (type === 'moof' || type === 'traf') box(at + 8, at + size, `${path}/${type}`);
        if (type === 'tfhd') out.push(`track ${d.getUint32(at + 12)}`);
        if (type === 'tfdt') out.push(`tfdt ${bytes[at + 8] === 1 ? Number(d.getBigUint64(at + 12)) : d.getUint32(at + 12)}`);
        if (type === 'trun') {
          const flags = d.getUint32(at + 8) & 0xffffff;
          const count = d.getUint32(at + 12);
          let p = at + 16 + (flags & 1 ? 4 : 0) + (flags & 4 ? 4 : 0);
          const durs = [];
          for (let i = 0; i < count; i++) {
            if (flags & 0x100) { durs.push(d.getUint32(p)); p += 4; }
            if (flags & 0x200) p += 4;
            if (flags & 0x400) p += 4;
            if (flags & 0x800) p += 4;
          }
          out.push(`trun ${count} [${durs.join(',')}]`);
        }
        at += size;
      }
    };
    box(0, bytes.length, '');
    return out.join(' ');
  };
  const append = SourceBuffer.prototype.appendBuffer;
  SourceBuffer.prototype.appendBuffer = function (data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    const at = Math.round(performance.now());
    const offset = this.timestampOffset;
    const tf = tfdts(bytes);
    this.addEventListener('updateend', () => {
      if (window.appends.length < 200) window.appends.push(`${at} append ${bytes.length} B offset ${offset.toFixed(3)} tfdt ${tf} -> ${window.describeBuffer({ buffered: this.buffered, currentTime: NaN })}${this.buffered.length > 1 && window.appends.length < 40 ? ` :: ${truns(bytes)}` : ''}`);
    }, { once: true });
    return append.call(this, data);
  };
  // The video element's start, ms after navigation (printed with --trace).
  window.startEvents = [];
  for (const type of ['loadedmetadata', 'loadeddata', 'canplay', 'playing', 'waiting', 'seeking', 'seeked', 'ratechange']) {
    document.addEventListener(type, (e) => {
      const v = e.target;
      if (v.tagName !== 'VIDEO') return;
      window.startEvents.push(`${Math.round(performance.now())} ${type} ${window.describeBuffer(v)} rate ${v.playbackRate} readyState ${v.readyState}${window.describeSourceBuffers()}`);
    }, true);
  }
});
if (opt.profile) await browser.startTracing(page, { categories: PROFILE_CATEGORIES });
await page.goto(`${viewerBase}/watch/${NAME}?debug=1`);
await page.waitForFunction(() => window.rivulet && window.rivulet.player.firstFrameAt != null, undefined, { timeout: 60_000 });
const startup = await page.evaluate(startupTimeline);
let profile = null;
if (opt.profile) {
  const trace = await browser.stopTracing();
  const file = join(tmpdir(), `rivulet-latency-trace-${process.pid}.json`);
  writeFileSync(file, trace);
  profile = `${mainThreadProfile(trace, startup.firstFrame)}\n(the trace: ${file}, for chrome://tracing or Perfetto)`;
}
if (opt.trace) {
  console.log(`the video element's start, ms after navigation:\n${(await page.evaluate(() => window.startEvents)).join('\n')}`);
  console.log(`appends, ms after navigation:\n${(await page.evaluate(() => window.appends)).join('\n')}`);
  await page.evaluate(traceHls);
}

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
  stalls: window.stalls,
  trace: window.hlsTrace || [],
  appends: window.appends || [],
  traceHeader: window.hlsTraceHeader || [],
}));
await page.close();
// Later viewers (the edge's cache warm): a fresh page each, the first frame's time.
const startups = [];
for (let i = 0; i < 5; i++) {
  const p = await newPage(browser);
  await p.goto(`${viewerBase}/watch/${NAME}`);
  await p.waitForFunction(() => window.rivulet && window.rivulet.player.firstFrameAt != null, undefined, { timeout: 60_000 });
  startups.push(await p.evaluate(() => window.rivulet.player.firstFrameAt));
  await p.context().close();
}
const rtcRun = await watchWebRtc(browser, `${server.http}/watch/${NAME}?mode=webrtc&debug=1`, Math.min(duration, 30));
const peerRun = peer ? await watchPeer(browser, peer.page, duration) : null;
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
console.log(`\nplayed ${played} (${playedHeight}p); rebuffers ${page_.rebuffers} in ${duration} s${page_.stalls.length ? ` (at ${page_.stalls.map((t) => `${(t / 1000).toFixed(1)} s`).join(', ')} after the first frame)` : ''}; arrival → on screen p50 ${ms(arrivalToScreen)}`);
console.log(`startup (navigation → first frame): first viewer (edge cache cold, browser warm) ${ms(startup.firstFrame)}; 5 later viewers p50 ${ms(pct(startups, 50))} (${startups.map(Math.round).join(', ')} ms)`);
console.log(`first viewer's start, ms after navigation: ${startup.steps.map(([what, t]) => `${what} ${Math.round(t)}`).join(' · ')}`);
if (opt.trace) {
  printTrace(page_.traceHeader, page_.trace, page_.stalls);
  console.log(`appends of the run, ms after navigation:\n${page_.appends.join('\n')}`);
}
if (profile) console.log(profile);
if (netem) console.log(`link: ${netem.delay} ± ${netem.jitter} ms each way, ${netem.loss} % loss (${netem.stats.lost} of ${netem.stats.packets} packets held a round trip)`);
const v = rtcRun.video;
const freezes = `${v.freezeCount} freezes (${Math.round((v.totalFreezesDuration || 0) * 1000)} ms in all)`;
console.log(`\nreal time (the page's WHEP mode at the origin${netem ? ', through the lossy link' : ''}, ${rtcRun.seconds} s, played ${rtcRun.mode}): glass to glass p50 ${ms(pct(rtcRun.g2g, 50))}, p95 ${ms(pct(rtcRun.g2g, 95))} (${rtcRun.g2g.length} frames); startup ${ms(rtcRun.startup)}; rebuffers ${rtcRun.rebuffers}; Chromium's video stats: ${v.framesDecoded} frames decoded, ${freezes}, ${v.packetsLost} packets lost, ${v.nackCount} NACKs, ${v.pliCount} keyframe requests`);
if (netem) console.log(`WebRTC link: ${netem.udp.stats.lost} of ${netem.udp.stats.datagrams} datagrams lost`);
if (peerRun) {
  const row = (what, ours, theirs, unit = 'ms') => console.log(`| ${what} | ${unit === 'ms' ? ms(ours) : ours} | ${unit === 'ms' ? ms(theirs) : theirs} | ${Number.isFinite(ours / theirs) && theirs ? `${(ours / theirs).toFixed(2)}×` : '-'} |`);
  console.log(`\nside by side, the same encode (ffmpeg's tee) — nginx-rtmp: HLS, 2 s MPEG-TS fragments, hls.js defaults, ${duration} s\n| | rivulet (LL-HLS, edge) | nginx-rtmp (HLS) | ratio |\n|---|---|---|---|`);
  row('glass to glass p50', g2g, pct(peerRun.g2g, 50));
  row('glass to glass p95', pct(page_.g2g, 95), pct(peerRun.g2g, 95));
  row('startup', startup.firstFrame, peerRun.startup);
  row('rebuffers', page_.rebuffers, peerRun.rebuffers, 'n');
}
process.exit(0);
