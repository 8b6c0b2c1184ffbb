// The operator dashboard: /dashboard (every stream) and /dashboard/streams/NAME (one
// stream's charts and its metadata editor). Needs the admin token, typed in by the
// operator and kept in sessionStorage (this tab only).

import uPlot from './vendor/uPlot.esm.js';

const config = readConfig();
const analytics = typeof config.analytics === 'string' ? config.analytics : null;
const TOKEN_KEY = 'rivulet-admin-token';
const $ = (id) => document.getElementById(id);
const path = location.pathname.split('/').filter(Boolean);
const streamName = path[1] === 'streams' && path[2] ? decodeURIComponent(path[2]) : null;

/** Thumbnails are grabbed again after this long, ms. */
const THUMB_REFRESH_MS = 10_000;
const LIST_REFRESH_MS = 5000;
const CHART_REFRESH_MS = 30_000;

// ---- Token ----

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

async function api(method, url, body) {
  const headers = { Authorization: `Bearer ${token() || ''}` };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: 'no-store' });
  if (r.status === 401) {
    signOut('The admin token was refused. Sign in again.');
    throw new Error('unauthorized');
  }
  const json = r.status === 204 ? null : await r.json().catch(() => null);
  if (!r.ok) throw new Error((json && json.error) || `${r.status} ${r.statusText}`);
  return json;
}

/** Whether `candidate` is the admin token. An admin request that changes nothing:
 *  PATCH of an impossible stream name answers 401 to a wrong token, 422 to the right one. */
async function checkToken(candidate) {
  const r = await fetch('/api/streams/.check', {
    method: 'PATCH',
    headers: { Authorization: `Bearer ${candidate}`, 'Content-Type': 'application/json' },
    body: '{}',
  });
  return r.status !== 401;
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin(message);
}

function showLogin(message = '') {
  for (const id of ['list', 'stream', 'create', 'created', 'nav']) $(id).hidden = true;
  $('login').hidden = false;
  $('login-error').textContent = message;
  $('token').focus();
}

$('login-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const candidate = $('token').value.trim();
  $('login-error').textContent = '';
  try {
    if (!(await checkToken(candidate))) {
      $('login-error').textContent = 'That is not the admin token.';
      return;
    }
  } catch (err) {
    $('login-error').textContent = `Cannot reach the server: ${err.message}`;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, candidate);
  $('token').value = '';
  $('login').hidden = true;
  start();
});
$('sign-out').addEventListener('click', () => signOut());

// ---- Create a stream ----

$('new-stream').addEventListener('click', () => {
  $('create').hidden = false;
  $('create-name').focus();
});
$('create-cancel').addEventListener('click', () => {
  $('create').hidden = true;
  $('create-form').reset();
});
$('create-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  $('create-error').textContent = '';
  try {
    const created = await api('POST', '/api/streams', {
      name: f.name.value.trim(),
      title: f.title.value,
      description: f.description.value,
      tags: splitTags(f.tags.value),
    });
    e.target.reset();
    $('create').hidden = true;
    showCreated(created);
    refreshList();
  } catch (err) {
    $('create-error').textContent = err.message;
  }
});

function showCreated(created) {
  const host = location.hostname.includes(':') ? `[${location.hostname}]` : location.hostname;
  const server = config.rtmpPort ? `rtmp://${host}:${config.rtmpPort}/live` : 'rtmp://HOST:1935/live';
  $('created-server').textContent = server;
  $('created-key').textContent = created.key;
  $('created-url').textContent = `${server}/${created.key}`;
  const watch = `${location.origin}/watch/${created.name}`;
  $('created-watch').textContent = watch;
  $('created-watch').href = watch;
  $('created').hidden = false;
  $('created').focus();
}
$('created-done').addEventListener('click', () => {
  // The key is gone from the page for good.
  for (const id of ['created-key', 'created-url']) $(id).textContent = '';
  $('created').hidden = true;
});
document.addEventListener('click', (e) => {
  const button = e.target.closest('button.copy');
  if (!button) return;
  const text = $(button.dataset.copy).textContent;
  navigator.clipboard?.writeText(text).then(
    () => (button.textContent = 'Copied'),
    () => (button.textContent = 'Select and copy'),
  );
});

// ---- The list ----

let listTimer = 0;

async function refreshList() {
  clearTimeout(listTimer);
  try {
    const [page, summary] = await Promise.all([
      api('GET', '/api/streams?limit=500'),
      analytics === null ? null : fetchJson(`${analytics}/api/analytics/summary?from=${Date.now() - 5 * 60_000}`),
    ]);
    const viewers = new Map((summary?.streams || []).map((s) => [s.value, s.concurrent_viewers]));
    $('platform').textContent = summary
      ? `${summary.concurrent_viewers} watching now · ${page.streams.filter((s) => s.live.live).length} live of ${page.streams.length}`
      : `${page.streams.length} streams`;
    renderStreams(page.streams, viewers);
    $('list-error').textContent = '';
  } catch (err) {
    if (err.message !== 'unauthorized') $('list-error').textContent = `Cannot load the streams: ${err.message}`;
  }
  listTimer = setTimeout(refreshList, LIST_REFRESH_MS);
}

const cards = new Map();

function renderStreams(streams, viewers) {
  const list = $('streams');
  const seen = new Set();
  if (!streams.length) {
    list.innerHTML = '<li class="muted">No streams yet: create one with “New stream”.</li>';
    return;
  }
  list.querySelector('li.muted')?.remove();
  for (const s of streams) {
    seen.add(s.name);
    let card = cards.get(s.name);
    if (!card) {
      card = makeCard(s.name);
      cards.set(s.name, card);
    }
    list.appendChild(card.el); // keeps the API's order
    updateCard(card, s, viewers.get(s.name) ?? 0);
  }
  for (const [name, card] of cards) {
    if (!seen.has(name)) {
      card.el.remove();
      cards.delete(name);
    }
  }
}

function makeCard(name) {
  const el = document.createElement('li');
  el.className = 'stream-card';
  el.dataset.stream = name;
  el.innerHTML = `
    <div class="thumb"><span class="badge"></span><span class="placeholder">offline</span></div>
    <div class="stream-body">
      <h2><a></a></h2>
      <div class="muted title"></div>
      <dl class="stats">
        <dt>Viewers</dt><dd class="viewers"></dd>
        <dt>Uptime</dt><dd class="uptime"></dd>
        <dt>Ingest</dt><dd class="bitrate"></dd>
        <dt>Renditions</dt><dd class="renditions"></dd>
      </dl>
      <div class="links"><a class="watch">Watch</a><a class="details">Charts and edit</a></div>
    </div>`;
  const q = (sel) => el.querySelector(sel);
  q('h2 a').textContent = name;
  q('h2 a').href = `/dashboard/streams/${encodeURIComponent(name)}`;
  q('a.details').href = q('h2 a').href;
  q('a.details').setAttribute('aria-label', `Charts and edit: ${name}`);
  q('a.watch').href = `/watch/${encodeURIComponent(name)}`;
  q('a.watch').setAttribute('aria-label', `Watch ${name}`);
  return { el, q, name, master: null, thumbAt: 0 };
}

function updateCard(card, s, viewers) {
  const { q } = card;
  card.last = [s, viewers];
  const live = s.live.live;
  card.el.dataset.live = String(live);
  q('.badge').textContent = live ? 'live' : 'offline';
  q('.badge').classList.toggle('live', live);
  q('.title').textContent = s.title || '';
  q('.viewers').textContent = String(viewers);
  q('.uptime').textContent = live && s.live.since ? duration(Date.now() - s.live.since) : '—';
  const variants = card.variants || [];
  const reported = s.live.ingest_bitrate;
  const source = variants.find((v) => v.name === 'source');
  q('.bitrate').textContent = !live ? '—' : reported ? mbps(reported) : source ? `${mbps(source.bandwidth)} (source)` : 'not reported';
  q('.renditions').textContent = live ? variants.map((v) => v.name).join(', ') || '…' : '—';
  if (live && (!card.thumbAt || Date.now() - card.thumbAt > THUMB_REFRESH_MS)) {
    card.thumbAt = Date.now();
    loadVariants(card, s.name);
    queueThumbnail(card, s);
  }
  if (!live) {
    card.variants = [];
    card.thumbAt = 0;
    const thumb = q('.thumb');
    thumb.querySelector('img')?.remove();
    thumb.querySelector('.placeholder').hidden = false;
  }
}

async function loadVariants(card, name) {
  try {
    const r = await fetch(`/live/${encodeURIComponent(name)}/master.m3u8`, { cache: 'no-store' });
    if (r.ok) card.variants = parseMaster(await r.text());
    if (card.last) updateCard(card, ...card.last);
  } catch {
    card.variants = [];
  }
}

/** `[{ name, bandwidth, resolution }]` of a multivariant playlist. */
function parseMaster(text) {
  const lines = text.split('\n').map((l) => l.trim());
  const out = [];
  lines.forEach((line, i) => {
    if (!line.startsWith('#EXT-X-STREAM-INF:')) return;
    const uri = lines[i + 1] || '';
    out.push({
      name: uri.split('/')[0],
      bandwidth: Number(/BANDWIDTH=(\d+)/.exec(line)?.[1] || 0),
      resolution: /RESOLUTION=(\d+x\d+)/.exec(line)?.[1] || '',
    });
  });
  return out;
}

// Thumbnails: the stream's own `thumbnail` URL when the metadata has one; otherwise
// the server's picture of its latest keyframe (`/live/NAME/thumbnail.jpg`, decoded on
// the server, not counted as a viewer), fetched again every THUMB_REFRESH_MS.
function queueThumbnail(card, s) {
  setThumb(card, s.thumbnail || `/live/${encodeURIComponent(card.name)}/thumbnail.jpg?width=320&t=${Date.now()}`);
}

function setThumb(card, url) {
  const thumb = card.q('.thumb');
  let img = thumb.querySelector('img');
  if (!img) {
    img = document.createElement('img');
    img.alt = `Latest picture of ${card.name}`;
    thumb.prepend(img);
  }
  img.src = url;
  thumb.querySelector('.placeholder').hidden = true;
}

// ---- One stream ----

let stream = null;

async function showStream() {
  $('stream').hidden = false;
  try {
    stream = await api('GET', `/api/streams/${encodeURIComponent(streamName)}`);
  } catch (err) {
    $('stream-title').textContent = `${streamName}: ${err.message}`;
    return;
  }
  document.title = `${stream.name} — Rivulet dashboard`;
  $('stream-watch').href = `/watch/${encodeURIComponent(stream.name)}`;
  renderStreamHead();
  const f = $('edit-form').elements;
  f.title.value = stream.title;
  f.description.value = stream.description;
  f.tags.value = stream.tags.join(', ');
  f.private.checked = Boolean(stream.private);
  refreshCharts();
}

function renderStreamHead() {
  $('stream-title').textContent = stream.title ? `${stream.title} (${stream.name})` : stream.name;
  $('stream-badge').textContent = stream.live.live ? 'live' : 'offline';
  $('stream-badge').classList.toggle('live', stream.live.live);
}

$('edit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const f = e.target.elements;
  $('edit-error').textContent = '';
  $('edit-ok').textContent = '';
  try {
    stream = await api('PATCH', `/api/streams/${encodeURIComponent(streamName)}`, {
      title: f.title.value,
      description: f.description.value,
      tags: splitTags(f.tags.value),
      private: f.private.checked,
    });
    f.tags.value = stream.tags.join(', ');
    renderStreamHead();
    $('edit-ok').textContent = 'Saved. Viewers see it now.';
  } catch (err) {
    $('edit-error').textContent = err.message;
  }
});

// A token for a private stream: the watch page passes it on to every request.
$('edit-token').addEventListener('click', async () => {
  $('edit-error').textContent = '';
  $('edit-link').textContent = '';
  try {
    const minted = await api('POST', `/api/streams/${encodeURIComponent(streamName)}/tokens`, {});
    const a = document.createElement('a');
    a.href = minted.watch_url;
    a.textContent = new URL(minted.watch_url, location.href).href;
    $('edit-link').append('Watch link: ', a);
  } catch (err) {
    $('edit-error').textContent = err.message;
  }
});

const CHARTS = [
  { id: 'viewers', title: 'Viewers (unique per minute)', metric: 'viewers' },
  { id: 'country', title: 'Viewers by country', metric: 'viewers', by: 'country' },
  { id: 'rendition', title: 'Viewers by rendition', metric: 'viewers', by: 'rendition' },
  { id: 'startup', title: 'Startup time (ms)', series: [{ metric: 'startup_p50_ms', label: 'p50' }, { metric: 'startup_p95_ms', label: 'p95' }] },
  { id: 'rebuffer', title: 'Rebuffer ratio (%)', metric: 'rebuffer_ratio', scale: 100 },
  { id: 'latency', title: 'Live latency (ms, mean)', metric: 'avg_live_latency_ms' },
];
const COLORS = ['#4da3ff', '#e5484d', '#46c37b', '#ffd166', '#b78cff', '#ff9f43', '#2ec4b6', '#f15bb5'];
const plots = new Map();

async function refreshCharts() {
  if (analytics === null) {
    $('charts').innerHTML = '<p class="muted">Analytics is off on this server.</p>';
    return;
  }
  const to = Date.now();
  const from = to - 60 * 60_000;
  const base = `${analytics}/api/analytics/streams/${encodeURIComponent(streamName)}`;
  try {
    const summary = await fetchJson(`${base}/summary?from=${from}&to=${to}`);
    renderFacts(summary);
    renderEdges(summary.edges || []);
  } catch (err) {
    $('stream-facts').textContent = `Cannot load figures: ${err.message}`;
  }
  for (const chart of CHARTS) {
    const specs = chart.series || [{ metric: chart.metric, label: null }];
    try {
      const answers = await Promise.all(
        specs.map((s) => fetchJson(`${base}/timeseries?metric=${s.metric}${chart.by ? `&by=${chart.by}` : ''}&from=${from}&to=${to}&step=60000`)),
      );
      const series = [];
      answers.forEach((a, i) => {
        for (const s of a.series) series.push({ label: specs[i].label || s.key || 'total', points: s.points });
      });
      drawChart(chart, series);
    } catch (err) {
      drawChart(chart, [], err.message);
    }
  }
  setTimeout(refreshCharts, CHART_REFRESH_MS);
}

function renderFacts(s) {
  const facts = [
    ['Watching now', String(s.concurrent_viewers)],
    ['Unique viewers (1 h)', String(s.unique_viewers)],
    ['Avg watch time', s.avg_watch_time_ms == null ? '—' : duration(s.avg_watch_time_ms)],
    ['Startup p50 / p95', s.startup_p50_ms == null ? '—' : `${s.startup_p50_ms} / ${s.startup_p95_ms} ms`],
    ['Rebuffer ratio', s.rebuffer_ratio == null ? '—' : `${(s.rebuffer_ratio * 100).toFixed(2)} %`],
    ['Live latency', s.avg_live_latency_ms == null ? '—' : `${(s.avg_live_latency_ms / 1000).toFixed(2)} s`],
    ['Avg bitrate', s.avg_bitrate_kbps == null ? '—' : mbps(s.avg_bitrate_kbps * 1000)],
    ['Error rate', s.error_rate == null ? '—' : `${(s.error_rate * 100).toFixed(2)} %`],
  ];
  $('stream-facts').replaceChildren(
    ...facts.map(([label, value]) => {
      const d = document.createElement('div');
      d.className = 'fact';
      d.innerHTML = '<div class="label"></div><div class="value"></div>';
      d.firstChild.textContent = label;
      d.lastChild.textContent = value;
      return d;
    }),
  );
}

// Edge → the upstream (pipeline) it serves the stream from.
function renderEdges(edges) {
  $('edges').hidden = edges.length === 0;
  $('edges-table').tBodies[0].replaceChildren(
    ...edges.map((e) => {
      const tr = document.createElement('tr');
      const ago = Math.max(0, Math.round((Date.now() - e.last_seen_ms) / 1000));
      for (const text of [e.edge, e.upstream, `${ago} s ago`]) {
        const td = document.createElement('td');
        td.textContent = text;
        tr.append(td);
      }
      tr.dataset.edge = e.edge;
      return tr;
    }),
  );
}

function drawChart(chart, series, error) {
  let box = document.getElementById(`chart-${chart.id}`);
  if (!box) {
    box = document.createElement('figure');
    box.className = 'chart';
    box.id = `chart-${chart.id}`;
    box.innerHTML = '<h3></h3><div class="plot"></div>';
    box.querySelector('h3').textContent = chart.title;
    box.setAttribute('aria-label', chart.title);
    $('charts').appendChild(box);
  }
  const area = box.querySelector('.plot');
  plots.get(chart.id)?.destroy();
  plots.delete(chart.id);
  const hasData = series.some((s) => s.points.some(([, v]) => v !== null));
  if (error || !hasData) {
    area.innerHTML = `<div class="empty">${error ? 'Cannot load this chart.' : 'No data in the last hour.'}</div>`;
    return;
  }
  area.replaceChildren();
  const xs = series[0].points.map(([t]) => t / 1000);
  const data = [xs, ...series.map((s) => s.points.map(([, v]) => (v === null ? null : v * (chart.scale || 1))))];
  const width = Math.max(260, area.clientWidth || box.clientWidth - 20);
  const plot = new uPlot(
    {
      width,
      height: 200,
      // Points as well as lines: a minute with data between empty ones has no line.
      series: [{}, ...series.map((s, i) => ({ label: s.label, stroke: COLORS[i % COLORS.length], width: 2, spanGaps: false, points: { show: true, size: 6, fill: COLORS[i % COLORS.length] } }))],
      axes: [
        { stroke: '#9aa4b2', grid: { stroke: '#2a303b' } },
        { stroke: '#9aa4b2', grid: { stroke: '#2a303b' } },
      ],
      scales: { y: { range: (u, min, max) => [Math.min(0, min), max > 0 ? max * 1.1 : 1] } },
    },
    data,
    area,
  );
  plots.set(chart.id, plot);
}

// ---- Start ----

function start() {
  $('nav').hidden = false;
  if (streamName) showStream();
  else {
    $('list').hidden = false;
    refreshList();
  }
}

if (token()) start();
else showLogin();

async function fetchJson(url) {
  const r = await fetch(url, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
  return r.json();
}

function splitTags(text) {
  return text.split(',').map((t) => t.trim()).filter(Boolean);
}

function duration(ms) {
  const s = Math.floor(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  return h ? `${h} h ${m} min` : m ? `${m} min ${s % 60} s` : `${s} s`;
}

function mbps(bps) {
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}

function readConfig() {
  try {
    return JSON.parse(document.getElementById('rivulet-config').textContent) || {};
  } catch {
    return {};
  }
}
