// WHIP ingest end to end against the real binary:
//   node web/tests/whip.mjs [path/to/rivulet]
// Headless Chromium publishes its fake camera and microphone
// (--use-fake-device-for-media-stream) with its own RTCPeerConnection and a fetch POST
// to /whip/KEY; the stream then plays over LL-HLS: ffprobe decodes video frames at the
// transcoded rung, the audio is AAC, a segment starts with an IDR; a second page plays
// it in real time over WHEP. Refusals: no key
// 401, a wrong key 403, malformed SDP 400, an offer without H.264 406, a second
// publisher while live 409, CORS exposing Location. DELETE ends the publish and the
// stream goes offline. A publisher above the ingest bitrate cap is closed. Then aiortc (PyPI, web/tests/whip_aiortc.py), a WebRTC stack
// we did not write, publishes with the key as Bearer token and the stream plays again.

import { spawn } from 'node:child_process';
import { join } from 'node:path';

import {
  api, assert, assertNoPageErrors, ffprobe, launchBrowser, log, newPage, rivuletBinary, run,
  startServer, until,
} from './lib.mjs';

const NAME = 'cam';
const KEY = 'whip-secret-key-1234';

/** The media playlists of the stream's master playlist, by the name in their URI. */
async function renditions(server) {
  const master = await (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).text();
  return master.split('\n').filter((l) => l && !l.startsWith('#')).map((uri) => new URL(uri, `${server.http}/live/${NAME}/`).href);
}

/** Asserts that the LL-HLS of the stream plays: frames decode, AAC audio, an IDR first. */
async function playsOverHls(server, label) {
  await until(`${label}: the stream to be on LL-HLS`, async () => (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).status === 200, 60_000);
  const playlists = await renditions(server);
  const rung = playlists.find((u) => u.includes('360p'));
  assert(rung, `${label}: a 360p rung in ${playlists.join(', ')}`);
  // A few segments, so that ffprobe has seconds of media to decode.
  await until(`${label}: segments of the 360p rung`, async () => {
    const text = await (await fetch(rung)).text();
    return (text.match(/#EXTINF/g) || []).length >= 2;
  }, 60_000);
  // The stream is live (its playlist never ends): ffprobe reads its first 200 packets
  // (audio and video), decoding them.
  const probe = ffprobe(['-read_intervals', '%+#200', '-show_entries', 'stream=codec_type,codec_name,width,height:frame=media_type,key_frame,pict_type'], rung);
  const video = probe.streams.find((s) => s.codec_type === 'video');
  const audio = probe.streams.find((s) => s.codec_type === 'audio');
  const pictures = probe.frames.filter((f) => f.media_type === 'video');
  video.nb_read_frames = pictures.length;
  assert(pictures.length >= 30, `${label}: video frames decode at 360p: ${pictures.length}`);
  assert(video.height === 360, `${label}: the rung is 360 lines high: ${JSON.stringify(video)}`);
  assert(audio && audio.codec_name === 'aac', `${label}: the audio is AAC: ${JSON.stringify(probe.streams)}`);
  assert(probe.frames.some((f) => f.media_type === 'audio'), `${label}: audio frames decode`);
  const first = pictures[0];
  assert(first.key_frame === 1 && first.pict_type === 'I', `${label}: the first segment starts with an IDR: ${JSON.stringify(first)}`);
  log(`${label}: ${video.nb_read_frames} video frames decoded at ${video.width}x${video.height}, audio ${audio.codec_name}, the first frame an IDR`);
}

async function live(server) {
  const { json } = await api(server, 'GET', `/api/streams/${NAME}`);
  return json && json.live && json.live.live;
}

/**
 * In the page: publish the fake camera and microphone to `url`, H.264 preferred.
 * `tcpOnly`: the server's UDP candidates are taken out of its answer (a network that
 * blocks UDP).
 */
function publishFromPage(page, url, headers = {}, tcpOnly = false) {
  return page.evaluate(async ({ url, headers, tcpOnly }) => {
    const media = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360, frameRate: 30 }, audio: true });
    const pc = new RTCPeerConnection();
    for (const track of media.getTracks()) {
      const t = pc.addTransceiver(track, { direction: 'sendonly' });
      if (track.kind === 'video') {
        // H.264, packetization mode 1 first (what the server prefers).
        const h264 = RTCRtpSender.getCapabilities('video').codecs.filter((c) => c.mimeType === 'video/H264');
        h264.sort((a, b) => Number(/packetization-mode=1/.test(b.sdpFmtpLine)) - Number(/packetization-mode=1/.test(a.sdpFmtpLine)));
        t.setCodecPreferences(h264);
      }
    }
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp', ...headers }, body: pc.localDescription.sdp });
    const text = await r.text();
    if (r.status !== 201) {
      pc.close();
      return { status: r.status, text };
    }
    if (tcpOnly && !/ typ host tcptype passive/.test(text)) {
      pc.close();
      return { status: r.status, text: `no passive TCP candidate in the answer:\n${text}` };
    }
    const answer = tcpOnly ? text.split('\r\n').filter((l) => !(l.startsWith('a=candidate:') && / udp /i.test(l))).join('\r\n') : text;
    await pc.setRemoteDescription({ type: 'answer', sdp: answer });
    window.whip = { pc, location: r.headers.get('location') };
    return { status: r.status, location: window.whip.location, expose: r.headers.get('access-control-expose-headers') };
  }, { url, headers, tcpOnly });
}

/** In the page: the protocol and type of the server's candidate the WHIP publish uses. */
function whipCandidate(page) {
  return page.evaluate(async () => {
    const stats = [...(await window.whip.pc.getStats()).values()];
    const transport = stats.find((s) => s.type === 'transport');
    const selected = stats.find((s) => s.id === transport?.selectedCandidatePairId);
    const remote = stats.find((s) => s.id === selected?.remoteCandidateId);
    return remote ? `${remote.protocol} ${remote.candidateType} ${remote.tcpType || ''}`.trim() : null;
  });
}

run('whip', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', '360p', '--webrtc-listen', '127.0.0.1:0']);
  log(`server ${server.http}`);
  const whip = `${server.http}/whip`;
  const sdp = { 'Content-Type': 'application/sdp' };

  // Refusals that need no browser.
  const noKey = await fetch(whip, { method: 'POST', headers: sdp, body: 'v=0' });
  assert(noKey.status === 401 && /Bearer/.test(await noKey.text()), `no key: ${noKey.status}`);
  const wrongKey = await fetch(`${whip}/not-the-key`, { method: 'POST', headers: sdp, body: 'v=0' });
  const wrongText = await wrongKey.text();
  assert(wrongKey.status === 403 && /key/.test(wrongText), `a wrong key: ${wrongKey.status} ${wrongText}`);
  const wrongBearer = await fetch(whip, { method: 'POST', headers: { ...sdp, Authorization: 'Bearer nope' }, body: 'v=0' });
  assert(wrongBearer.status === 403, `a wrong Bearer token: ${wrongBearer.status}`);
  const malformed = await fetch(`${whip}/${KEY}`, { method: 'POST', headers: sdp, body: 'this is not SDP' });
  const malformedText = await malformed.text();
  assert(malformed.status === 400 && /SDP/.test(malformedText), `malformed SDP: ${malformed.status} ${malformedText}`);
  const wrongType = await fetch(`${whip}/${KEY}`, { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: 'v=0' });
  assert(wrongType.status === 415, `a non-SDP content type: ${wrongType.status}`);
  const preflight = await fetch(`${whip}/${KEY}`, { method: 'OPTIONS', headers: { Origin: 'https://studio.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,authorization' } });
  assert(preflight.ok && preflight.headers.get('access-control-allow-origin') === '*', `CORS preflight: ${preflight.status}`);

  // Chromium publishes its fake camera and microphone.
  const browser = await launchBrowser(['--use-fake-device-for-media-stream', '--use-fake-ui-for-media-stream']);
  const page = await newPage(browser);
  await page.goto(`${server.http}/watch/${NAME}`);
  const audioOnly = await page.evaluate(async (url) => {
    const media = await navigator.mediaDevices.getUserMedia({ audio: true });
    const pc = new RTCPeerConnection();
    pc.addTransceiver(media.getAudioTracks()[0], { direction: 'sendonly' });
    await pc.setLocalDescription(await pc.createOffer());
    const r = await fetch(url, { method: 'POST', headers: { 'Content-Type': 'application/sdp' }, body: pc.localDescription.sdp });
    pc.close();
    return { status: r.status, text: await r.text() };
  }, `/whip/${KEY}`);
  assert(audioOnly.status === 406 && /H\.264/.test(audioOnly.text), `an offer without video: ${JSON.stringify(audioOnly)}`);

  const published = await publishFromPage(page, `/whip/${KEY}`);
  assert(published.status === 201 && /^\/whip\/session\/[0-9a-f]+$/.test(published.location), `POST /whip/KEY: ${JSON.stringify(published)}`);
  await until('the WHIP stream to be live', () => live(server), 30_000);
  await playsOverHls(server, 'Chromium over WHIP');

  // The same stream in real time: a second page plays it over WHEP.
  const viewer = await newPage(browser);
  await viewer.goto(`${server.http}/watch/${NAME}?mode=webrtc`);
  const played = await until('WHEP playback of the WHIP stream', () => viewer.evaluate(async () => {
    const p = window.rivulet.player;
    if (window.rivulet.mode !== 'webrtc' || !p.pc) return null;
    for (const s of (await p.pc.getStats()).values()) {
      if (s.type === 'inbound-rtp' && s.kind === 'video' && s.framesDecoded >= 30) return s.framesDecoded;
    }
    return null;
  }), 60_000);
  log(`WHEP: ${played} frames of the WHIP stream decoded in a second page`);
  await viewer.close();

  // A second publisher on the live stream: 409, with the key as Bearer token this time.
  const page2 = await newPage(browser);
  await page2.goto(`${server.http}/watch/${NAME}`);
  const second = await publishFromPage(page2, '/whip', { Authorization: `Bearer ${KEY}` });
  assert(second.status === 409 && /already/.test(second.text), `a second publisher: ${JSON.stringify(second)}`);
  const trickle = await fetch(`${server.http}${published.location}`, { method: 'PATCH', headers: { 'Content-Type': 'application/trickle-ice-sdpfrag' }, body: 'a=end-of-candidates\r\n' });
  assert(trickle.status === 204, `PATCH trickle: ${trickle.status}`);

  // DELETE ends the publish: the stream goes offline.
  const deleted = await fetch(`${server.http}${published.location}`, { method: 'DELETE' });
  assert(deleted.status === 200, `DELETE: ${deleted.status}`);
  await until('the stream to go offline after DELETE', async () => !(await live(server)), 30_000);
  assert((await fetch(`${server.http}${published.location}`, { method: 'DELETE' })).status === 404, 'a second DELETE finds no session');
  await page.evaluate(() => window.whip.pc.close());
  log('DELETE: the stream went offline');

  // A publisher whose network blocks UDP publishes over ICE-TCP.
  const overTcp = await publishFromPage(page, `/whip/${KEY}`, {}, true);
  assert(overTcp.status === 201, `POST /whip/KEY for TCP: ${JSON.stringify(overTcp)}`);
  await until('the WHIP connection over TCP', () => page.evaluate(() => window.whip.pc.connectionState === 'connected'), 30_000);
  const used = await whipCandidate(page);
  assert(used === 'tcp host passive', `published over the server's TCP candidate, not ${used}`);
  await until('the stream published over TCP to be live', () => live(server), 30_000);
  // Media of this session, not the ended playlist of the last one.
  await until('LL-HLS of the session published over TCP', async () => {
    const r = await fetch(`${server.http}/live/${NAME}/360p/index.m3u8`);
    return r.status === 200 && !(await r.text()).includes('#EXT-X-ENDLIST');
  }, 30_000);
  await playsOverHls(server, 'Chromium over WHIP on TCP');
  log(`UDP blocked: published over ICE-TCP (${used})`);
  assert((await fetch(`${server.http}${overTcp.location}`, { method: 'DELETE' })).status === 200, 'DELETE of the TCP publish');
  await until('the stream to go offline after the TCP publish', async () => !(await live(server)), 30_000);
  await page.evaluate(() => window.whip.pc.close());
  assertNoPageErrors(page);

  // A publisher far above the ingest bitrate cap (RTMP's, SRT's and WHIP's:
  // --rtmp-max-bitrate-kbps) is closed, the log naming the rule, and its stream ends.
  const capped = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source', '--webrtc-listen', '127.0.0.1:0', '--rtmp-max-bitrate-kbps', '40']);
  const cappedPage = await newPage(browser);
  await cappedPage.goto(`${capped.http}/watch/${NAME}?mode=hls`);
  const overCap = await publishFromPage(cappedPage, `/whip/${KEY}`);
  assert(overCap.status === 201, `POST /whip/KEY to the capped server: ${JSON.stringify(overCap)}`);
  await until('the publisher over the cap closed, with the rule in the log', async () => capped.output.some((l) => /closing the WHIP publisher/.test(l) && /above 40 kbit\/s/.test(l) && /--rtmp-max-bitrate-kbps/.test(l)), 30_000);
  await until('its publish to end', async () => (await fetch(`${capped.http}/metrics`).then((r) => r.text())).match(/^whip_publish_rejected_total\{reason="bitrate"\} 1/m) && !(await live(capped)), 30_000);
  log('a WHIP publisher above --rtmp-max-bitrate-kbps 40 was closed');
  await cappedPage.evaluate(() => window.whip.pc.close());
  await browser.close();

  // A second client we did not write: aiortc publishing with the key as Bearer token.
  const aiortc = spawn('python3', [join(import.meta.dirname, 'whip_aiortc.py'), whip, KEY, '20'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  aiortc.stdout.on('data', (d) => { out += d; });
  aiortc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolveExit) => aiortc.on('exit', (code) => resolveExit(code)));
  const first = await Promise.race([until('the aiortc stream to be live', () => live(server), 60_000).then(() => 'live'), exited]);
  if (first === 77) {
    log(`aiortc client: ${out.trim()}`);
    return;
  }
  assert(first === 'live', `the aiortc publisher ended early (${first}):\n${out}`);
  await playsOverHls(server, 'aiortc over WHIP');
  const code = await exited;
  assert(code === 0, `the aiortc WHIP publisher failed (${code}):\n${out}`);
  log(out.trim().split('\n').pop());
  await until('the stream to go offline after aiortc DELETE', async () => !(await live(server)), 30_000);
});
