// Quality-of-experience beacons: what this viewer's playback was like, sent to the
// analytics server (POST /api/analytics/beacons; schema in crates/analytics/src/beacon.rs,
// unknown fields are refused). One beacon every SAMPLE_MS holds the counters since the
// previous one; beacons are sent in batches every FLUSH_MS, at once for the first
// (startup) one, and with navigator.sendBeacon when the page goes away. The same for
// LL-HLS and real time (WebRTC): the WHEP player reports its freezes as stalls.

/** A beacon is taken this often, ms. */
const SAMPLE_MS = 5000;
/** Batches are sent this often, ms. */
const FLUSH_MS = 10000;
/** Most beacons kept while the server cannot be reached (the API takes 100 a batch). */
const MAX_QUEUE = 100;

/** A random id for this view: the CMCD `sid` and the beacons' `session_id`. */
export function newSessionId() {
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes); // also in insecure contexts, unlike randomUUID
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export class Qoe {
  /**
   * @param {import('./player.js').Player} player
   * @param {{ name: string, sessionId: string, base: string }} options
   *   `base`: the analytics server's base URL (`""`: this server).
   */
  constructor(player, { name, sessionId, base }) {
    this.player = player;
    this.video = player.video;
    this.name = name;
    this.sessionId = sessionId;
    this.url = `${base}/api/analytics/beacons`;
    this.queue = [];
    this.sent = 0;
    this.failed = 0;
    // Since the previous beacon.
    this.pending = { startupMs: null, rebufferCount: 0, rebufferMs: 0, switches: 0, errors: 0 };
    // Since the page opened, for the debug overlay and the benchmark.
    this.totals = { startupMs: null, rebufferCount: 0, rebufferMs: 0, switches: 0, errors: 0 };
    this.lastSample = performance.now();
    this.playMs = 0;
    this.stallStart = null;
    this.playingSince = null;
    this.lastDropped = 0;
    this.lastLevel = null;
    // Ends every listener at stop(): the video element outlives a player.
    this.listening = new AbortController();
    this.listen();
    this.sampleTimer = setInterval(() => this.sample(), SAMPLE_MS);
    this.flushTimer = setInterval(() => this.flush(), FLUSH_MS);
  }

  listen() {
    const p = this.player;
    const v = this.video;
    const on = (target, type, fn) => target.addEventListener(type, fn, { signal: this.listening.signal });
    on(p, 'firstframe', (e) => {
      const ms = Math.max(0, Math.round(e.detail.startupMs));
      if (this.totals.startupMs === null) this.totals.startupMs = ms;
      this.pending.startupMs = ms;
      this.playingSince = performance.now();
      // Report the startup now rather than in ten seconds.
      this.sample();
      this.flush();
    });
    on(p, 'level', (e) => {
      if (this.lastLevel !== null && e.detail.index !== this.lastLevel) {
        this.pending.switches += 1;
        this.totals.switches += 1;
      }
      this.lastLevel = e.detail.index;
    });
    on(p, 'hlserror', (e) => {
      if (e.detail.fatal) this.countError();
    });
    on(v, 'error', () => this.countError());
    on(v, 'waiting', () => {
      // A stall counts only after the first frame (before it, it is startup).
      if (p.firstFrameAt === null || this.stallStart !== null) return;
      this.stallStart = performance.now();
      this.pending.rebufferCount += 1;
      this.totals.rebufferCount += 1;
      this.stopPlaying();
    });
    on(v, 'playing', () => {
      this.endStall();
      this.playingSince = performance.now();
    });
    on(v, 'pause', () => {
      this.endStall();
      this.stopPlaying();
    });
    on(p, 'state', (e) => {
      if (e.detail.state === 'offline' || e.detail.state === 'error') {
        this.endStall();
        this.stopPlaying();
      }
    });
    const bye = () => {
      this.sample();
      this.flush(true);
    };
    // Real time: a freeze the WebRTC receiver counted (its video element does not
    // fire `waiting` for a MediaStream that stops).
    on(p, 'freeze', (e) => {
      if (p.firstFrameAt === null) return;
      this.pending.rebufferCount += e.detail.count;
      this.totals.rebufferCount += e.detail.count;
      this.pending.rebufferMs += e.detail.ms;
      this.totals.rebufferMs += e.detail.ms;
    });
    on(window, 'pagehide', bye);
    on(document, 'visibilitychange', () => {
      if (document.visibilityState === 'hidden') bye();
    });
  }

  /** Sends what is left and stops: the page plays on with another player. */
  stop() {
    this.sample();
    this.flush();
    this.listening.abort();
    clearInterval(this.sampleTimer);
    clearInterval(this.flushTimer);
  }

  countError() {
    this.pending.errors += 1;
    this.totals.errors += 1;
  }

  endStall() {
    if (this.stallStart === null) return;
    const ms = performance.now() - this.stallStart;
    this.pending.rebufferMs += ms;
    this.totals.rebufferMs += ms;
    this.stallStart = null;
  }

  stopPlaying() {
    if (this.playingSince === null) return;
    this.playMs += performance.now() - this.playingSince;
    this.playingSince = null;
  }

  /** Takes a beacon of what happened since the previous one, if anything did. */
  sample() {
    const p = this.player;
    if (p.firstFrameAt === null && this.pending.errors === 0) return; // nothing to say yet
    const now = performance.now();
    if (this.playingSince !== null) {
      this.playMs += now - this.playingSince;
      this.playingSince = now;
    }
    if (this.stallStart !== null) {
      this.pending.rebufferMs += now - this.stallStart;
      this.totals.rebufferMs += now - this.stallStart;
      this.stallStart = now;
    }
    const quality = this.video.getVideoPlaybackQuality ? this.video.getVideoPlaybackQuality() : null;
    const dropped = quality ? quality.droppedVideoFrames : 0;
    const level = p.level;
    const latency = p.latencyMs;
    const beacon = {
      stream: this.name,
      session_id: this.sessionId,
      ts: Date.now(),
      play_ms: round(this.playMs),
      rebuffer_count: this.pending.rebufferCount,
      rebuffer_ms: round(this.pending.rebufferMs),
      rendition_switches: this.pending.switches,
      errors: this.pending.errors,
      dropped_frames: Math.max(0, dropped - this.lastDropped),
      cmcd: this.cmcd(level),
    };
    if (this.pending.startupMs !== null) beacon.startup_ms = this.pending.startupMs;
    if (level) beacon.rendition = level.name;
    if (latency !== null && latency >= 0 && latency < 86_400_000) beacon.live_latency_ms = round(latency);
    this.lastDropped = dropped;
    this.playMs = 0;
    this.lastSample = now;
    this.pending = { startupMs: null, rebufferCount: 0, rebufferMs: 0, switches: 0, errors: 0 };
    this.queue.push(beacon);
    if (this.queue.length > MAX_QUEUE) this.queue.splice(0, this.queue.length - MAX_QUEUE);
  }

  /** CMCD keys as the player sends them with requests (CTA-5004). */
  cmcd(level) {
    const c = { sid: this.sessionId, cid: this.name, st: 'l', ot: 'av' };
    const hls = this.player.hls;
    if (level) c.br = round(level.bitrate / 1000);
    const v = this.video;
    if (v.buffered.length) c.bl = round(Math.max(0, v.buffered.end(v.buffered.length - 1) - v.currentTime) * 1000);
    if (hls && Number.isFinite(hls.bandwidthEstimate)) c.mtp = round(hls.bandwidthEstimate / 1000);
    if (this.stallStart !== null) c.bs = true;
    return c;
  }

  /** Sends the queued beacons; `leaving`: the page is going away (sendBeacon). */
  flush(leaving = false) {
    if (!this.queue.length) return;
    const batch = this.queue.splice(0, this.queue.length);
    const body = JSON.stringify({ beacons: batch });
    // text/plain: a "simple" request, so a remote analytics server needs no preflight
    // (the server reads the body as JSON whatever its type).
    if (leaving && navigator.sendBeacon) {
      if (navigator.sendBeacon(this.url, new Blob([body], { type: 'text/plain' }))) {
        this.sent += batch.length;
        return;
      }
    }
    fetch(this.url, { method: 'POST', body, headers: { 'Content-Type': 'text/plain' }, keepalive: true })
      .then((r) => {
        if (r.ok) this.sent += batch.length;
        else this.failed += batch.length; // refused: resending would be refused again
      })
      .catch(() => {
        // Unreachable: keep them for the next flush.
        this.queue.unshift(...batch.slice(-MAX_QUEUE));
      });
  }
}

function round(x) {
  return Math.max(0, Math.round(x));
}
