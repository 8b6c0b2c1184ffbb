// The test pattern's time strip, read back from a video frame in the browser.
//
// A port of crates/source/src/time_strip.rs (keep the two in step): 58 equal cells
// across the full width, in a band of 1/10 of the height (at least 4 rows) whose
// bottom is height/40 rows above the bottom edge: a white then a black reference
// cell, the capture time in ms since the epoch as 48 bits (most significant first),
// then a CRC-8 (polynomial 0x07) of those six bytes. Cell edges are proportional to
// the width, so the strip reads the same at any size that keeps the aspect ratio.
//
// Pure functions over luma bytes; `lumaOf` turns canvas RGBA into luma.

/** Cells across the picture: 2 references, 48 data bits, 8 check bits. */
export const CELLS = 2 + 48 + 8;
const WHITE = 235;
const BLACK = 16;

/** The band the strip occupies in a picture `height` rows high: [top row, rows]. */
export function band(height) {
  const rows = Math.max(Math.floor(height / 10), 4);
  const margin = Math.floor(height / 40);
  return [Math.max(height - (rows + margin), 0), rows];
}

function cellSpan(width, index) {
  return [Math.floor((width * index) / CELLS), Math.floor((width * (index + 1)) / CELLS)];
}

/** The six big-endian bytes of a 48-bit number (exact: < 2^53). */
function bytes48(millis) {
  const out = [];
  for (let k = 0; k < 6; k++) out.push(Math.floor(millis / 2 ** (8 * (5 - k))) % 256);
  return out;
}

/** CRC-8, polynomial 0x07 (ATM HEC), initial value 0. */
export function crc8(data) {
  let crc = 0;
  for (const b of data) {
    crc ^= b;
    for (let i = 0; i < 8; i++) crc = crc & 0x80 ? ((crc << 1) ^ 0x07) & 0xff : (crc << 1) & 0xff;
  }
  return crc;
}

function cells(millis) {
  const out = [true, false];
  for (let i = 0; i < 48; i++) out.push(Math.floor(millis / 2 ** (47 - i)) % 2 === 1);
  const crc = crc8(bytes48(millis));
  for (let i = 0; i < 8; i++) out.push(((crc >> (7 - i)) & 1) === 1);
  return out;
}

/** Draws `millis` (its low 48 bits) into a luma plane, as the test pattern does. */
export function draw(millis, luma, width, height, stride) {
  const [top, rows] = band(height);
  cells(millis % 2 ** 48).forEach((white, i) => {
    const [x0, x1] = cellSpan(width, i);
    for (let row = top; row < Math.min(top + rows, height); row++) {
      luma.fill(white ? WHITE : BLACK, row * stride + x0, row * stride + x1);
    }
  });
}

/**
 * Reads the time from a luma plane of a `width` x `height` picture. `luma` may hold
 * only rows `firstRow` and below (e.g. just the band): row r starts at
 * `(r - firstRow) * stride`. Returns `{ millis }` or `{ error }` with error one of
 * `too-small`, `no-strip`, `checksum`.
 */
export function read(luma, width, height, stride, firstRow = 0) {
  if (width < CELLS || height < 40) return { error: 'too-small' };
  const [top, rows] = band(height);
  // The middle half of each cell both ways: away from edges that coding blurs.
  const r0 = top + Math.floor(rows / 4);
  const r1 = top + rows - Math.floor(rows / 4);
  const level = (index) => {
    const [x0, x1] = cellSpan(width, index);
    const quarter = Math.floor((x1 - x0) / 4);
    const c0 = x0 + quarter;
    const c1 = Math.max(x1 - quarter, x0 + quarter + 1);
    let sum = 0;
    let n = 0;
    for (let row = r0; row < Math.max(r1, r0 + 1); row++) {
      const start = (row - firstRow) * stride;
      if (start < 0 || start + c1 > luma.length) continue;
      for (let x = start + c0; x < start + c1; x++) {
        sum += luma[x];
        n += 1;
      }
    }
    return n ? Math.floor(sum / n) : 0;
  };
  const white = level(0);
  const black = level(1);
  if (white < black + 60) return { error: 'no-strip' };
  const threshold = Math.floor((white + black) / 2);
  let millis = 0;
  for (let i = 2; i < 50; i++) millis = millis * 2 + (level(i) > threshold ? 1 : 0);
  let crc = 0;
  for (let i = 50; i < 58; i++) crc = (crc << 1) | (level(i) > threshold ? 1 : 0);
  if (crc !== crc8(bytes48(millis))) return { error: 'checksum' };
  return { millis };
}

/** Luma (BT.601 weights, integer) of RGBA pixels, e.g. a canvas's `ImageData.data`. */
export function lumaOf(rgba) {
  const out = new Uint8Array(rgba.length / 4);
  for (let i = 0, j = 0; j < out.length; i += 4, j++) {
    out[j] = (77 * rgba[i] + 150 * rgba[i + 1] + 29 * rgba[i + 2]) >> 8;
  }
  return out;
}

/**
 * Reads the strip of the frame `video` shows now, drawing only the band into `canvas`.
 * Returns `{ millis }`, `{ error }`, or null when no frame is decoded yet.
 */
export function readVideo(video, canvas) {
  const width = video.videoWidth;
  const height = video.videoHeight;
  if (!width || !height || video.readyState < 2) return null;
  const [top, rows] = band(height);
  canvas.width = width;
  canvas.height = rows;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  ctx.drawImage(video, 0, top, width, rows, 0, 0, width, rows);
  const luma = lumaOf(ctx.getImageData(0, 0, width, rows).data);
  return read(luma, width, height, width, top);
}
