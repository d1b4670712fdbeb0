/**
 * Straightforward float64 reference implementations of every solver, one sample at a time, written from the papers'
 * update rules (not sharing code with packages/core), for step-by-step comparison.
 */
export type Den = (x: number[], t: number) => number[];
type Vec = number[];

const add = (a: Vec, b: Vec, s = 1): Vec => a.map((v, k) => v + s * b[k]!);
const scale = (a: Vec, s: number): Vec => a.map((v) => v * s);
const deriv = (x: Vec, d: Vec, t: number): Vec => x.map((v, k) => (v - d[k]!) / t);

/** Integral over [a, b] of a polynomial given by its values at nodes (Vandermonde fit, exact monomial integration). */
function polyIntegralWeights(nodes: number[], a: number, b: number): number[] {
  const n = nodes.length;
  // weights w with sum_j w_j f(node_j) = integral of the interpolant: solve V^T w = m, m_k = integral of u^k.
  const shift = nodes[0]!;
  const z = nodes.map((u) => u - shift);
  const m = Array.from({ length: n }, (_, k) => ((b - shift) ** (k + 1) - (a - shift) ** (k + 1)) / (k + 1));
  const A = Array.from({ length: n }, (_, k) => z.map((u) => u ** k));
  // Gaussian elimination on A w = m
  const M = A.map((row, i) => [...row, m[i]!]);
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(M[r]![c]!) > Math.abs(M[p]![c]!)) p = r;
    [M[c], M[p]] = [M[p]!, M[c]!];
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
    }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}

export function refEuler(D: Den, x0: Vec, s: number[]): Vec[] {
  const xs = [x0];
  let x = x0;
  for (let i = 0; i + 1 < s.length; i++) {
    x = add(x, deriv(x, D(x, s[i]!), s[i]!), s[i + 1]! - s[i]!);
    xs.push(x);
  }
  return xs;
}

export function refHeun(D: Den, x0: Vec, s: number[]): Vec[] {
  const xs = [x0];
  let x = x0;
  for (let i = 0; i + 1 < s.length; i++) {
    const h = s[i + 1]! - s[i]!;
    const d = deriv(x, D(x, s[i]!), s[i]!);
    const xe = add(x, d, h);
    const d2 = deriv(xe, D(xe, s[i + 1]!), s[i + 1]!);
    x = add(x, add(d, d2), h / 2);
    xs.push(x);
  }
  return xs;
}

export function refDpm2(D: Den, x0: Vec, s: number[]): Vec[] {
  const xs = [x0];
  let x = x0;
  for (let i = 0; i + 1 < s.length; i++) {
    const mid = Math.sqrt(s[i]! * s[i + 1]!);
    const d = deriv(x, D(x, s[i]!), s[i]!);
    const xm = add(x, d, mid - s[i]!);
    x = add(x, deriv(xm, D(xm, mid), mid), s[i + 1]! - s[i]!);
    xs.push(x);
  }
  return xs;
}

/** DPM-Solver++(2M) in k-diffusion's form: x <- (t'/t) x - expm1(-h) ((1 + 1/2r) D_i - (1/2r) D_{i-1}). */
export function refDpmpp2m(D: Den, x0: Vec, s: number[], lowerOrderFinal = true): Vec[] {
  const xs = [x0];
  let x = x0;
  let old: Vec | null = null;
  const S = s.length - 1;
  for (let i = 0; i < S; i++) {
    const den = D(x, s[i]!);
    const h = Math.log(s[i]! / s[i + 1]!);
    const lastLow = lowerOrderFinal && S < 10 && i === S - 1;
    let dd = den;
    if (old && !lastLow) {
      const r = Math.log(s[i - 1]! / s[i]!) / h;
      dd = add(scale(den, 1 + 1 / (2 * r)), old, -1 / (2 * r));
    }
    x = add(scale(x, s[i + 1]! / s[i]!), dd, -Math.expm1(-h));
    old = den;
    xs.push(x);
  }
  return xs;
}

/** DPM-Solver++(3M), the reference implementation's update; `taylorFactor` 2 gives the exact third-order variant. */
export function refDpmpp3m(D: Den, x0: Vec, s: number[], taylorFactor = 1, lowerOrderFinal = true): Vec[] {
  const xs = [x0];
  let x = x0;
  const ms: Vec[] = [];
  const S = s.length - 1;
  const lam = s.map((v) => -Math.log(v));
  for (let i = 0; i < S; i++) {
    const m0 = D(x, s[i]!);
    ms.push(m0);
    let order = Math.min(3, i + 1);
    if (lowerOrderFinal && S < 10) order = Math.min(order, S - i);
    const h = lam[i + 1]! - lam[i]!;
    const p1 = Math.expm1(-h);
    const base = add(scale(x, s[i + 1]! / s[i]!), m0, -p1);
    if (order === 1) x = base;
    else if (order === 2) {
      const r0 = (lam[i]! - lam[i - 1]!) / h;
      x = add(base, add(m0, ms[i - 1]!, -1), -0.5 * p1 / r0);
    } else {
      const r0 = (lam[i]! - lam[i - 1]!) / h;
      const r1 = (lam[i - 1]! - lam[i - 2]!) / h;
      const d10 = scale(add(m0, ms[i - 1]!, -1), 1 / r0);
      const d11 = scale(add(ms[i - 1]!, ms[i - 2]!, -1), 1 / r1);
      const d1 = add(d10, add(d10, d11, -1), r0 / (r0 + r1));
      const d2 = scale(add(d10, d11, -1), taylorFactor / (r0 + r1));
      const p2 = p1 / h + 1;
      const p3 = p2 / h - 0.5;
      x = add(add(base, d1, p2), d2, -p3);
    }
    xs.push(x);
  }
  return xs;
}

/** Linear multistep on d: x <- x + sum_j w_j d_{i-j}; `weights(i, order)` gives w. */
function refMultistep(D: Den, x0: Vec, s: number[], maxOrder: number, weights: (i: number, order: number) => number[]): Vec[] {
  const xs = [x0];
  let x = x0;
  const ds: Vec[] = [];
  for (let i = 0; i + 1 < s.length; i++) {
    ds.push(deriv(x, D(x, s[i]!), s[i]!));
    const order = Math.min(maxOrder, i + 1);
    const w = weights(i, order);
    w.forEach((wj, j) => (x = add(x, ds[i - j]!, wj)));
    xs.push(x);
  }
  return xs;
}

export function refIpndm(D: Den, x0: Vec, s: number[]): Vec[] {
  const ab = [[1], [1.5, -0.5], [23 / 12, -4 / 3, 5 / 12], [55 / 24, -59 / 24, 37 / 24, -3 / 8]];
  return refMultistep(D, x0, s, 4, (i, o) => ab[o - 1]!.map((c) => c * (s[i + 1]! - s[i]!)));
}

export function refIpndmV(D: Den, x0: Vec, s: number[]): Vec[] {
  return refMultistep(D, x0, s, 4, (i, o) => polyIntegralWeights(Array.from({ length: o }, (_, j) => s[i - j]!), s[i]!, s[i + 1]!));
}

/** DEIS tAB3: weights integral of L_j(tau) sigma'(tau) over [tau_i, tau_{i+1}] by Simpson's rule on 4000 intervals. */
export function refDeisTab3(D: Den, x0: Vec, s: number[]): Vec[] {
  const eps = 1e-3;
  const smax = s[0]!;
  const smin = s[s.length - 1]!;
  const bd = (2 * (Math.log(smin ** 2 + 1) / eps - Math.log(smax ** 2 + 1))) / (eps - 1);
  const bm = Math.log(smax ** 2 + 1) - 0.5 * bd;
  const sig = (u: number) => Math.sqrt(Math.exp(0.5 * bd * u * u + bm * u) - 1);
  const tau = (v: number) => (Math.sqrt(bm * bm + 2 * bd * Math.log(v * v + 1)) - bm) / bd;
  const taus = s.map(tau);
  return refMultistep(D, x0, s, 4, (i, o) => {
    if (o === 1) return [s[i + 1]! - s[i]!];
    const nodes = Array.from({ length: o }, (_, j) => taus[i - j]!);
    const a = taus[i]!;
    const b = taus[i + 1]!;
    const n = 4000;
    const hh = (b - a) / n;
    return nodes.map((uj, j) => {
      const f = (u: number) => {
        let l = 1;
        nodes.forEach((um, m) => {
          if (m !== j) l *= (u - um) / (uj - um);
        });
        const ds = 1e-6 * Math.max(1, Math.abs(u));
        return l * ((sig(u + ds) - sig(u - ds)) / (2 * ds));
      };
      let acc = f(a) + f(b);
      for (let k = 1; k < n; k++) acc += (k % 2 ? 4 : 2) * f(a + k * hh);
      return (acc * hh) / 3;
    });
  });
}

/** UniPC-bh2 (data prediction) as described in the UniPC paper's Algorithms 2-3, VE form. */
export function refUnipc(D: Den, x0: Vec, s: number[], order = 3, lowerOrderFinal = true): Vec[] {
  const xs = [x0];
  let x = x0;
  const S = s.length - 1;
  const lam = s.map((v) => -Math.log(v));
  const ms: Vec[] = [D(x, s[0]!)];
  for (let i = 0; i < S; i++) {
    let p = Math.min(order, i + 1);
    if (lowerOrderFinal) p = Math.min(p, S - i);
    const h = lam[i + 1]! - lam[i]!;
    const m0 = ms[i]!;
    const rks = Array.from({ length: p - 1 }, (_, k) => (lam[i - k - 1]! - lam[i]!) / h);
    const d1s = rks.map((rk, k) => scale(add(ms[i - k - 1]!, m0, -1), 1 / rk));
    const r = [...rks, 1];
    // g_k(h) recursion for phi functions of -h: phi_1 = expm1(-h)/(-h) ... ; b_k = h_phi_k * k! / B(h)
    const hh = -h;
    const bH = Math.expm1(hh);
    const b: number[] = [];
    let hphi = Math.expm1(hh) / hh - 1;
    let fact = 1;
    for (let k = 1; k <= p; k++) {
      b.push((hphi * fact) / bH);
      fact *= k + 1;
      hphi = hphi / hh - 1 / fact;
    }
    const R = Array.from({ length: p }, (_, k) => r.map((v) => v ** k));
    const solve = (A: number[][], y: number[]) => {
      const n = y.length;
      const inv = polyIntegralWeightsSolve(A, y, n);
      return inv;
    };
    const base = add(scale(x, s[i + 1]! / s[i]!), m0, -Math.expm1(hh));
    const rhoP = p === 1 ? [] : p === 2 ? [0.5] : solve(R.slice(0, p - 1).map((row) => row.slice(0, p - 1)), b.slice(0, p - 1));
    let pred = base;
    rhoP.forEach((rho, k) => (pred = add(pred, d1s[k]!, -bH * rho)));
    if (i < S - 1) {
      const mt = D(pred, s[i + 1]!);
      const rhoC = p === 1 ? [0.5] : solve(R, b);
      let corr = base;
      rhoC.slice(0, -1).forEach((rho, k) => (corr = add(corr, d1s[k]!, -bH * rho)));
      corr = add(corr, add(mt, m0, -1), -bH * rhoC[rhoC.length - 1]!);
      x = corr;
      ms.push(mt);
    } else {
      x = pred;
    }
    xs.push(x);
  }
  return xs;
}

function polyIntegralWeightsSolve(A: number[][], y: number[], n: number): number[] {
  const M = A.map((row, i) => [...row.slice(0, n), y[i]!]);
  for (let c = 0; c < n; c++) {
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = M[r]![c]! / M[c]![c]!;
      for (let k = c; k <= n; k++) M[r]![k] = M[r]![k]! - f * M[c]![k]!;
    }
  }
  return M.map((row, i) => row[n]! / row[i]!);
}
