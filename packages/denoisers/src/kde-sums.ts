/**
 * The KDE gain's exponential sums over one chunk of the training set, in float64 (TrainingSet.kdeGain). For each query
 * row, with a_j its logits at x (bandwidth t) and c_j = (2 delta . y_j - rowTerm) / (2 t^2):
 *   m0 = max_j a_j,  s0 = sum_j e^(a_j - m0),  z_j = (a_j - m0) + c_j,  m1 = max_j z_j,  s1 = sum_j e^(z_j - m1).
 * This is the same arithmetic as the native binding's kdeSums (packages/backend/native/kde_sums.c), operation for
 * operation, so the two give the same bits: kdeExp below, and sums taken in eight lanes (lane l adds the terms
 * j = l mod 8 in order of j) joined as ((l0 + l1) + (l2 + l3)) + ((l4 + l5) + (l6 + l7)). With native products the
 * binding runs them (vectorised, ~10x faster); without, this code does.
 */

const EXP_MIN = -700;
const LOG2E = 1.4426950408889634;
const LN2_HI = 6.9314718036912381649e-1;
const LN2_LO = 1.90821492927058770002e-10;
/** 1.5 * 2^52: adding and subtracting it rounds a double of magnitude below 2^51 to the nearest integer (ties to even). */
const ROUND = 6755399441055744;
/** 1/13!, 1/12!, ..., 1/1!, 1/0!: e^r's Taylor coefficients from the highest degree down. */
const POLY = [1 / 6227020800, 1 / 479001600, 1 / 39916800, 1 / 3628800, 1 / 362880, 1 / 40320, 1 / 5040, 1 / 720, 1 / 120, 1 / 24, 1 / 6, 0.5, 1, 1];
/** The lowest and highest n of 2^n in POW2. */
const POW2_MIN = -1022;
const POW2_MAX = 1023;
/** 2^n for n from POW2_MIN to POW2_MAX, each exact (halving and doubling 1 are exact in the normal range). */
const POW2 = (() => {
  const table = new Float64Array(POW2_MAX - POW2_MIN + 1);
  table[-POW2_MIN] = 1;
  for (let n = -1; n >= POW2_MIN; n--) table[n - POW2_MIN] = table[n + 1 - POW2_MIN]! * 0.5;
  for (let n = 1; n <= POW2_MAX; n++) table[n - POW2_MIN] = table[n - 1 - POW2_MIN]! * 2;
  return table;
})();

/**
 * e^x in float64 for x <= 0, within a few ulps: x = n ln 2 + r with n = x log2 e rounded to the nearest integer and
 * |r| <= ln 2 / 2 (Cody-Waite: ln 2 split in two so that n ln2_hi is exact), e^r by its Taylor polynomial of degree 13
 * in Horner form (truncation below 1e-17 relative), times 2^n. 0 below -700 (such a term is below 1e-304, and every sum
 * here has a term of exactly 1, its maximum's); NaN for NaN.
 */
export function kdeExp(x: number): number {
  if (x < EXP_MIN) return 0;
  const n = x * LOG2E + ROUND - ROUND;
  const r = x - n * LN2_HI - n * LN2_LO;
  let p = POLY[0]!;
  for (let i = 1; i < 14; i++) p = p * r + POLY[i]!;
  return p * POW2[n - POW2_MIN]!;
}

const LANES = 8;

/** The eight lanes joined in the fixed order above. */
function joinLanes(lane: Float64Array): number {
  return lane[0]! + lane[1]! + (lane[2]! + lane[3]!) + (lane[4]! + lane[5]! + (lane[6]! + lane[7]!));
}

/**
 * z_j = (a_j - m0) + c_j with c_j = (2 dy_j - rowTerm) / 2 * invT2, in the order kdeGain has always computed it (the
 * binding's `shifted`).
 */
function shifted(a: number, dy: number, m0: number, rowTerm: number, invT2: number): number {
  return a - m0 + (2 * dy - rowTerm) * 0.5 * invT2;
}

/**
 * The sums of every row: `a` and `dy` are [B, size] row-major (B = rowTerm.length), rowTerm[r] = delta . (x + x') of
 * row r, invT2 = 1 / t^2; out[4r .. 4r + 3] = m0, s0, m1, s1.
 */
export function kdeChunkSums(a: Float32Array, dy: Float32Array, rowTerm: Float64Array, invT2: number, out: Float64Array): void {
  const B = rowTerm.length;
  const size = a.length / B;
  const l0 = new Float64Array(LANES);
  const l1 = new Float64Array(LANES);
  for (let r = 0; r < B; r++) {
    const base = r * size;
    const rt = rowTerm[r]!;
    let m0 = -Infinity;
    for (let j = 0; j < size; j++) {
      const v = a[base + j]!;
      m0 = v > m0 ? v : m0;
    }
    let m1 = -Infinity;
    for (let j = 0; j < size; j++) {
      const z = shifted(a[base + j]!, dy[base + j]!, m0, rt, invT2);
      m1 = z > m1 ? z : m1;
    }
    l0.fill(0);
    l1.fill(0);
    for (let j = 0; j < size; j++) {
      l0[j & 7] = l0[j & 7]! + kdeExp(a[base + j]! - m0);
      l1[j & 7] = l1[j & 7]! + kdeExp(shifted(a[base + j]!, dy[base + j]!, m0, rt, invT2) - m1);
    }
    out[4 * r] = m0;
    out[4 * r + 1] = joinLanes(l0);
    out[4 * r + 2] = m1;
    out[4 * r + 3] = joinLanes(l1);
  }
}
