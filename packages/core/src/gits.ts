/**
 * GITS, the geometry-inspired time schedule (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
 * Sampling"). Sampling trajectories are so regular that one can choose the coarse time steps from a few teacher
 * trajectories on a fine grid: the cost of jumping from fine point i to fine point j is the mean distance between the
 * Euler jump x_i + (t_j - t_i) d_i and the teacher's x_j; dynamic programming then picks the S-step path through the
 * fine grid, from its first to its last point, minimising the discounted total cost
 * C[p_0][p_1] + gamma C[p_1][p_2] + gamma^2 C[p_2][p_3] + ...
 */

/**
 * Cost matrix C[i][j] (i < j, row-major N x N, NaN elsewhere) from teacher trajectories: `x` and `d` hold, for each of
 * `samples` trajectories, the N points and derivatives d = (x - D)/t, row-major [samples, N, dim].
 */
export function gitsCostMatrix(x: Float32Array, d: Float32Array, samples: number, sigmas: readonly number[], dim: number): Float64Array {
  const N = sigmas.length;
  const cost = new Float64Array(N * N).fill(Number.NaN);
  for (let i = 0; i < N - 1; i++) {
    for (let j = i + 1; j < N; j++) {
      const h = sigmas[j]! - sigmas[i]!;
      let total = 0;
      for (let s = 0; s < samples; s++) {
        const oi = (s * N + i) * dim;
        const oj = (s * N + j) * dim;
        let sq = 0;
        for (let k = 0; k < dim; k++) {
          const e = x[oi + k]! + h * d[oi + k]! - x[oj + k]!;
          sq += e * e;
        }
        total += Math.sqrt(sq);
      }
      cost[i * N + j] = total / samples;
    }
  }
  return cost;
}

/**
 * The S-step path 0 = p_0 < ... < p_S = N - 1 minimising sum_m gamma^m C[p_m][p_{m+1}], by dynamic programming over
 * V[j][k] = min cost from j to N-1 in k steps = min_{i>j} C[j][i] + gamma V[i][k-1] (ties: the smallest i).
 */
export function gitsDynamicProgram(cost: Float64Array, N: number, steps: number, gamma: number): number[] {
  if (steps < 1 || steps > N - 1) throw new Error(`GITS needs 1 <= steps <= ${N - 1} (teacher grid of ${N} points); got ${steps}`);
  const V = Array.from({ length: steps + 1 }, () => new Float64Array(N).fill(Infinity));
  const next = Array.from({ length: steps + 1 }, () => new Int32Array(N).fill(-1));
  for (let j = 0; j < N - 1; j++) {
    V[1]![j] = cost[j * N + N - 1]!;
    next[1]![j] = N - 1;
  }
  for (let k = 2; k <= steps; k++) {
    for (let j = 0; j < N - 1; j++) {
      for (let i = j + 1; i < N - 1; i++) {
        const v = cost[j * N + i]! + gamma * V[k - 1]![i]!;
        if (v < V[k]![j]!) {
          V[k]![j] = v;
          next[k]![j] = i;
        }
      }
    }
  }
  const path = [0];
  let at = 0;
  for (let k = steps; k >= 1; k--) {
    at = next[k]![at]!;
    if (at < 0) throw new Error('GITS dynamic program found no path');
    path.push(at);
  }
  return path;
}

/** Discounted cost of a path (what the dynamic program minimises). */
export function gitsPathCost(cost: Float64Array, N: number, path: readonly number[], gamma: number): number {
  let total = 0;
  for (let m = 0; m + 1 < path.length; m++) total += gamma ** m * cost[path[m]! * N + path[m + 1]!]!;
  return total;
}
