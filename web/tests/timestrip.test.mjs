// Unit tests of the time-strip decoder: node --test web/tests/timestrip.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { CELLS, band, crc8, draw, lumaOf, read } from '../src/timestrip.js';

test('crc8 is CRC-8/ATM (check value of "123456789" is 0xF4)', () => {
  assert.equal(crc8([...Buffer.from('123456789')]), 0xf4);
});

test('band matches the Rust layout', () => {
  // time_strip::band: rows = max(h/10, 4), margin = h/40, top = h - rows - margin.
  assert.deepEqual(band(720), [720 - 72 - 18, 72]);
  assert.deepEqual(band(234), [234 - 23 - 5, 23]);
  assert.deepEqual(band(40), [40 - 4 - 1, 4]);
  assert.equal(CELLS, 58);
});

test('reads back what it draws at many sizes', () => {
  for (const [w, h] of [[1920, 1080], [1280, 720], [416, 234], [320, 240], [64, 40]]) {
    for (const millis of [0, 1, 1_764_000_000_123, 2 ** 48 - 1]) {
      const luma = new Uint8Array(w * h).fill(100);
      draw(millis, luma, w, h, w);
      assert.deepEqual(read(luma, w, h, w), { millis }, `${w}x${h} ${millis}`);
    }
  }
});

test('one known cell pattern: the bits are where the Rust drawer puts them', () => {
  // 2^47 + 1: the first data cell (index 2) and the last data cell (index 49) white.
  const w = CELLS * 4;
  const h = 100;
  const luma = new Uint8Array(w * h).fill(100);
  draw(2 ** 47 + 1, luma, w, h, w);
  const [top] = band(h);
  const cell = (i) => luma[top * w + i * 4 + 1];
  assert.deepEqual([cell(0), cell(1), cell(2), cell(3), cell(48), cell(49)], [235, 16, 235, 16, 16, 235]);
});

test('survives downscaling, a stride, full-range levels and reading only the band', () => {
  const [w, h] = [1280, 720];
  const luma = new Uint8Array(w * h).fill(128);
  const t = 1_764_045_600_042;
  draw(t, luma, w, h, w);
  const [sw, sh, stride] = [416, 234, 448];
  const small = new Uint8Array(stride * sh);
  for (let y = 0; y < sh; y++) {
    for (let x = 0; x < sw; x++) {
      const src = luma[Math.floor((y * h) / sh) * w + Math.floor((x * w) / sw)];
      small[y * stride + x] = Math.max(0, Math.min(255, Math.floor(((src - 16) * 255) / 219)));
    }
  }
  assert.deepEqual(read(small, sw, sh, stride), { millis: t });
  const [top] = band(sh);
  assert.deepEqual(read(small.subarray(top * stride), sw, sh, stride, top), { millis: t });
});

test('RGBA to luma keeps black and white apart', () => {
  const rgba = new Uint8ClampedArray([255, 255, 255, 255, 0, 0, 0, 255, 16, 16, 16, 255]);
  assert.deepEqual([...lumaOf(rgba)], [255, 0, 16]);
});

test('refuses pictures without a strip or with a damaged one', () => {
  const [w, h] = [320, 240];
  const flat = new Uint8Array(w * h).fill(80);
  assert.deepEqual(read(flat, w, h, w), { error: 'no-strip' });
  const luma = flat.slice();
  draw(123_456, luma, w, h, w);
  const [top, rows] = band(h);
  const x0 = Math.floor((w * 20) / CELLS);
  const x1 = Math.floor((w * 21) / CELLS);
  for (let row = top; row < top + rows; row++) {
    for (let x = x0; x < x1; x++) luma[row * w + x] = luma[row * w + x] > 128 ? 16 : 235;
  }
  assert.deepEqual(read(luma, w, h, w), { error: 'checksum' });
  assert.deepEqual(read(flat, 10, 10, 10), { error: 'too-small' });
});
