// Real-time playback over WebRTC (WHEP): the browser's own RTCPeerConnection, receive
// only, against POST /live/NAME/whep. The same surface as Player (player.js) where
// the page uses it: `state` events, latencyMs, start/retry/poke. A connection that
// does not come up (UDP blocked) fires `failed`, and the page falls back to LL-HLS.

/** How long ICE and DTLS may take before the page gives up on WebRTC. */
const CONNECT_TIMEOUT_MS = 10_000;
const OFFLINE_POLL_MS = 3_000;
/** RTP timestamps wrap at 2^32 ticks of the 90 kHz video clock (about 13 hours). */
const RTP_WRAP = 4_294_967_296n;

export class WhepPlayer extends EventTarget {
  constructor(video, { name, token, rendition }) {
    super();
    this.video = video;
    this.name = name;
    const query = new URLSearchParams();
    if (token) query.set('token', token);
    if (rendition) query.set('rendition', rendition);
    this.endpoint = `/live/${encodeURIComponent(name)}/whep${query.size ? `?${query}` : ''}`;
    this.engine = 'webrtc';
    this.state = 'loading';
    this.levels = [];
    this.currentLevel = -1;
    this.autoLevel = true;
    this.hls = null;
    this.pc = null;
    this.resource = null;
    this.latency = null;
    this.timer = null;
    this.statsTimer = null;
    this.firstFrameAt = null;
    // The receiver's freeze counters at the last look (inbound-rtp statistics).
    this.freezes = { count: 0, seconds: 0 };
    video.addEventListener('playing', () => {
      if (this.pc) this.setState('playing');
    });
    addEventListener('pagehide', () => this.close());
  }

  dispatch(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, detail = {}) {
    if (this.state === state && !detail.message) return;
    this.state = state;
    this.dispatch('state', { state, ...detail });
  }

  /** Wall clock minus the ingest time of the frame on screen: the server's RTP
   * timestamps are the ingest wall clock at 90 kHz (mod 2^32), as PROGRAM-DATE-TIME is
   * for LL-HLS. */
  get latencyMs() {
    return this.latency;
  }

  get behindLive() {
    return false;
  }

  get level() {
    return null;
  }

  setLevel() {}

  jumpToLive() {
    this.video.play().catch(() => {});
  }

  poke() {
    if (this.state === 'offline') this.start();
  }

  retry() {
    this.start();
  }

  async start() {
    this.close();
    clearTimeout(this.timer);
    this.setState('loading');
    this.dispatch('levels', { levels: [] });
    const startedAt = performance.now();
    const pc = new RTCPeerConnection();
    this.pc = pc;
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    const stream = new MediaStream();
    pc.addEventListener('track', (e) => {
      stream.addTrack(e.track);
      this.video.srcObject = stream;
      this.video.play().catch(() => this.setState('paused'));
    });
    pc.addEventListener('connectionstatechange', () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === 'failed') this.fail('the WebRTC connection failed');
      if (pc.connectionState === 'disconnected' || pc.connectionState === 'closed') {
        // The stream ended or the server went: look again soon.
        this.close();
        this.goOffline();
      }
    });
    let response;
    try {
      await pc.setLocalDescription(await pc.createOffer());
      response = await fetch(this.endpoint, {
        method: 'POST',
        headers: { 'Content-Type': 'application/sdp' },
        body: pc.localDescription.sdp,
      });
    } catch (e) {
      this.fail(`the WHEP request failed (${e.message})`);
      return;
    }
    if (this.pc !== pc) return;
    if (response.status === 404) {
      this.close();
      this.goOffline();
      return;
    }
    const body = await response.text();
    if (response.status !== 201) {
      this.fail(`the server refused WebRTC (${response.status}: ${body.trim()})`);
      return;
    }
    const location = response.headers.get('Location');
    this.resource = location ? new URL(location, document.baseURI).href : null;
    try {
      await pc.setRemoteDescription({ type: 'answer', sdp: body });
    } catch (e) {
      this.fail(`the WHEP answer was not accepted (${e.message})`);
      return;
    }
    this.timer = setTimeout(() => {
      if (this.pc === pc && pc.connectionState !== 'connected') this.fail('WebRTC did not connect in time (is UDP blocked?)');
    }, CONNECT_TIMEOUT_MS);
    const done = () => {
      if (this.pc !== pc || this.firstFrameAt !== null) return;
      this.firstFrameAt = performance.now();
      this.dispatch('firstframe', { startupMs: this.firstFrameAt - startedAt, at: this.firstFrameAt });
    };
    if ('requestVideoFrameCallback' in this.video) this.video.requestVideoFrameCallback(done);
    this.freezes = { count: 0, seconds: 0 };
    let ticks = 0;
    this.statsTimer = setInterval(() => {
      this.readStats(pc);
      if (++ticks % 4 === 0) this.readFreezes(pc);
    }, 500);
  }

  /** Reports the receiver's new freezes (for QoE: a stall of real-time playback). */
  async readFreezes(pc) {
    let report;
    try {
      report = await pc.getStats();
    } catch {
      return; // closed meanwhile
    }
    if (this.pc !== pc) return;
    for (const s of report.values()) {
      if (s.type !== 'inbound-rtp' || s.kind !== 'video' || s.freezeCount === undefined) continue;
      const count = s.freezeCount - this.freezes.count;
      const seconds = (s.totalFreezesDuration || 0) - this.freezes.seconds;
      this.freezes = { count: s.freezeCount, seconds: s.totalFreezesDuration || 0 };
      if (count > 0) this.dispatch('freeze', { count, ms: Math.max(0, seconds * 1000) });
    }
  }

  readStats(pc) {
    if (this.pc !== pc) return;
    const receiver = pc.getReceivers().find((r) => r.track && r.track.kind === 'video');
    const source = receiver && receiver.getSynchronizationSources()[0];
    if (!source) {
      this.latency = null;
      return;
    }
    const now = (BigInt(Date.now()) * 90n) % RTP_WRAP;
    const behind = (now - BigInt(source.rtpTimestamp) + RTP_WRAP) % RTP_WRAP;
    // Far off (a server with another clock convention): no readout rather than nonsense.
    this.latency = behind < 90n * 600_000n ? Number(behind) / 90 : null;
  }

  goOffline() {
    this.setState('offline');
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.start(), OFFLINE_POLL_MS);
  }

  fail(message) {
    this.close();
    this.setState('error', { message: `Real-time playback failed: ${message}.`, retry: true });
    this.dispatch('failed', { message });
  }

  /** Ends the session here and on the server (WHEP DELETE). */
  close() {
    clearInterval(this.statsTimer);
    clearTimeout(this.timer);
    this.firstFrameAt = null;
    this.latency = null;
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
    if (this.resource) {
      fetch(this.resource, { method: 'DELETE', keepalive: true }).catch(() => {});
      this.resource = null;
    }
  }
}
