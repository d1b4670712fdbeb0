/**
 * Counter-based random numbers (Philox4x32-10, Salmon et al. 2011, "Parallel random numbers: as easy as 1, 2, 3").
 * A block of four uint32 is a pure function of (key, counter), so the noise of sample i never depends on how samples
 * are batched, sharded or ordered.
 */

const M0 = 0xd2511f53;
const M1 = 0xcd9e8d57;
const W0 = 0x9e3779b9;
const W1 = 0xbb67ae85;

/** High 32 bits of the 64-bit product of two uint32 (exact, via 16-bit limbs). */
function mulhi32(a: number, b: number): number {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const ll = al * bl;
  const lh = al * bh;
  const hl = ah * bl;
  const mid = (ll >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (ah * bh + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

/** One Philox4x32-10 block: 4 uint32 outputs for a 4-word counter and a 2-word key. */
export function philox4x32(counter: readonly [number, number, number, number], key: readonly [number, number]): Uint32Array {
  let c0 = counter[0] >>> 0;
  let c1 = counter[1] >>> 0;
  let c2 = counter[2] >>> 0;
  let c3 = counter[3] >>> 0;
  let k0 = key[0] >>> 0;
  let k1 = key[1] >>> 0;
  for (let r = 0; r < 10; r++) {
    const hi0 = mulhi32(M0, c0);
    const lo0 = Math.imul(M0, c0) >>> 0;
    const hi1 = mulhi32(M1, c2);
    const lo1 = Math.imul(M1, c2) >>> 0;
    c0 = (hi1 ^ c1 ^ k0) >>> 0;
    c1 = lo1;
    c2 = (hi0 ^ c3 ^ k1) >>> 0;
    c3 = lo0;
    k0 = (k0 + W0) >>> 0;
    k1 = (k1 + W1) >>> 0;
  }
  return Uint32Array.of(c0, c1, c2, c3);
}

/** Uniform in the open interval (0, 1) from a uint32. */
function toUnit(u: number): number {
  return (u + 0.5) / 4294967296;
}

/**
 * `count` standard normals for stream (seed, streamId): Box-Muller on Philox blocks, block b has counter (b, 0, 0, 0)
 * and key (seed, streamId). Element k depends only on (seed, streamId, k).
 */
export function normalStream(seed: number, streamId: number, count: number, out?: Float64Array): Float64Array {
  const res = out ?? new Float64Array(count);
  const key: [number, number] = [seed >>> 0, streamId >>> 0];
  for (let b = 0; 4 * b < count; b++) {
    const w = philox4x32([b, 0, 0, 0], key);
    for (let pair = 0; pair < 2; pair++) {
      const u1 = toUnit(w[2 * pair]!);
      const u2 = toUnit(w[2 * pair + 1]!);
      const radius = Math.sqrt(-2 * Math.log(u1));
      const k = 4 * b + 2 * pair;
      if (k < count) res[k] = radius * Math.cos(2 * Math.PI * u2);
      if (k + 1 < count) res[k + 1] = radius * Math.sin(2 * Math.PI * u2);
    }
  }
  return res;
}

/** `count` uniforms in (0, 1) for stream (seed, streamId); element k depends only on (seed, streamId, k). */
export function uniformStream(seed: number, streamId: number, count: number): Float64Array {
  const res = new Float64Array(count);
  const key: [number, number] = [seed >>> 0, (streamId ^ 0x55555555) >>> 0];
  for (let b = 0; 4 * b < count; b++) {
    const w = philox4x32([b, 1, 0, 0], key);
    for (let j = 0; j < 4 && 4 * b + j < count; j++) res[4 * b + j] = toUnit(w[j]!);
  }
  return res;
}

/**
 * Initial noise of the probability-flow ODE for sample i: x_T = sigmaMax * z, z ~ N(0, I_dim), a pure function of
 * (seed, i, dim). Sample ids map to Philox keys (seed, i), so the first `dim` normals of a sample are the same for any dim.
 */
export function initialNoise(seed: number, sample: number, dim: number, sigmaMax: number): Float32Array {
  const z = normalStream(seed, sample, dim);
  const x = new Float32Array(dim);
  for (let k = 0; k < dim; k++) x[k] = sigmaMax * z[k]!;
  return x;
}

/** Initial noise for samples [first, first + count) stacked row-major into one [count, dim] array. */
export function initialNoiseBatch(seed: number, first: number, count: number, dim: number, sigmaMax: number): Float32Array {
  const out = new Float32Array(count * dim);
  for (let r = 0; r < count; r++) out.set(initialNoise(seed, first + r, dim, sigmaMax), r * dim);
  return out;
}
