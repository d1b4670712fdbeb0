import * as tf from '@tensorflow/tfjs-core';

/** sum_k c_k T_k for tensors of one shape (a new tensor; inputs untouched). Zero coefficients are skipped. */
export function combine(terms: readonly (readonly [tf.Tensor2D, number])[]): tf.Tensor2D {
  return tf.tidy(() => {
    let acc: tf.Tensor | null = null;
    for (const [t, c] of terms) {
      if (c === 0) continue;
      const term = c === 1 ? t : tf.mul(t, c);
      acc = acc ? tf.add(acc, term) : term;
    }
    return (acc ? tf.clone(acc) : tf.zerosLike(terms[0]![0])) as tf.Tensor2D;
  });
}

/** d = (x - D) / t: the PF-ODE derivative dx/dt (= the noise estimate eps in the EDM form). */
export function derivative(x: tf.Tensor2D, denoised: tf.Tensor2D, t: number): tf.Tensor2D {
  return tf.tidy(() => tf.div(tf.sub(x, denoised), t) as tf.Tensor2D);
}

/** Solves a small dense linear system A y = b (row-major n x n) by Gaussian elimination with partial pivoting. */
export function solveSmall(a: number[][], b: number[]): number[] {
  const n = b.length;
  const m = a.map((row, i) => [...row, b[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(m[r]![c]!) > Math.abs(m[p]![c]!)) p = r;
    [m[c], m[p]] = [m[p]!, m[c]!];
    for (let r = c + 1; r < n; r++) {
      const f = m[r]![c]! / m[c]![c]!;
      for (let k = c; k <= n; k++) m[r]![k] = m[r]![k]! - f * m[c]![k]!;
    }
  }
  const y = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = m[r]![n]!;
    for (let k = r + 1; k < n; k++) s -= m[r]![k]! * y[k]!;
    y[r] = s / m[r]![r]!;
  }
  return y;
}

/** Nodes and weights of 8-point Gauss-Legendre quadrature on [-1, 1] (exact for polynomials of degree <= 15). */
const GL_X = [-0.9602898564975363, -0.7966664774136267, -0.525532409916329, -0.1834346424956498, 0.1834346424956498, 0.525532409916329, 0.7966664774136267, 0.9602898564975363];
const GL_W = [0.1012285362903763, 0.2223810344533745, 0.3137066458778873, 0.362683783378362, 0.362683783378362, 0.3137066458778873, 0.2223810344533745, 0.1012285362903763];

/** integral of f over [a, b] by composite 8-point Gauss-Legendre on `pieces` equal sub-intervals. */
export function integrate(f: (u: number) => number, a: number, b: number, pieces = 1): number {
  let total = 0;
  const w = (b - a) / pieces;
  for (let p = 0; p < pieces; p++) {
    const lo = a + p * w;
    const mid = lo + w / 2;
    for (let k = 0; k < 8; k++) total += GL_W[k]! * f(mid + (w / 2) * GL_X[k]!);
  }
  return (total * w) / 2;
}

/**
 * Adams-Bashforth coefficients for variable nodes: c_j = integral over [u_0, uNext] of L_j(u) w(u) du, where L_j is the
 * Lagrange basis polynomial of node u_j among `nodes` (nodes[0] the current point, then older ones).
 */
export function adamsCoefficients(nodes: readonly number[], uNext: number, weight?: (u: number) => number, pieces = 1): number[] {
  return nodes.map((uj, j) =>
    integrate(
      (u) => {
        let l = 1;
        nodes.forEach((um, m) => {
          if (m !== j) l *= (u - um) / (uj - um);
        });
        return weight ? l * weight(u) : l;
      },
      nodes[0]!,
      uNext,
      pieces,
    ),
  );
}
