// Real-time playback (WHEP) in headless Chromium against the real binary:
//   node web/tests/webrtc.mjs [path/to/rivulet]
// An ffmpeg RTMP publisher (lavfi testsrc + sine, libx264 without B-frames) → rivulet
// serve with one transcoded rung; /watch/NAME?mode=webrtc plays over the browser's
// own RTCPeerConnection: video frames decode, an audio track is there; a reload plays
// again and the old session is gone from the server; the publisher reconnects and the
// same page plays on; QoE beacons (startup, latency, freezes) reach analytics; a
// malformed offer and an offer
// without H.264 get 400 with the reason; a private stream needs its playback token; a
// viewer plays over ICE-TCP while hostile peers on that port are cut off. Then aiortc (PyPI, web/tests/whep_aiortc.py),
// a WebRTC stack we did not write, receives video and audio frames and ends its
// session with DELETE. Last, against a server with WebRTC off, the page falls back
// to LL-HLS by itself.

import { spawn } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';

import {
  api, artifactsDir, assert, assertNoPageErrors, launchBrowser, log, newPage, rivuletBinary, run,
  startServer, until, waitInPage,
} from './lib.mjs';

const NAME = 'rtc';
// ICE-TCP connections allowed from one address (all of this test's are from 127.0.0.1).
const TCP_PER_IP = 4;
const KEY = 'rtc-secret-key-1234';

function ffmpegPublisher(url) {
  const args = [
    '-hide_banner', '-loglevel', 'error', '-re',
    '-f', 'lavfi', '-i', 'testsrc=size=640x360:rate=30',
    '-f', 'lavfi', '-i', 'sine=frequency=440:sample_rate=48000',
    '-c:v', 'libx264', '-preset', 'ultrafast', '-tune', 'zerolatency', '-bf', '0', '-g', '30', '-pix_fmt', 'yuv420p',
    '-c:a', 'aac', '-b:a', '96k',
    '-f', 'flv', url,
  ];
  const proc = spawn('ffmpeg', args, { stdio: ['ignore', 'ignore', 'inherit'] });
  process.on('exit', () => proc.kill('SIGKILL'));
  return proc;
}

async function sessions(server) {
  const text = await (await fetch(`${server.http}/metrics`)).text();
  const m = /^webrtc_sessions (\d+)/m.exec(text);
  return m ? Number(m[1]) : 0;
}

/** The page's video frames decoded so far and the kinds of its tracks. */
function playback(page) {
  return page.evaluate(async () => {
    const p = window.rivulet.player;
    if (!p.pc) return { frames: 0, kinds: [], mode: window.rivulet.mode };
    let frames = 0;
    let audioPackets = 0;
    for (const s of (await p.pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
      if (s.type === 'inbound-rtp' && s.kind === 'audio') audioPackets = s.packetsReceived || 0;
    }
    const v = document.querySelector('video');
    const kinds = v.srcObject ? v.srcObject.getTracks().map((t) => t.kind).sort() : [];
    const readout = document.getElementById('latency');
    return { frames, audioPackets, kinds, mode: window.rivulet.mode, width: v.videoWidth, latency: p.latencyMs, readout: readout.hidden ? null : readout.textContent };
  });
}

async function playsInRealTime(page, server, label) {
  await page.goto(`${server.http}/watch/${NAME}?mode=webrtc`);
  await waitInPage(page, `${label}: real-time playback`, () => document.body.dataset.state === 'playing', undefined, 60_000);
  const first = await until(`${label}: decoded frames`, async () => {
    const p = await playback(page);
    return p.frames > 0 ? p : null;
  }, 30_000);
  const later = await until(`${label}: frames keep decoding`, async () => {
    const p = await playback(page);
    return p.frames >= first.frames + 30 ? p : null;
  }, 30_000);
  assert(later.mode === 'webrtc', `${label}: still WebRTC, not the LL-HLS fallback (${later.mode})`);
  assert(JSON.stringify(later.kinds) === JSON.stringify(['audio', 'video']), `${label}: an audio and a video track, not ${later.kinds}`);
  assert(later.width > 0, `${label}: a picture (${later.width} px wide)`);
  // Opus made of the stream's AAC arrives on the audio track.
  const audio = await until(`${label}: Opus packets`, async () => {
    const p = await playback(page);
    return p.audioPackets > 10 ? p : null;
  }, 30_000);
  // The latency readout works in real time too (RTCP sender reports carry the
  // ingest wall clock).
  const readout = await until(`${label}: the latency readout`, async () => {
    const p = await playback(page);
    return p.readout && /delay/.test(p.readout) ? p : null;
  }, 30_000);
  const button = await page.textContent('#mode');
  assert(button === 'Real-time', `the toggle says Real-time, not ${button}`);
  log(`${label}: ${later.frames} frames decoded, ${audio.audioPackets} audio packets, tracks ${later.kinds}, ${later.width} px wide, readout "${readout.readout}" (${readout.latency} ms)`);
  return later;
}

run('webrtc', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', '360p', '--webrtc-listen', '127.0.0.1:0', '--webrtc-tcp-max-per-ip', String(TCP_PER_IP)]);
  log(`server ${server.http} ${server.rtmp}`);
  let publisher = ffmpegPublisher(`${server.rtmp}/live/${KEY}`);
  await until('the stream to be live', async () => (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).status === 200, 90_000);

  // Bad offers: 400 with the reason, nothing started.
  const whep = `${server.http}/live/${NAME}/whep`;
  const malformed = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'this is not SDP' });
  const malformedText = await malformed.text();
  assert(malformed.status === 400 && /SDP/.test(malformedText), `malformed SDP: ${malformed.status} ${malformedText}`);
  const wrongType = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'v=0' });
  assert(wrongType.status === 415, `a non-SDP content type: ${wrongType.status}`);
  // An offer over 64 KiB: 413 with the reason, for WHEP and WHIP, whether it says its
  // length or comes in chunks (read no further than the bound). Over a raw socket: the
  // answer comes before the body is sent, which fetch() takes for a failure.
  const rawPost = (path, headers, body) => new Promise((done) => {
    const { hostname, port } = new URL(server.http);
    const socket = net.connect(Number(port), hostname);
    let received = '';
    socket.on('data', (d) => { received += d; });
    socket.on('error', () => {});
    socket.on('close', () => done(received));
    socket.write(`POST ${path} HTTP/1.1\r\nHost: ${hostname}\r\nContent-Type: application/sdp\r\nConnection: close\r\n${headers.join('\r\n')}\r\n\r\n`);
    body(socket);
    setTimeout(() => socket.destroy(), 10_000);
  });
  const offerBytes = 200_000;
  // The first 8 KB of a body that says it is 200 KB.
  const withLength = (socket) => socket.write('v=0\r\n'.padEnd(8192, 'a'));
  const inChunks = (socket) => {
    for (let sent = 0; sent < offerBytes && !socket.destroyed; sent += 4096) socket.write(`1000\r\n${'a'.repeat(4096)}\r\n`);
  };
  for (const [what, path, auth] of [['WHEP', `/live/${NAME}/whep`, []], ['WHIP', '/whip', [`Authorization: Bearer ${KEY}`]]]) {
    for (const [how, headers, body] of [['with its length', [`Content-Length: ${offerBytes}`], withLength], ['chunked', ['Transfer-Encoding: chunked'], inChunks]]) {
      const answer = await rawPost(path, [...auth, ...headers], body);
      assert(/^HTTP\/1\.1 413/.test(answer) && /larger than 65536 bytes/.test(answer), `${what} offer of ${offerBytes} bytes (${how}): ${answer.slice(0, 300)}`);
    }
  }

  const browser = await launchBrowser();
  const page = await newPage(browser);
  await page.goto(`${server.http}/watch/${NAME}`);
  const audioOnly = await page.evaluate(async (url) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    pc.close();
    return { status: r.status, text: await r.text() };
  }, `/live/${NAME}/whep`);
  assert(audioOnly.status === 400 && /H\.264/.test(audioOnly.text), `an offer without video: ${JSON.stringify(audioOnly)}`);
  // The session resource: CORS for other origins' players, trickle ICE, DELETE.
  const preflight = await fetch(whep, { method: 'OPTIONS', headers: { Origin: 'https://player.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' } });
  assert(preflight.ok && preflight.headers.get('access-control-allow-origin') === '*', `CORS preflight: ${preflight.status}`);
  const offer = await page.evaluate(async () => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const sdp = pc.localDescription.sdp;
    pc.close();
    return sdp;
  });
  const created = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp', Origin: 'https://player.example' }, body: offer });
  const location = created.headers.get('location');
  assert(created.status === 201 && /^\/live\/rtc\/whep\/[0-9a-f]+$/.test(location), `POST: ${created.status} ${location}`);
  assert((created.headers.get('access-control-expose-headers') || '').toLowerCase().includes('location'), 'Location is exposed to other origins');
  assert((await created.text()).includes('a=ice-lite'), 'the answer is ICE-lite');
  const resource = `${server.http}${location}`;
  const trickle = await fetch(resource, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates\r\n' });
  assert(trickle.status === 204, `PATCH trickle: ${trickle.status}`);
  const badPatch = await fetch(resource, { method: 'PATCH', headers: { 'Content-Type': 'text/plain' }, body: 'x' });
  assert(badPatch.status === 415, `PATCH with another type: ${badPatch.status}`);
  assert((await fetch(resource, { method: 'DELETE' })).status === 200, 'DELETE ends the session');
  assert((await fetch(resource, { method: 'DELETE' })).status === 404, 'a second DELETE finds no session');
  // A private stream needs the same playback token as LL-HLS.
  assert((await api(server, 'PATCH', `/api/streams/${NAME}`, { private: true })).status === 200, 'made private');
  const noToken = await fetch(whep, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer });
  assert(noToken.status === 401, `a private stream without a token: ${noToken.status}`);
  const { json: minted } = await api(server, 'POST', `/api/streams/${NAME}/tokens`, {});
  const withToken = await fetch(`${whep}?token=${encodeURIComponent(minted.token)}`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: offer });
  assert(withToken.status === 201, `a private stream with its token: ${withToken.status}`);
  assert((await fetch(`${server.http}${withToken.headers.get('location')}`, { method: 'DELETE' })).status === 200, 'DELETE the token session');
  assert((await api(server, 'PATCH', `/api/streams/${NAME}`, { private: false })).status === 200, 'public again');
  const unknown = await fetch(`${whep}?rendition=nope`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  assert(unknown.status === 404, `an unknown rendition: ${unknown.status}`);
  await until('no WebRTC session left', async () => (await sessions(server)) === 0, 10_000);

  // Real time in the viewer page, then again after a reload.
  await playsInRealTime(page, server, 'first load');
  await page.screenshot({ path: join(artifactsDir(), 'watch-webrtc.png') });
  // Analytics counts the WebRTC viewer (its session reported as kind `webrtc`).
  const summary = await until('analytics to count the WebRTC viewer', async () => {
    const r = await fetch(`${server.http}/api/analytics/streams/${NAME}/summary?from=${Date.now() - 60_000}`);
    const s = r.ok ? await r.json() : null;
    return s && s.concurrent_viewers >= 1 ? s : null;
  }, 30_000);
  log(`analytics: ${summary.concurrent_viewers} concurrent viewer(s)`);
  // QoE beacons in real time too: the startup and the latency reach analytics.
  const qoe = await until('a real-time startup beacon in the analytics summary', async () => {
    const r = await fetch(`${server.http}/api/analytics/streams/${NAME}/summary?from=${Date.now() - 60_000}`);
    const s = r.ok ? await r.json() : null;
    return s && s.startups >= 1 && s.startup_p50_ms !== null ? s : null;
  }, 30_000, 1000);
  const beacons = await page.evaluate(() => ({ sent: window.rivulet.qoe.sent, failed: window.rivulet.qoe.failed }));
  assert(beacons.sent >= 1 && beacons.failed === 0, `beacons sent and none refused: ${JSON.stringify(beacons)}`);
  log(`QoE in real time: startup p50 ${qoe.startup_p50_ms} ms, latency ${qoe.avg_live_latency_ms} ms, ${beacons.sent} beacons`);
  await playsInRealTime(page, server, 'after a reload');
  // Each viewer joined between the rung's IDRs and asked the transcoder for one rather
  // than wait for the next segment; the LL-HLS segments keep their 2 s cadence (a
  // requested IDR is not a segment boundary).
  const requestedIdrs = await until('IDRs made for joining viewers', async () => {
    const text = await (await fetch(`${server.http}/metrics`)).text();
    const m = /^transcode_requested_idrs_total\{[^}]*rendition="360p"[^}]*\} (\d+)/m.exec(text);
    return m && Number(m[1]) >= 1 ? Number(m[1]) : null;
  }, 10_000);
  const durations = await until('three LL-HLS segments', async () => {
    const hls = await (await fetch(`${server.http}/live/${NAME}/360p/index.m3u8`)).text();
    const d = [...hls.matchAll(/#EXTINF:([\d.]+)/g)].map((m) => Number(m[1]));
    return d.length >= 3 ? d : null;
  }, 15_000);
  assert(durations.slice(1).every((d) => d >= 1.9 && d <= 2.1), `segments of 2 s beside the requested IDRs: ${durations}`);
  log(`${requestedIdrs} IDR(s) made for joining viewers; LL-HLS segments ${durations.slice(1).join(', ')} s`);
  // The first page's session ended (DELETE on pagehide, or ICE consent stopping).
  await until('one WebRTC session on the server', async () => (await sessions(server)) === 1, 45_000);

  // The publisher reconnects: the same page keeps playing (the session stays up over
  // the grace period and continues from the new publisher's first keyframe).
  publisher.kill('SIGKILL');
  await new Promise((r) => setTimeout(r, 3000));
  const before = await playback(page);
  publisher = ffmpegPublisher(`${server.rtmp}/live/${KEY}`);
  const resumed = await until('frames after the publisher reconnected', async () => {
    const p = await playback(page);
    return p.frames >= before.frames + 30 && p.mode === 'webrtc' ? p : null;
  }, 60_000);
  log(`publisher reconnect: ${before.frames} → ${resumed.frames} frames on the same page`);
  assertNoPageErrors(page);

  await browser.close();

  // A viewer whose network blocks UDP: the server's UDP candidates taken out of the
  // answer (as if none of its datagrams got through), Chromium connects over ICE-TCP
  // to the same port and decodes the stream.
  const tcpBrowser = await launchBrowser();
  const tcpPage = await newPage(tcpBrowser);
  await tcpPage.goto(`${server.http}/watch/${NAME}?mode=hls`);
  const overTcp = await tcpPage.evaluate(async (url) => {
    const pc = new RTCPeerConnection();
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    const answer = await r.text();
    const tcpOnly = answer.split('\r\n').filter((l) => !(l.startsWith('a=candidate:') && / udp /i.test(l))).join('\r\n');
    await pc.setRemoteDescription({ type: 'answer', sdp: tcpOnly });
    const deadline = Date.now() + 30_000;
    let frames = 0;
    while (Date.now() < deadline && frames < 30) {
      await new Promise((done) => setTimeout(done, 250));
      frames = 0;
      for (const s of (await pc.getStats()).values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'video') frames = s.framesDecoded || 0;
      }
    }
    const stats = [...(await pc.getStats()).values()];
    const transport = stats.find((s) => s.type === 'transport');
    const selected = stats.find((s) => s.id === transport?.selectedCandidatePairId);
    const remote = stats.find((s) => s.id === selected?.remoteCandidateId);
    // Kept playing while hostile peers try the same port (below).
    window.tcpPeer = pc;
    return {
      status: r.status,
      offered: (answer.match(/ typ host tcptype passive/g) || []).length,
      frames,
      remote: remote ? `${remote.protocol} ${remote.candidateType} ${remote.tcpType || ''}`.trim() : null,
      port: remote ? remote.port : null,
    };
  }, `/live/${NAME}/whep`);
  assert(overTcp.status === 201 && overTcp.offered > 0, `the answer offers a passive TCP candidate: ${JSON.stringify(overTcp)}`);
  assert(overTcp.remote === 'tcp host passive', `connected over the server's TCP candidate: ${JSON.stringify(overTcp)}`);
  assert(overTcp.frames >= 30, `frames decoded over TCP: ${JSON.stringify(overTcp)}`);
  log(`UDP blocked: ${overTcp.frames} frames decoded over ICE-TCP (${overTcp.remote})`);

  // Hostile peers on the ICE-TCP port, beside that viewer: a frame that is no
  // session's ends its connection; connections over the per-address cap are closed at
  // once (and logged with the flag); one that never sends is closed (10 s for its
  // first frame). The viewer plays on.
  const connect = () => new Promise((done) => {
    const socket = net.connect(overTcp.port, '127.0.0.1', () => done(socket));
    socket.on('error', () => {});
  });
  const closedWithin = (socket, ms) => new Promise((done) => {
    const timer = setTimeout(() => done(false), ms);
    socket.on('close', () => {
      clearTimeout(timer);
      done(true);
    });
  });
  const framesOverTcp = () => tcpPage.evaluate(async () => {
    for (const s of (await window.tcpPeer.getStats()).values()) if (s.type === 'inbound-rtp' && s.kind === 'video') return s.framesDecoded || 0;
    return 0;
  });
  const framesBefore = await framesOverTcp();
  const junk = await connect();
  junk.write(Buffer.from([0, 4, ...Buffer.from('junk')]));
  assert(await closedWithin(junk, 10_000), 'a connection whose frame is no session\'s is closed');
  const openNow = async () => Number(/^webrtc_tcp_connections (\d+)/m.exec(await (await fetch(`${server.http}/metrics`)).text())?.[1] || 0);
  await until('the junk connection gone from the count', async () => (await openNow()) < TCP_PER_IP, 10_000);
  const honest = await openNow();
  const silent = [];
  for (let i = honest; i < TCP_PER_IP; i++) silent.push(await connect());
  const silentClosed = silent.map((socket) => closedWithin(socket, 30_000));
  await until('the silent connections counted', async () => (await openNow()) === TCP_PER_IP, 10_000);
  const over = await connect();
  assert(await closedWithin(over, 5_000), `a connection over the cap of ${TCP_PER_IP} from one address is closed at once`);
  await until('the refusal in the log', async () => server.output.some((l) => /refusing a WebRTC TCP connection/.test(l) && /--webrtc-tcp-max-per-ip/.test(l)), 10_000);
  assert((await Promise.all(silentClosed)).every(Boolean), 'connections that never send are closed');
  const framesAfter = await until('the TCP viewer playing on', async () => {
    const f = await framesOverTcp();
    return f >= framesBefore + 60 ? f : null;
  }, 30_000);
  log(`ICE-TCP abuse: junk closed, ${silent.length} silent closed, 1 over the cap refused; the viewer decoded ${framesAfter - framesBefore} frames meanwhile`);
  assertNoPageErrors(tcpPage);
  await tcpBrowser.close();

  // A second client we did not write: aiortc (PyPI) as a WHEP viewer.
  const aiortc = await new Promise((resolveRun) => {
    const py = spawn('python3', [join(import.meta.dirname, 'whep_aiortc.py'), whep, '30'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    py.stdout.on('data', (d) => { out += d; });
    py.stderr.on('data', (d) => { out += d; });
    py.on('exit', (code) => resolveRun({ code, out: out.trim() }));
  });
  if (aiortc.code === 77) log(`aiortc client: ${aiortc.out}`);
  else {
    assert(aiortc.code === 0, `the aiortc WHEP client failed (${aiortc.code}):\n${aiortc.out}`);
    log(aiortc.out.split('\n').pop());
  }
  publisher.kill('SIGKILL');

  // Where WebRTC cannot work (here: a server with it off), the page plays LL-HLS.
  const plain = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source', '--no-webrtc']);
  const second = ffmpegPublisher(`${plain.rtmp}/live/${KEY}`);
  await until('the second stream to be live', async () => (await fetch(`${plain.http}/live/${NAME}/master.m3u8`)).status === 200, 90_000);
  const off = await fetch(`${plain.http}/live/${NAME}/whep`, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: 'v=0' });
  assert(off.status === 503, `WHEP with WebRTC off: ${off.status}`);
  const browser2 = await launchBrowser();
  const page2 = await newPage(browser2);
  await page2.goto(`${plain.http}/watch/${NAME}?mode=webrtc`);
  await waitInPage(page2, 'the LL-HLS fallback to play', () => window.rivulet.mode === 'hls' && document.body.dataset.state === 'playing' && document.querySelector('video').currentTime > 1, undefined, 90_000);
  const label = await page2.textContent('#mode');
  assert(label === 'LL-HLS', `the toggle says LL-HLS after the fallback, not ${label}`);
  log('WebRTC off: the page fell back to LL-HLS and plays');
  await browser2.close();
  second.kill('SIGKILL');
});
