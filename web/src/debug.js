// The `?debug=1` overlay: buffer, bandwidth estimate, rendition, latency from the
// playlist's PROGRAM-DATE-TIME, and the true glass-to-glass latency read from the
// test pattern's time strip (the capture time burned into the picture, compared with
// this machine's clock: the two clocks must agree, e.g. both NTP-synced).

import { readVideo } from './timestrip.js';

/** Strip reads per second at most (each reads one band of the frame back from the GPU). */
const READ_INTERVAL_MS = 250;
/** Glass-to-glass samples kept. */
const MAX_SAMPLES = 2000;

export class DebugOverlay {
  constructor(player, qoe, container) {
    this.player = player;
    this.qoe = qoe;
    this.video = player.video;
    this.canvas = document.createElement('canvas');
    this.samples = []; // glass-to-glass latencies, ms
    this.sampleTimes = []; // when each was taken (performance.now())
    this.reads = { ok: 0, failed: 0 };
    this.lastStrip = null;
    this.lastRead = 0;
    this.el = document.createElement('pre');
    this.el.className = 'debug';
    this.el.setAttribute('aria-label', 'Playback statistics');
    container.appendChild(this.el);
    this.onFrame = this.onFrame.bind(this);
    if ('requestVideoFrameCallback' in this.video) this.video.requestVideoFrameCallback(this.onFrame);
    else setInterval(() => this.readStrip(), READ_INTERVAL_MS);
    setInterval(() => this.render(), 500);
  }

  onFrame(now) {
    if (now - this.lastRead >= READ_INTERVAL_MS) {
      this.lastRead = now;
      this.readStrip();
    }
    this.video.requestVideoFrameCallback(this.onFrame);
  }

  readStrip() {
    let result = null;
    try {
      result = readVideo(this.video, this.canvas);
    } catch (e) {
      result = { error: String(e) }; // e.g. a cross-origin (tainted) video
    }
    if (!result) return;
    this.lastStrip = result;
    if (result.millis !== undefined) {
      this.reads.ok += 1;
      this.samples.push(Date.now() - result.millis);
      this.sampleTimes.push(performance.now());
      if (this.samples.length > MAX_SAMPLES) {
        this.samples.shift();
        this.sampleTimes.shift();
      }
    } else {
      this.reads.failed += 1;
    }
  }

  /** The latest glass-to-glass latency, ms, or null. */
  get glassToGlassMs() {
    return this.samples.length && this.lastStrip && this.lastStrip.millis !== undefined
      ? this.samples[this.samples.length - 1]
      : null;
  }

  render() {
    const p = this.player;
    const v = this.video;
    const hls = p.hls;
    const buffered = v.buffered.length ? v.buffered.end(v.buffered.length - 1) - v.currentTime : 0;
    const level = p.level;
    const q = v.getVideoPlaybackQuality ? v.getVideoPlaybackQuality() : null;
    const g2g = this.glassToGlassMs;
    const pdt = p.latencyMs;
    const t = this.qoe ? this.qoe.totals : null;
    const lines = [
      `state        ${p.state} (${p.engine})`,
      `rendition    ${level ? `${level.name} ${level.width}x${level.height} ${kbps(level.bitrate)}` : '-'}${p.autoLevel ? ' (auto)' : ''}`,
      `video        ${v.videoWidth}x${v.videoHeight}`,
      `buffer       ${buffered.toFixed(2)} s`,
      `bandwidth    ${hls ? kbps(hls.bandwidthEstimate) : '-'}`,
      `latency PDT  ${pdt === null ? '-' : `${(pdt / 1000).toFixed(2)} s`}`,
      `hls latency  ${hls && Number.isFinite(hls.latency) ? `${hls.latency.toFixed(2)} s (target ${p.targetLatency.toFixed(2)} s)` : '-'}`,
      `glass-glass  ${g2g === null ? `- (${this.lastStrip ? this.lastStrip.error : 'no frame'})` : `${(g2g / 1000).toFixed(2)} s`} (${this.reads.ok} read, ${this.reads.failed} unreadable)`,
      `dropped      ${q ? `${q.droppedVideoFrames}/${q.totalVideoFrames}` : '-'}`,
      `rate         ${v.playbackRate.toFixed(2)}x`,
    ];
    if (t) {
      lines.push(
        `startup      ${t.startupMs === null ? '-' : `${t.startupMs} ms`}`,
        `rebuffers    ${t.rebufferCount} (${Math.round(t.rebufferMs)} ms)`,
        `beacons      ${this.qoe.sent} sent, ${this.qoe.failed} refused`,
      );
    }
    this.el.textContent = lines.join('\n');
  }
}

function kbps(bps) {
  if (!Number.isFinite(bps)) return '-';
  return bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1000)} kbit/s`;
}
