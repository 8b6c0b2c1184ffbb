// A private stream in the viewer page: hls.js in Chromium plays it through an edge
// from /watch/NAME?token=…, every request it makes carrying the token.
// Run: node web/tests/private.mjs target/debug/rivulet

import {
  api, assert, assertNoPageErrors, launchBrowser, log, newPage, publish,
  rivuletBinary, run, startEdge, startServer, until, waitInPage,
} from './lib.mjs';

const NAME = 'vip';
const KEY = 'vip-web-key-0123';
const PLAYBACK_KEY = 'k1=web-playback-secret-0123456789';

run('private', async () => {
  const bin = rivuletBinary();
  const server = await startServer(bin, ['--stream', `${NAME}=${KEY}`, '--renditions', 'source', '--playback-key', PLAYBACK_KEY]);
  const edge = await startEdge(bin, [server.http], ['--playback-key', PLAYBACK_KEY]);
  publish(bin, `${server.rtmp}/live/${KEY}`, { size: '320x180', bitrate: '500k' });
  const patched = await api(server, 'PATCH', `/api/streams/${NAME}`, { private: true });
  assert(patched.status === 200 && patched.json.private === true, `PATCH private: ${JSON.stringify(patched)}`);
  await until('the origin to refuse without a token', async () => (await fetch(`${server.http}/live/${NAME}/master.m3u8`)).status === 401);
  const minted = await api(server, 'POST', `/api/streams/${NAME}/tokens`, { expires_in: 600 });
  assert(minted.status === 201, `mint: ${JSON.stringify(minted)}`);
  const { token } = minted.json;
  assert((await fetch(`${edge.url}/live/${NAME}/master.m3u8`)).status === 401, 'the edge refuses without a token');
  // Live before the page opens (an offline stream answers 404, which the page retries).
  await until('the stream to be live through the edge', async () => (await fetch(`${edge.url}${minted.json.master_url}`)).status === 200);

  const browser = await launchBrowser();
  const page = await newPage(browser);
  const live = [];
  page.on('request', (r) => {
    if (r.url().includes('/live/')) live.push(r.url());
  });
  const refused = [];
  page.on('response', (r) => {
    // The page asks for the rewind window (dvr.m3u8): 404 here, not recorded.
    const dvrProbe = r.status() === 404 && new URL(r.url()).pathname.endsWith('/dvr.m3u8');
    if (r.url().includes('/live/') && r.status() >= 400 && !dvrProbe) refused.push(`${r.status()} ${r.url()}`);
  });
  const url = `${edge.url}${minted.json.watch_url}`;
  log(`opening ${url}`);
  await page.goto(url);
  await waitInPage(page, 'the private stream to play', () => document.querySelector('video').currentTime > 3, undefined, 90_000);
  assertNoPageErrors(page);
  const kinds = new Set(live.map((u) => new URL(u).pathname.split('/').pop().replace(/[-0-9]+/g, '')));
  log(`requests: ${live.length}, kinds: ${[...kinds].join(' ')}`);
  for (const u of live) assert(new URL(u).searchParams.get('token') === token, `a request without the token: ${u}`);
  assert(kinds.has('master.mu') && kinds.has('index.mu') && kinds.has('init.mp') && kinds.has('part.ms'), `object kinds: ${[...kinds]}`);
  assert(refused.length === 0, `refused requests: ${refused.join(', ')}`);
  await browser.close();
});
