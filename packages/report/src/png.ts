import { deflateSync } from 'node:zlib';

/** Minimal PNG encoder (8-bit grayscale or RGB, no interlace): enough for image grids, no dependency. */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

function crc32(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const b of bytes) c = CRC_TABLE[(c ^ b) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(12 + data.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, data.length);
  out.set(new TextEncoder().encode(type), 4);
  out.set(data, 8);
  view.setUint32(8 + data.length, crc32(out.subarray(4, 8 + data.length)));
  return out;
}

/**
 * zlib's default level: on a grid of 64 Fashion-MNIST images it deflates in ~1.3 ms to 26.9 kB, where level 9 took
 * ~13 ms for 26.5 kB.
 */
const PNG_DEFLATE_LEVEL = 6;

/** Encodes pixels (row-major, `channels` 1 = gray or 3 = RGB, values 0-255) as a PNG file. */
export function encodePng(width: number, height: number, channels: 1 | 3, pixels: Uint8Array): Uint8Array {
  if (pixels.length !== width * height * channels) throw new Error(`PNG: ${pixels.length} bytes for ${width}x${height}x${channels}`);
  const header = new Uint8Array(13);
  const hv = new DataView(header.buffer);
  hv.setUint32(0, width);
  hv.setUint32(4, height);
  header[8] = 8;
  header[9] = channels === 1 ? 0 : 2;
  const raw = new Uint8Array(height * (1 + width * channels));
  for (let y = 0; y < height; y++) raw.set(pixels.subarray(y * width * channels, (y + 1) * width * channels), y * (1 + width * channels) + 1);
  const parts = [Uint8Array.of(0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a), chunk('IHDR', header), chunk('IDAT', deflateSync(raw, { level: PNG_DEFLATE_LEVEL })), chunk('IEND', new Uint8Array(0))];
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * A grid of images (each flattened row-major, channels last, values in [-1, 1] mapped to 0-255) with a 1-pixel gap,
 * each image enlarged `scale` times. `cells[r][c]` may be null (left blank).
 */
export function imageGrid(cells: (ArrayLike<number> | null)[][], h: number, w: number, channels: number, scale = 2): Uint8Array {
  const rows = cells.length;
  const cols = Math.max(...cells.map((r) => r.length));
  const ch: 1 | 3 = channels === 1 ? 1 : 3;
  const W = cols * (w * scale + 1) + 1;
  const H = rows * (h * scale + 1) + 1;
  const px = new Uint8Array(W * H * ch).fill(255);
  cells.forEach((row, r) =>
    row.forEach((img, c) => {
      if (!img) return;
      for (let y = 0; y < h * scale; y++) {
        for (let x = 0; x < w * scale; x++) {
          const src = (Math.floor(y / scale) * w + Math.floor(x / scale)) * channels;
          const dst = ((r * (h * scale + 1) + 1 + y) * W + c * (w * scale + 1) + 1 + x) * ch;
          for (let k = 0; k < ch; k++) {
            const v = img[src + Math.min(k, channels - 1)]!;
            px[dst + k] = Math.max(0, Math.min(255, Math.round((v + 1) * 127.5)));
          }
        }
      }
    }),
  );
  return encodePng(W, H, ch, px);
}
