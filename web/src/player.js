// The player: hls.js in low-latency mode (native HLS on Safari), with the states a
// viewer understands. Emits events on itself (an EventTarget):
//   state   { state, detail }  loading | offline | playing | buffering | reconnecting | error
//   levels  { levels }         the renditions, highest first: { index, name, width, height, bitrate }
//   level   { index, auto }    the rendition now playing
//   firstframe { startupMs }   the first frame of this attach is on screen
//   mode    { mode }           live (the low-latency playlist) | dvr (the rewind window)
// The page (watch.js), QoE (qoe.js) and the debug overlay (debug.js) listen.

import Hls from './vendor/hls.min.mjs';

/** How often an offline stream's playlist is checked, ms. */
const OFFLINE_POLL_MS = 2000;
/** How often the catch-up rate is decided, ms. */
const CATCH_UP_MS = 250;
/** Seconds behind the target latency from which the player catches up. */
const CATCH_UP_FROM_S = 0.1;
/** Seconds buffered ahead below which it does not (it would run dry). */
const CATCH_UP_BUFFER_S = 0.3;
/** Playback rate while catching up: 0.5 s behind is made good in 5 s, hardly audible. */
const CATCH_UP_RATE = 1.1;
/**
 * Seconds behind the target from which the player catches up faster: after a start at
 * the keyframe before the live position (see startOnSegmentBoundary), up to a GOP.
 */
const FAST_CATCH_UP_FROM_S = 0.5;
/** Seconds buffered ahead below which it does not (it would soon be at the slow rate). */
const FAST_CATCH_UP_BUFFER_S = 1.0;
/** Rates of that faster catch-up: muted (the page autoplays muted) and with sound. */
const FAST_CATCH_UP_RATE_MUTED = 1.5;
const FAST_CATCH_UP_RATE = 1.25;
/**
 * The page's round trip (ms) above which a link is slow: catching up keeps a lost
 * packet's wait buffered (linkReserveSeconds), a stall moves the target back more.
 */
const SLOW_LINK_RTT_MS = 40;
/**
 * Over a slow link, the longest a live start holds its first frame (playback rate 0)
 * while the buffer fills to the catch-up reserve, ms. The parts behind the live
 * position come one request after the other, each a round trip: at 100 ms a round
 * trip the buffer grew by ~0.05 s a part and ran dry in the first two seconds
 * (rivulet-bench latency --netem 50,20,1: 1–2 stalls a run, each at 1–2 s).
 */
const START_HOLD_MAX_MS = 2000;
/**
 * The quickest round trip (ms) from which a live start holds: above a loopback edge's
 * on a busy machine (holding from 40 ms cost a fast link's later viewers ~0.4 s of
 * start-up, rivulet-bench latency), below the slow link's (50 ± 20 ms each way: the
 * quickest of the page's requests read 86–108 ms).
 */
const START_HOLD_MIN_RTT_MS = 70;
/** Playback rate over a slow link while ahead of the target latency (see catchUp). */
const FALL_BACK_RATE = 0.9;
/** Backoff of reconnection attempts, ms. */
const RECONNECT_MS = [500, 1000, 2000, 4000, 8000];

export class Player extends EventTarget {
  /**
   * @param {HTMLVideoElement} video
   * @param {{ src: string, dvrSrc?: string, name: string, cmcdSessionId?: string, engine?: string }} options
   *   `engine`: `hls.js` or `native` to force one (default: native on Safari only).
   *   `dvrSrc`: the DVR multivariant playlist, for rewinding (see rewind()).
   */
  constructor(video, options) {
    super();
    this.video = video;
    this.liveSrc = options.src;
    this.dvrSrc = options.dvrSrc || null;
    this.src = options.src;
    // live: the low-latency playlist; dvr: the rewind window (a viewer who seeks back
    // leaves the live edge, so the low-latency path is kept for those at it).
    this.mode = 'live';
    this.startPosition = -1;
    this.name = options.name;
    this.cmcdSessionId = options.cmcdSessionId;
    this.engine = options.engine || (preferNative(video) ? 'native' : 'hls.js');
    this.hls = null;
    this.state = 'idle';
    this.levels = [];
    this.currentLevel = -1;
    this.autoLevel = true;
    this.attachedAt = 0;
    this.firstFrameAt = null;
    this.started = false;
    this.pollTimer = 0;
    this.catchUpTimer = 0;
    this.reconnects = 0;
    this.mediaRecoveries = 0;
    // An ended playlist was seen: isLive reads the media playlist too until it is live.
    this.endedSeen = false;
    // Attached without asking isLive first (see start): a failed multivariant playlist
    // means "ask", not "reconnect".
    this.optimistic = false;
    this.bindVideo();
  }

  /** Starts: plays if the stream is live, else waits for it. */
  start() {
    this.setState('loading');
    if (this.engine !== 'native' && !this.endedSeen && Hls.isSupported()) {
      // Most pages open on a live stream: hls.js reads the multivariant playlist at
      // once, and only if that fails does isLive find out why (offline, ended). Asking
      // first cost every viewer a round trip and a turn of the page's main thread
      // before hls.js started (rivulet-bench latency: ~60 ms of startup).
      this.optimistic = true;
      this.attach();
    } else {
      this.checkLive();
    }
  }

  /** Stops everything and starts again (the error state's retry). */
  retry() {
    this.setMode('live', -1);
    this.detach();
    this.reconnects = 0;
    this.mediaRecoveries = 0;
    this.start();
  }

  /** Something says the stream may be live now (an SSE `live` event): check at once. */
  poke() {
    if (this.state === 'offline' || this.state === 'reconnecting') {
      clearTimeout(this.pollTimer);
      this.checkLive();
    }
  }

  /** Picks a rendition by index (`-1`: automatic). Takes effect at once. */
  setLevel(index) {
    if (!this.hls) return;
    this.autoLevel = index < 0;
    // currentLevel flushes the buffer and loads the new rendition now; a viewer who
    // picked one wants to see it, not in a few seconds.
    this.hls.currentLevel = index;
    if (index < 0) this.hls.nextLevel = -1;
    this.dispatch('level', { index: this.currentLevel, auto: this.autoLevel });
  }

  /** Distance from live: wall clock minus the playing frame's PROGRAM-DATE-TIME, ms. */
  get latencyMs() {
    let date = null;
    if (this.hls) date = this.hls.playingDate;
    else if (typeof this.video.getStartDate === 'function') {
      const start = this.video.getStartDate().getTime();
      if (Number.isFinite(start)) date = new Date(start + this.video.currentTime * 1000);
    }
    return date ? Date.now() - date.getTime() : null;
  }

  /** Seconds behind the live edge the player is allowed (the playlist's hold-back). */
  get targetLatency() {
    return (this.hls && this.hls.targetLatency) || 3;
  }

  /** Whether the viewer is noticeably behind live (paused, fell back, or rewound). */
  get behindLive() {
    if (this.mode === 'dvr') return true;
    if (!this.hls) {
      const r = this.video.seekable;
      return r.length > 0 && r.end(r.length - 1) - this.video.currentTime > 6;
    }
    const behind = this.hls.latency;
    return Number.isFinite(behind) && behind > this.targetLatency + 2;
  }

  /** Back to the live edge; from the rewind window, back to the low-latency playlist. */
  jumpToLive() {
    if (this.mode === 'dvr') {
      this.setMode('live', -1);
      this.detach();
      this.attach();
      return;
    }
    const v = this.video;
    if (this.hls && Number.isFinite(this.hls.liveSyncPosition)) {
      v.currentTime = this.hls.liveSyncPosition;
    } else if (v.seekable.length) {
      v.currentTime = Math.max(0, v.seekable.end(v.seekable.length - 1) - 3);
    }
    v.play().catch(() => {});
  }

  /**
   * The rewind window's length, seconds: the media its first rendition's DVR playlist
   * lists; 0 when the stream has none (not recorded, DVR off, offline).
   */
  async dvrWindowSeconds() {
    if (!this.dvrSrc) return 0;
    try {
      const base = new URL(this.dvrSrc, location.href);
      const master = await fetch(base, { cache: 'no-store' });
      if (!master.ok) return 0;
      const lines = (await master.text()).split('\n').map((l) => l.trim());
      const uri = lines.find((l, i) => i > 0 && lines[i - 1].startsWith('#EXT-X-STREAM-INF'));
      if (!uri) return 0;
      const media = await fetch(new URL(uri, base), { cache: 'no-store' });
      if (!media.ok) return 0;
      return (await media.text())
        .split('\n')
        .filter((l) => l.startsWith('#EXTINF:'))
        .reduce((sum, l) => sum + (parseFloat(l.slice(8)) || 0), 0);
    } catch {
      return 0;
    }
  }

  /**
   * Plays `seconds` behind live from the rewind window. From the live edge this
   * switches to the DVR playlist; within it, it seeks.
   */
  async rewind(seconds) {
    if (!this.dvrSrc) return;
    const v = this.video;
    const latency = this.latencyMs;
    if (this.mode === 'dvr' && this.hls && latency !== null) {
      const target = v.currentTime - (seconds * 1000 - latency) / 1000;
      const r = v.seekable;
      const start = r.length ? r.start(0) : 0;
      v.currentTime = Math.max(start, target);
      v.play().catch(() => {});
      return;
    }
    const window = await this.dvrWindowSeconds();
    if (window <= 0) return;
    this.setMode('dvr', Math.max(0, window - seconds));
    this.detach();
    this.attach();
  }

  setMode(mode, startPosition) {
    this.startPosition = startPosition;
    if (this.mode === mode) return;
    this.mode = mode;
    this.src = mode === 'dvr' ? this.dvrSrc : this.liveSrc;
    this.dispatch('mode', { mode });
  }

  /** The level now playing, or null. */
  get level() {
    return this.levels.find((l) => l.index === this.currentLevel) || null;
  }

  // ---- internals ----

  dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, detail = {}) {
    if (this.state === state && !detail.message) return;
    this.state = state;
    this.dispatch('state', { state, ...detail });
  }

  bindVideo() {
    const v = this.video;
    v.addEventListener('playing', () => {
      if (!this.hls && this.engine !== 'native') return;
      this.reconnects = 0;
      this.setState('playing');
    });
    v.addEventListener('waiting', () => {
      if (this.state === 'playing') this.setState('buffering');
    });
    v.addEventListener('ended', () => {
      // The stream ended (EXT-X-ENDLIST): wait for it to come back.
      this.endedSeen = true;
      this.detach();
      this.goOffline();
    });
    v.addEventListener('error', () => {
      if (this.engine === 'native' && v.error) this.handleFatal('media', v.error.message || 'the video element failed');
    });
  }

  /**
   * Is the stream live: a multivariant playlist with variants? Only after an ended
   * stream was seen is the first variant's media playlist read too (has it ended?):
   * otherwise hls.js reads it anyway, and the first level it loads says (see attach),
   * which saves the page a round trip before the first frame.
   */
  async isLive() {
    // With the view's CMCD session id, so that analytics sees one session, not two.
    const cmcd = this.cmcdSessionId ? `CMCD=${encodeURIComponent(`cid="${this.name}",ot=m,sid="${this.cmcdSessionId}",st=l`)}` : '';
    const withCmcd = (url) => {
      if (!cmcd) return url;
      const u = new URL(url, location.href);
      u.search = u.search ? `${u.search}&${cmcd}` : `?${cmcd}`;
      return u.href;
    };
    try {
      const master = await fetch(withCmcd(this.src), { cache: 'no-store' });
      if (!master.ok) return { live: false, status: master.status };
      const text = await master.text();
      const uri = text.split('\n').map((l) => l.trim()).find((l, i, all) => i > 0 && all[i - 1].startsWith('#EXT-X-STREAM-INF'));
      if (!uri) return { live: false, status: 200 };
      if (!this.endedSeen) return { live: true, status: 200 };
      const media = await fetch(withCmcd(new URL(uri, new URL(this.src, location.href)).href), { cache: 'no-store' });
      if (!media.ok) return { live: false, status: media.status };
      const live = !(await media.text()).includes('#EXT-X-ENDLIST');
      if (live) this.endedSeen = false;
      return { live, status: 200 };
    } catch (e) {
      return { live: false, status: 0, error: e };
    }
  }

  async checkLive() {
    const { live, status } = await this.isLive();
    if (this.hls || this.state === 'error') return; // attached meanwhile, or retried
    if (live) {
      this.attach();
    } else if (status === 0 && (this.state === 'reconnecting' || this.started)) {
      this.scheduleReconnect();
    } else {
      this.goOffline();
    }
  }

  goOffline() {
    // Whatever comes next starts at the live edge.
    this.setMode('live', -1);
    this.setState('offline');
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.checkLive(), OFFLINE_POLL_MS);
  }

  scheduleReconnect() {
    this.setMode('live', -1);
    const delay = RECONNECT_MS[Math.min(this.reconnects, RECONNECT_MS.length - 1)];
    this.reconnects += 1;
    this.setState('reconnecting');
    clearTimeout(this.pollTimer);
    this.pollTimer = setTimeout(() => this.checkLive(), delay);
  }

  attach() {
    clearTimeout(this.pollTimer);
    this.attachedAt = performance.now();
    this.firstFrameAt = null;
    this.started = true;
    this.setState('loading');
    const v = this.video;
    if (this.engine === 'native') {
      v.src = this.src;
      this.levels = [];
      this.dispatch('levels', { levels: [] });
      this.watchFirstFrame();
      v.play().catch(() => {});
      return;
    }
    if (!Hls.isSupported()) {
      this.setState('error', { message: 'This browser cannot play HLS video.', retry: false });
      return;
    }
    const live = this.mode === 'live';
    const config = {
      // The rewind window is plain HLS (whole segments): no parts to follow there.
      lowLatencyMode: live,
      backBufferLength: 30,
      // Catching up with the target latency is done here (see catchUp): hls.js only
      // speeds up with more than 1 s buffered, which a low-latency viewer never has,
      // so it stayed ~0.5 s behind its target for good (rivulet-bench latency).
      maxLiveSyncPlaybackRate: 1,
      // After a stall hls.js moves its target back by this much for the rest of the
      // session; its default (1 s) made one stall cost a viewer a second for good.
      // Over a slow link a stall is the network's and comes again unless the step
      // covers a lost packet: TCP's minimum retransmission timeout (0.2 s) and a few
      // round trips (50 ± 20 ms each way, 1 % loss: 2 stalls a minute with 0.25 s).
      liveSyncOnStallIncrease: live ? stallStep() : 1,
      startPosition: live ? -1 : this.startPosition,
      // The first part is fetched while the video element's MediaSource opens, not after.
      startFragPrefetch: true,
      // Play from the keyframe hls.js loads first (the segment's first part) instead of
      // waiting for every part up to the live position and decoding up to it; the
      // player then catches up (see catchUp). rivulet-bench latency: the first frame
      // came after 6–12 sequential part fetches, ~0.2–0.4 s of startup. Over a slow
      // link too: a start at the live position made hls.js seek there later, onto
      // whatever was buffered by then, and stall (--netem 50,20,1).
      startOnSegmentBoundary: live,
      // Our parts are fMP4, which hls.js only re-times (no transmuxing): its worker
      // saved nothing and cost every start a second parse of hls.js in the worker
      // (~0.1 s of startup, rivulet-bench latency).
      enableWorker: false,
      // Errors are handled here: a few quick retries inside hls.js, then ours.
      manifestLoadingMaxRetry: 2,
      levelLoadingMaxRetry: 3,
      fragLoadingMaxRetry: 4,
    };
    if (this.cmcdSessionId) {
      config.cmcd = { sessionId: this.cmcdSessionId, contentId: this.name };
    }
    const hls = new Hls(config);
    this.hls = hls;
    hls.on(Hls.Events.MANIFEST_PARSED, (_, data) => {
      this.optimistic = false;
      this.levels = data.levels
        .map((l, index) => ({
          index,
          name: renditionName(l),
          width: l.width,
          height: l.height,
          bitrate: l.bitrate,
        }))
        .sort((a, b) => b.height - a.height || b.bitrate - a.bitrate);
      this.dispatch('levels', { levels: this.levels });
      v.play().catch(() => {
        // Autoplay refused even muted (rare): the play button still works.
        this.setState('paused');
      });
    });
    let firstLevel = true;
    hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
      // The first playlist of a live attach has ended: the stream is over, not live
      // (isLive no longer reads it first). Later ones end as the stream does, and
      // the buffer plays out to 'ended'.
      if (!firstLevel) return;
      firstLevel = false;
      if (live && !data.details.live) {
        this.endedSeen = true;
        this.detach();
        this.goOffline();
      }
    });
    hls.on(Hls.Events.LEVEL_SWITCHED, (_, data) => {
      this.currentLevel = data.level;
      this.dispatch('level', { index: data.level, auto: this.autoLevel });
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (this.optimistic && (data.details === Hls.ErrorDetails.MANIFEST_LOAD_ERROR || data.details === Hls.ErrorDetails.MANIFEST_PARSING_ERROR)) {
        // Not live (404, an empty ladder) or unreachable: isLive says which.
        this.optimistic = false;
        this.detach();
        this.checkLive();
        return;
      }
      this.dispatch('hlserror', data);
      if (!data.fatal) return;
      if (data.type === Hls.ErrorTypes.NETWORK_ERROR) this.handleFatal('network', data.details);
      else if (data.type === Hls.ErrorTypes.MEDIA_ERROR) this.handleFatal('media', data.details);
      else this.handleFatal('other', data.details);
    });
    this.linkReserveS = linkReserveSeconds();
    this.startHold = live && quickestRoundTripMs() > START_HOLD_MIN_RTT_MS ? { since: null } : null;
    if (this.startHold) {
      const onAppended = () => {
        this.endStartHold();
        if (!this.startHold) hls.off(Hls.Events.BUFFER_APPENDED, onAppended);
      };
      hls.on(Hls.Events.BUFFER_APPENDED, onAppended);
    }
    if (live) this.showFirstPart(hls);
    // The MediaSource opens while the playlists load.
    hls.attachMedia(v);
    hls.loadSource(this.src);
    if (live) this.catchUpTimer = setInterval(() => this.catchUp(), CATCH_UP_MS);
    this.watchFirstFrame();
  }

  /**
   * Shows the first part as soon as it is buffered. hls.js loads a segment's parts as
   * chunks of one fragment and moves to its start position only when the whole
   * segment is buffered: joining 1.6 s into a 2 s segment, the first frame waited for
   * the parts still to come at the live edge (0–0.6 s more, rivulet-bench latency).
   * Its start position is the segment's start (startOnSegmentBoundary), so this is the
   * seek it would make, made on the first part's data.
   */
  showFirstPart(hls) {
    const v = this.video;
    this.firstPartStart = null;
    const onAppended = () => {
      if (this.hls !== hls || !v.buffered.length) return;
      hls.off(Hls.Events.BUFFER_APPENDED, onAppended);
      const start = v.buffered.start(0);
      this.firstPartStart = start;
      if (v.currentTime < start) v.currentTime = start;
    };
    hls.on(Hls.Events.BUFFER_APPENDED, onAppended);
  }

  watchFirstFrame() {
    const v = this.video;
    const attachedAt = this.attachedAt;
    const done = () => {
      if (this.firstFrameAt !== null || this.attachedAt !== attachedAt) return;
      if (this.startHold && this.startHold.since === null) {
        // A slow link: the first frame stays until the buffer can absorb a lost
        // packet's wait; start-up lasts until playback moves (endStartHold).
        this.startHold.since = performance.now();
        v.playbackRate = 0;
        this.endStartHold();
        return;
      }
      this.markFirstFrame();
    };
    if ('requestVideoFrameCallback' in v) v.requestVideoFrameCallback(done);
    else v.addEventListener('playing', done, { once: true });
  }

  /** Ends a slow link's start hold once enough is buffered, or after START_HOLD_MAX_MS. */
  endStartHold() {
    const hold = this.startHold;
    if (!hold || hold.since === null || this.firstFrameAt !== null) return;
    const enough = this.bufferedAheadS() >= CATCH_UP_BUFFER_S + this.linkReserveS;
    if (!enough && performance.now() - hold.since < START_HOLD_MAX_MS) return;
    this.startHold = null;
    this.video.playbackRate = 1;
    this.markFirstFrame();
  }

  /** Start-up is over: the first frame is on screen and playback moves. */
  markFirstFrame() {
    this.firstFrameAt = performance.now();
    this.dispatch('firstframe', { startupMs: this.firstFrameAt - this.attachedAt, at: this.firstFrameAt });
  }

  /** Seconds buffered ahead of the playhead, without a gap. */
  bufferedAheadS() {
    const v = this.video;
    for (let i = 0; i < v.buffered.length; i++) {
      if (v.buffered.start(i) <= v.currentTime + 0.05 && v.buffered.end(i) > v.currentTime) return v.buffered.end(i) - v.currentTime;
    }
    return 0;
  }

  handleFatal(kind, details) {
    if (kind === 'media' && this.hls && this.mediaRecoveries < 2) {
      this.mediaRecoveries += 1;
      this.hls.recoverMediaError();
      return;
    }
    this.detach();
    if (kind === 'network') {
      // The server went away, or the stream did: find out which.
      this.scheduleReconnect();
    } else {
      this.setState('error', { message: `Playback failed (${details}).`, retry: true });
    }
  }

  /**
   * Plays a little faster while the viewer is behind hls.js's target latency and has
   * enough buffered not to run dry doing so; at the target (or short of buffer) plays
   * at normal speed. Never while paused or rewound.
   */
  catchUp() {
    const h = this.hls;
    const v = this.video;
    if (!h || this.mode !== 'live' || v.paused) return;
    if (this.startHold) {
      this.endStartHold();
      return;
    }
    const behind = h.latency - h.targetLatency;
    const ahead = this.bufferedAheadS();
    let rate = 1;
    // Over a slow link the buffer kept back also covers a lost packet's wait (the
    // stall step): speeding up on less ran dry in the first seconds (--netem 50,20,1).
    if (Number.isFinite(behind) && ahead > CATCH_UP_BUFFER_S + this.linkReserveS) {
      if (behind > FAST_CATCH_UP_FROM_S && ahead > FAST_CATCH_UP_BUFFER_S) rate = v.muted ? FAST_CATCH_UP_RATE_MUTED : FAST_CATCH_UP_RATE;
      else if (behind > CATCH_UP_FROM_S) rate = CATCH_UP_RATE;
    }
    // Over a slow link, ahead of the target (a stall moved it back; hls.js itself only
    // falls back by stalling again): play a little slower until the buffer is there.
    if (this.linkReserveS > 0 && Number.isFinite(behind) && behind < -CATCH_UP_FROM_S) rate = FALL_BACK_RATE;
    if (v.playbackRate !== rate) v.playbackRate = rate;
  }

  detach() {
    clearTimeout(this.pollTimer);
    clearInterval(this.catchUpTimer);
    this.startHold = null;
    if (this.video.playbackRate !== 1) this.video.playbackRate = 1;
    if (this.hls) {
      this.hls.destroy();
      this.hls = null;
    }
    if (this.engine === 'native') {
      this.video.removeAttribute('src');
      this.video.load();
    }
    this.currentLevel = -1;
  }
}

/** The round trip of the page's own request (request sent → first byte), ms; 0 if unknown. */
function pageRoundTripMs() {
  const nav = performance.getEntriesByType ? performance.getEntriesByType('navigation')[0] : null;
  return nav && nav.responseStart > 0 ? nav.responseStart - nav.requestStart : 0;
}

/**
 * The round trip to the server, ms, for telling a fast link from a slow one; 0 if
 * unknown: the quickest of the page's requests so far that went to the network (the
 * page, its scripts, the master playlist; not what the browser's cache answered). The
 * quickest, as one request's includes the server's work: a cold edge's answer to the
 * page includes its fetch from the origin, which on a busy machine read as a slow link.
 */
function quickestRoundTripMs() {
  if (!performance.getEntriesByType) return 0;
  const entries = [...performance.getEntriesByType('navigation'), ...performance.getEntriesByType('resource')];
  const times = entries
    .filter((e) => e.responseStart > 0 && e.requestStart > 0 && e.transferSize > 0)
    .map((e) => e.responseStart - e.requestStart);
  return times.length ? Math.min(...times) : 0;
}

/** Buffer the catch-up leaves alone beyond CATCH_UP_BUFFER_S, seconds: none on a fast link. */
function linkReserveSeconds() {
  return pageRoundTripMs() > SLOW_LINK_RTT_MS ? stallStep() : 0;
}

/** How far a stall moves a live viewer's target back, seconds (see liveSyncOnStallIncrease). */
function stallStep() {
  const rtt = pageRoundTripMs();
  return rtt > SLOW_LINK_RTT_MS ? 0.2 + (3 * rtt) / 1000 : 0.25;
}

/** Safari: its own HLS plays LL-HLS best. Everywhere else hls.js (MSE). */
function preferNative(video) {
  if (!video.canPlayType('application/vnd.apple.mpegurl')) return false;
  if (!Hls.isSupported()) return true;
  const ua = navigator.userAgent;
  return /safari/i.test(ua) && !/chrome|chromium|crios|fxios|android|edg/i.test(ua);
}

/** The rendition's name: the playlist directory (`…/720p/index.m3u8` → `720p`). */
function renditionName(level) {
  const url = level.url && level.url[0] ? level.url[0] : level.uri || '';
  const parts = url.split('?')[0].split('/');
  return parts.length > 1 ? parts[parts.length - 2] : level.name || `${level.height}p`;
}
