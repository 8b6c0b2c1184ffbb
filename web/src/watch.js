// The viewer page /watch/NAME: the player, its controls, the stream's title,
// description, tags and live viewer count, kept current without reloading.

import { Player } from './player.js';
import { Qoe, newSessionId } from './qoe.js';
import { WhepPlayer } from './whep.js';

const config = readConfig();
const name = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] || '');
const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const video = $('video');

/** Analytics base URL, or null when analytics is off. */
const analytics = typeof config.analytics === 'string' ? config.analytics : null;
const sessionId = newSessionId();
// A private stream's token: on master.m3u8, the playlists carry it into every URI.
const token = params.get('token');
// `?mode=webrtc`: real time over WHEP, falling back to LL-HLS when it cannot connect.
const mode = params.get('mode') === 'webrtc' ? 'webrtc' : 'hls';
const tokenQuery = token ? `?token=${encodeURIComponent(token)}` : '';
const hlsPlayer = () =>
  new Player(video, {
    src: `/live/${encodeURIComponent(name)}/master.m3u8${tokenQuery}`,
    // The rewind window of a recorded stream (404 when it has none).
    dvrSrc: `/live/${encodeURIComponent(name)}/dvr.m3u8${tokenQuery}`,
    name,
    cmcdSessionId: analytics === null ? undefined : sessionId,
    engine: params.get('engine') || undefined,
  });
let player = mode === 'webrtc' ? new WhepPlayer(video, { name, token, rendition: params.get('rendition') }) : hlsPlayer();
let qoe = analytics === null ? null : new Qoe(player, { name, sessionId, base: analytics });
// The latest picture as the poster while the player loads (made on the server, not a
// viewer); offline it is a 404 and the page shows no picture. Not for a private stream:
// its picture needs the token, and only the origin makes pictures (an edge would refuse).
if (!token) {
  video.poster = `/live/${encodeURIComponent(name)}/thumbnail.jpg?width=640`;
}

// For tests, the benchmark and the curious: window.rivulet.
window.rivulet = {
  get player() { return player; },
  get qoe() { return qoe; },
  sessionId,
  get hls() { return player.hls; },
  get mode() { return player.engine === 'webrtc' ? 'webrtc' : 'hls'; },
};

const STATUS = {
  loading: { text: 'Loading…', spinner: true },
  offline: { text: 'Offline — the page starts playing when the stream goes live.', spinner: false },
  reconnecting: { text: 'Reconnecting…', spinner: true },
  buffering: { text: null, spinner: true },
  paused: { text: 'Press play to start.', spinner: false },
};

function wire(p) {
  p.addEventListener('state', (e) => {
    const { state, message, retry } = e.detail;
    const status = $('status');
    document.body.dataset.state = state;
    if (state === 'playing') {
      status.hidden = true;
      return;
    }
    const s = STATUS[state] || { text: message || 'Something went wrong.', spinner: false };
    status.hidden = false;
    $('spinner').hidden = !s.spinner;
    $('status-text').hidden = s.text === null;
    $('status-text').textContent = s.text || '';
    $('retry').hidden = !(state === 'error' && retry !== false);
    status.classList.toggle('quiet', state === 'buffering');
    if (state === 'offline') $('latency').hidden = true;
    syncMute();
    syncViewers();
  });

  // ---- Quality menu ----

  p.addEventListener('levels', (e) => {
    const select = $('quality');
    select.replaceChildren(new Option('Auto', '-1'));
    for (const l of e.detail.levels) {
      const label = `${l.height ? `${l.height}p` : l.name} · ${mbps(l.bitrate)}`;
      const option = new Option(label, String(l.index));
      option.dataset.rendition = l.name;
      select.add(option);
    }
    select.value = player.autoLevel ? '-1' : String(player.currentLevel);
    select.disabled = e.detail.levels.length === 0;
  });
  p.addEventListener('level', (e) => {
    const select = $('quality');
    const auto = select.options[0];
    const level = player.level;
    // "Auto (720p)": what automatic selection picked.
    auto.textContent = level ? `Auto (${level.height ? `${level.height}p` : level.name})` : 'Auto';
    if (!e.detail.auto) select.value = String(e.detail.index);
  });
  // ---- The rewind window (LL-HLS only: real time has none) ----
  p.addEventListener('mode', () => syncSeek());
  p.addEventListener('state', (e) => {
    if (e.detail.state === 'playing' && dvrWindow === 0) updateDvrWindow();
  });

  // Real time that cannot connect (UDP blocked): LL-HLS instead, in place.
  p.addEventListener('failed', (e) => {
    if (player !== p) return;
    console.warn(`WebRTC failed (${e.detail.message}); playing LL-HLS`);
    player = hlsPlayer();
    if (qoe !== null) qoe.stop();
    if (analytics !== null) qoe = new Qoe(player, { name, sessionId, base: analytics });
    wire(player);
    syncMode();
    player.start();
  });
}
wire(player);

// ---- Real-time / LL-HLS toggle ----

function syncMode() {
  const realtime = player.engine === 'webrtc';
  const button = $('mode');
  button.textContent = realtime ? 'Real-time' : 'LL-HLS';
  button.setAttribute('aria-pressed', String(realtime));
  button.title = realtime ? 'Playing over WebRTC; switch to LL-HLS' : 'Playing LL-HLS; switch to real time (WebRTC)';
  $('quality').parentElement.hidden = realtime;
}
$('mode').addEventListener('click', () => {
  const next = new URLSearchParams(location.search);
  if (player.engine === 'webrtc') next.delete('mode');
  else next.set('mode', 'webrtc');
  location.search = next.toString();
});
$('quality').addEventListener('change', (e) => player.setLevel(Number(e.target.value)));

// ---- Buttons ----

// Inline SVG: emoji or symbol fonts are missing on many systems.
const ICONS = {
  play: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M8 5v14l11-7z"/></svg>',
  pause: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M6 5h4v14H6zM14 5h4v14h-4z"/></svg>',
  muted: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 9v6h4l5 5V4L7 9H3z"/><path d="M16 9l6 6M22 9l-6 6" class="stroke"/></svg>',
  sound: '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M3 9v6h4l5 5V4L7 9H3z"/><path d="M16 8.5a4.5 4.5 0 0 1 0 7M18.5 5.5a9 9 0 0 1 0 13" class="stroke"/></svg>',
};

function syncPlay() {
  $('play-icon').innerHTML = video.paused ? ICONS.play : ICONS.pause;
  $('play').setAttribute('aria-label', video.paused ? 'Play' : 'Pause');
}
function syncMute() {
  $('mute-icon').innerHTML = video.muted ? ICONS.muted : ICONS.sound;
  $('mute').setAttribute('aria-label', video.muted ? 'Unmute' : 'Mute');
  $('unmute').hidden = !video.muted || player.state === 'offline';
}
function togglePlay() {
  if (video.paused) video.play().catch(() => {});
  else video.pause();
}
function toggleMute() {
  video.muted = !video.muted;
  if (!video.muted && video.volume === 0) video.volume = 1;
  // At once, not at the `volumechange` task: hls.js works on the page's main thread
  // (its worker is off), which can hold that task back a moment.
  syncMute();
}
function toggleFullscreen() {
  const stage = $('stage');
  if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  else if (stage.requestFullscreen) stage.requestFullscreen().catch(() => {});
  else if (video.webkitEnterFullscreen) video.webkitEnterFullscreen();
}
video.addEventListener('play', syncPlay);
video.addEventListener('pause', syncPlay);
video.addEventListener('volumechange', syncMute);
video.addEventListener('playing', syncMute);
$('play').addEventListener('click', togglePlay);
$('mute').addEventListener('click', toggleMute);
$('unmute').addEventListener('click', () => {
  video.muted = false;
  if (video.volume === 0) video.volume = 1;
  syncMute();
  $('mute').focus();
});
$('live').addEventListener('click', () => player.jumpToLive());
$('retry').addEventListener('click', () => player.retry());
$('fullscreen').addEventListener('click', toggleFullscreen);
document.addEventListener('keydown', (e) => {
  if (e.target.closest('input, select, textarea') || e.ctrlKey || e.metaKey || e.altKey) return;
  const action = { k: togglePlay, m: toggleMute, f: toggleFullscreen, l: () => player.jumpToLive() }[e.key];
  if (action) {
    e.preventDefault();
    action();
  }
});

// ---- Live latency readout ----

setInterval(() => {
  const latency = player.latencyMs;
  const el = $('latency');
  if (player.state === 'offline' || latency === null) {
    el.hidden = true;
    $('live').hidden = true;
    return;
  }
  el.hidden = false;
  const behind = player.behindLive;
  el.classList.toggle('behind', behind);
  // Real time is well under a second: milliseconds say more there.
  const delay = latency < 1000 ? `${Math.max(0, Math.round(latency))} ms` : `${(latency / 1000).toFixed(1)} s`;
  $('latency-text').textContent = `${behind ? 'BEHIND LIVE' : 'LIVE'} · ${delay} delay`;
  $('live').hidden = !behind;
  syncSeek();
}, 500);

// ---- Rewind (the DVR window of a recorded stream) ----

/** Seconds of the rewind window; 0 hides the seek bar. */
let dvrWindow = 0;
/** The viewer is dragging the seek bar: leave its value alone. */
let dragging = false;

function clock(seconds) {
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `-${h}:${String(m).padStart(2, '0')}:${ss}` : `-${m}:${ss}`;
}

function syncSeek() {
  const seek = $('seek');
  const show = dvrWindow >= 10 && player.state !== 'offline';
  $('seek-bar').hidden = !show;
  $('seek-time').hidden = !show;
  if (!show) return;
  seek.min = String(-Math.floor(dvrWindow));
  if (!dragging) {
    const latency = player.latencyMs;
    const behind = player.mode === 'dvr' && latency !== null ? Math.min(dvrWindow, latency / 1000) : 0;
    seek.value = String(-Math.round(behind));
  }
  const behind = -Number(seek.value);
  const text = behind < 1 ? 'live' : `${clock(behind)} behind live`;
  seek.setAttribute('aria-valuetext', text);
  $('seek-time').textContent = behind < 1 ? '' : clock(behind);
}

/** When to ask for the window next: a stream without one is asked less and less often. */
let dvrNextAt = 0;
let dvrBackoff = 10_000;
/** The stream's `record` from the metadata API: false means no window to ask for. */
let streamRecord = null;
/** Whether this server keeps a rewind window, and whether a stream whose `record` is
 * unset records: `null` when it keeps none (the page never asks). */
const dvrRecordDefault = typeof config.dvrRecordDefault === 'boolean' ? config.dvrRecordDefault : null;

async function updateDvrWindow() {
  const records = dvrRecordDefault !== null && (streamRecord ?? dvrRecordDefault) === true;
  if (player.state === 'offline' || !records || player.engine === 'webrtc') {
    dvrWindow = 0;
  } else if (Date.now() >= dvrNextAt) {
    dvrWindow = await player.dvrWindowSeconds();
    dvrBackoff = dvrWindow > 0 ? 10_000 : Math.min(dvrBackoff * 2, 300_000);
    dvrNextAt = Date.now() + dvrBackoff;
  }
  syncSeek();
}

$('seek').addEventListener('input', () => {
  dragging = true;
  syncSeek();
});
$('seek').addEventListener('change', () => {
  dragging = false;
  const behind = -Number($('seek').value);
  // Near the edge is live: the low-latency playlist serves it better.
  if (behind < 6) player.jumpToLive();
  else player.rewind(behind);
});
setInterval(updateDvrWindow, 5000);

// ---- Title, description, tags, live state (metadata API + SSE) ----

let shownVersion = -1;

function showStream(s) {
  if (s.version !== undefined) {
    if (s.version < shownVersion) return; // an older event arriving late
    shownVersion = s.version;
  }
  if (s.title !== undefined) {
    const title = s.title || s.name || name;
    $('title').textContent = title;
    document.title = `${title} — Rivulet`;
  }
  if (s.description !== undefined) $('description').textContent = s.description;
  if (s.tags !== undefined) {
    $('tags').replaceChildren(
      ...s.tags.map((t) => {
        const li = document.createElement('li');
        li.textContent = t;
        return li;
      }),
    );
  }
}

function showLive(live) {
  $('badge').textContent = live ? 'live' : 'offline';
  $('badge').classList.toggle('live', live);
  if (live) player.poke();
}

async function loadStream() {
  try {
    const r = await fetch(`/api/streams/${encodeURIComponent(name)}`, { cache: 'no-store' });
    if (r.status === 404) {
      showStream({ title: name, description: '', tags: [] });
      return;
    }
    if (r.ok) {
      const s = await r.json();
      if (s.record !== undefined) streamRecord = s.record;
      showStream(s);
      showLive(s.live && s.live.live);
    }
  } catch {
    // No metadata server here: the player works without it.
  }
}

function followEvents() {
  if (!window.EventSource) return;
  const events = new EventSource(`/api/streams/${encodeURIComponent(name)}/events`);
  const on = (type, f) =>
    events.addEventListener(type, (e) => {
      try {
        f(JSON.parse(e.data));
      } catch {
        // A malformed event changes nothing.
      }
    });
  on('snapshot', (s) => {
    showStream(s);
    showLive(s.live && s.live.live);
  });
  on('metadata', (m) => showStream(m));
  on('live', (m) => {
    if (m.version >= shownVersion) showLive(true);
  });
  on('offline', (m) => {
    if (m.version >= shownVersion) showLive(false);
  });
  on('deleted', () => {
    showLive(false);
    events.close();
  });
  // EventSource reconnects by itself; a 404 (no such stream yet) closes it for good,
  // so try again now and then: the stream may be created later.
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) setTimeout(followEvents, 10000);
  };
}

// ---- Viewer count (analytics API) ----

let viewers = null;

/** The count, while the stream plays (an offline page's own checks would count). */
function syncViewers() {
  const show = viewers !== null && player.state !== 'offline';
  $('viewers').textContent = show ? `${viewers.toLocaleString()} watching` : '';
}

async function updateViewers() {
  if (analytics === null) return;
  try {
    const from = Date.now() - 60_000;
    const r = await fetch(`${analytics}/api/analytics/streams/${encodeURIComponent(name)}/summary?from=${from}`, { cache: 'no-store' });
    if (!r.ok) return;
    const s = await r.json();
    viewers = s.concurrent_viewers;
    syncViewers();
  } catch {
    // The count is a nicety.
  }
}

// ---- Start ----

if (params.get('debug') === '1') {
  import('./debug.js').then(({ DebugOverlay }) => {
    window.rivulet.debug = new DebugOverlay(player, qoe, $('stage'));
  });
}
syncPlay();
syncMute();
syncMode();
showStream({ title: name });
player.start();
loadStream();
followEvents();
updateViewers();
setInterval(updateViewers, 5000);

function readConfig() {
  try {
    return JSON.parse(document.getElementById('rivulet-config').textContent) || {};
  } catch {
    return {};
  }
}

function mbps(bps) {
  if (!bps) return '?';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(1)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}
