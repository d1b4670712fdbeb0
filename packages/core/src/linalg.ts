/**
 * Small dense float64 linear algebra for host-side metrics and analytic denoisers: symmetric eigendecomposition
 * (Householder tridiagonalisation followed by the implicit QL algorithm, as in EISPACK tred2/tql2) and Gram-Schmidt.
 * Matrices are row-major Float64Array of n * n.
 */

/** Result of a symmetric eigendecomposition, eigenvalues in descending order. */
export interface SymmetricEigen {
  values: Float64Array;
  /** Column k (vectors[i * n + k]) is the unit eigenvector of values[k]; absent when only values were asked for. */
  vectors?: Float64Array;
}

/** Householder reduction of the symmetric matrix in v (overwritten) to tridiagonal form: diagonal d, off-diagonal e. */
function tridiagonalize(v: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = v[(n - 1) * n + j]!;
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]!);
    if (scale === 0) {
      e[i] = d[i - 1]!;
      for (let j = 0; j < i; j++) {
        d[j] = v[(i - 1) * n + j]!;
        v[i * n + j] = 0;
        v[j * n + i] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] = d[k]! / scale;
        h += d[k]! * d[k]!;
      }
      let f = d[i - 1]!;
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        v[j * n + i] = f;
        g = e[j]! + v[j * n + j]! * f;
        for (let k = j + 1; k <= i - 1; k++) {
          g += v[k * n + j]! * d[k]!;
          e[k] = e[k]! + v[k * n + j]! * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] = e[j]! / h;
        f += e[j]! * d[j]!;
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] = e[j]! - hh * d[j]!;
      for (let j = 0; j < i; j++) {
        f = d[j]!;
        g = e[j]!;
        for (let k = j; k <= i - 1; k++) v[k * n + j] = v[k * n + j]! - (f * e[k]! + g * d[k]!);
        d[j] = v[(i - 1) * n + j]!;
        v[i * n + j] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations.
  for (let i = 0; i < n - 1; i++) {
    v[(n - 1) * n + i] = v[i * n + i]!;
    v[i * n + i] = 1;
    const h = d[i + 1]!;
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = v[k * n + i + 1]! / h;
      for (let j = 0; j <= i; j++) {
        let g = 0;
        for (let k = 0; k <= i; k++) g += v[k * n + i + 1]! * v[k * n + j]!;
        for (let k = 0; k <= i; k++) v[k * n + j] = v[k * n + j]! - g * d[k]!;
      }
    }
    for (let k = 0; k <= i; k++) v[k * n + i + 1] = 0;
  }
  for (let j = 0; j < n; j++) {
    d[j] = v[(n - 1) * n + j]!;
    v[(n - 1) * n + j] = 0;
  }
  v[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** Implicit QL iterations on the tridiagonal (d, e); rotations are applied to v when `withVectors`. */
function tridiagonalQl(v: Float64Array, n: number, d: Float64Array, e: Float64Array, withVectors: boolean): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i]!;
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  const eps = 2 ** -52;
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]!) + Math.abs(e[l]!));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]!) <= eps * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 200) throw new Error('symmetric eigendecomposition did not converge');
        let g = d[l]!;
        let p = (d[l + 1]! - g) / (2 * e[l]!);
        let r = Math.hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l]! / (p + r);
        d[l + 1] = e[l]! * (p + r);
        const dl1 = d[l + 1]!;
        let h = g - d[l]!;
        for (let i = l + 2; i < n; i++) d[i] = d[i]! - h;
        f += h;
        p = d[m]!;
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1]!;
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i]!;
          h = c * p;
          r = Math.hypot(p, e[i]!);
          e[i + 1] = s * r;
          s = e[i]! / r;
          c = p / r;
          p = c * d[i]! - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]!);
          if (withVectors) {
            for (let k = 0; k < n; k++) {
              const vk = k * n;
              h = v[vk + i + 1]!;
              v[vk + i + 1] = s * v[vk + i]! + c * h;
              v[vk + i] = c * v[vk + i]! - s * h;
            }
          }
        }
        p = (-s * s2 * c3 * el1 * e[l]!) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]!) > eps * tst1);
    }
    d[l] = d[l]! + f;
    e[l] = 0;
  }
}

/** Eigen-decomposes a symmetric n x n matrix (not modified). Eigenvalues come back in descending order. */
export function symmetricEigen(matrix: Float64Array, n: number, withVectors = true): SymmetricEigen {
  if (n === 0) return { values: new Float64Array(0), vectors: withVectors ? new Float64Array(0) : undefined };
  const v = Float64Array.from(matrix);
  const d = new Float64Array(n);
  const e = new Float64Array(n);
  tridiagonalize(v, n, d, e);
  tridiagonalQl(v, n, d, e, withVectors);
  const order = Array.from({ length: n }, (_, i) => i).sort((a, b) => d[b]! - d[a]!);
  const values = Float64Array.from(order, (i) => d[i]!);
  if (!withVectors) return { values };
  const vectors = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    const src = order[k]!;
    for (let i = 0; i < n; i++) vectors[i * n + k] = v[i * n + src]!;
  }
  return { values, vectors };
}

/**
 * Orthonormalises the `cols` columns of a row-major [rows, cols] matrix in place (modified Gram-Schmidt, `passes`
 * times: twice makes the result orthonormal to rounding even for nearly dependent columns). Throws if the columns are
 * linearly dependent.
 * @param passes Gram-Schmidt passes. @defaultValue 2
 */
export function orthonormalizeColumns(a: Float64Array, rows: number, cols: number, passes = 2): void {
  // worked on a column-major copy (contiguous columns); the same operations in the same order as on `a` itself
  const c = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) c[j * rows + i] = a[i * cols + j]!;
  for (let pass = 0; pass < passes; pass++) {
    for (let j = 0; j < cols; j++) {
      const cj = j * rows;
      for (let k = 0; k < j; k++) {
        const ck = k * rows;
        let dot = 0;
        for (let i = 0; i < rows; i++) dot += c[cj + i]! * c[ck + i]!;
        for (let i = 0; i < rows; i++) c[cj + i] = c[cj + i]! - dot * c[ck + i]!;
      }
      let norm = 0;
      for (let i = 0; i < rows; i++) norm += c[cj + i]! ** 2;
      norm = Math.sqrt(norm);
      if (!(norm > 1e-12)) throw new Error('columns are linearly dependent');
      for (let i = 0; i < rows; i++) c[cj + i] = c[cj + i]! / norm;
    }
  }
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) a[i * cols + j] = c[j * rows + i]!;
}
