import type { Parameterization } from '@trajlab/denoisers';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Writes TF.js graph models (the format tensorflowjs_converter produces from a SavedModel) by hand: a GraphDef as JSON
 * nodes plus a weights manifest. Used to load, through the same loader and wrapper as any user model, networks whose
 * output is known in closed form.
 */
export class GraphBuilder {
  readonly nodes: object[] = [];
  readonly weights: { name: string; shape: number[]; values: number[] }[] = [];
  private n = 0;

  placeholder(name: string, shape: number[]): string {
    this.nodes.push({ name, op: 'Placeholder', attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { dim: shape.map((s) => ({ size: String(s) })) } } } });
    return name;
  }

  constant(name: string, shape: number[], values: number[]): string {
    this.nodes.push({ name, op: 'Const', attr: { dtype: { type: 'DT_FLOAT' }, value: { tensor: { dtype: 'DT_FLOAT', tensorShape: { dim: shape.map((s) => ({ size: String(s) })) } } } } });
    this.weights.push({ name, shape, values });
    return name;
  }

  op(op: string, ...inputs: string[]): string {
    const name = `${op.toLowerCase()}_${this.n++}`;
    this.nodes.push({ name, op, input: inputs, attr: { T: { type: 'DT_FLOAT' }, ...(op === 'MatMul' ? { transpose_a: { b: false }, transpose_b: { b: false } } : {}) } });
    return name;
  }

  write(dir: string, output: string): void {
    this.nodes.push({ name: 'Identity', op: 'Identity', input: [output], attr: { T: { type: 'DT_FLOAT' } } });
    mkdirSync(dir, { recursive: true });
    const data = Float32Array.from(this.weights.flatMap((w) => w.values));
    writeFileSync(join(dir, 'group1-shard1of1.bin'), new Uint8Array(data.buffer));
    const json = {
      format: 'graph-model',
      generatedBy: 'trajlab test',
      convertedBy: null,
      modelTopology: { node: this.nodes, library: {}, versions: { producer: 1 } },
      weightsManifest: [{ paths: ['group1-shard1of1.bin'], weights: this.weights.map((w) => ({ name: w.name, shape: w.shape, dtype: 'float32' })) }],
    };
    writeFileSync(join(dir, 'model.json'), JSON.stringify(json));
  }
}

/**
 * A graph model computing what a perfectly trained network of `param` outputs for isotropic Gaussian data N(mu, v I):
 * inputs x = c_in x_t [B, dim] and noise = ln(sigma)/4 [B, 1]; it recovers sigma and x_t, forms the exact denoiser
 * D = mu + v/(v + sigma^2) (x_t - mu) and returns the parameterization's target (D - c_skip x_t) / c_out.
 */
export function writeExactGaussianGraphModel(dir: string, mu: ArrayLike<number>, v: number, sigmaData: number, param: Parameterization): void {
  const g = new GraphBuilder();
  const dim = mu.length;
  const u = g.placeholder('x', [-1, dim]);
  const noise = g.placeholder('noise', [-1, 1]);
  const muC = g.constant('mu', [1, dim], Array.from(mu));
  const vC = g.constant('variance', [], [v]);
  const sd2 = g.constant('sigma_data_sq', [], [sigmaData * sigmaData]);
  const four = g.constant('four', [], [4]);
  const s = g.op('Exp', g.op('Mul', noise, four));
  const s2 = g.op('Square', s);
  const n2 = g.op('AddV2', s2, sd2);
  const norm = g.op('Sqrt', n2);
  const x = g.op('Mul', u, norm);
  const shrink = g.op('RealDiv', vC, g.op('AddV2', s2, vC));
  const d = g.op('AddV2', muC, g.op('Mul', shrink, g.op('Sub', x, muC)));
  let out = d;
  if (param === 'eps') out = g.op('RealDiv', g.op('Sub', x, d), s);
  if (param === 'edm' || param === 'v') {
    const sd = g.constant('sigma_data', [], [sigmaData]);
    const cSkip = g.op('RealDiv', sd2, n2);
    const cOut = g.op('RealDiv', g.op('Mul', s, sd), norm);
    out = g.op('RealDiv', g.op('Sub', d, g.op('Mul', cSkip, x)), cOut);
    if (param === 'v') out = g.op('Neg', out);
  }
  g.write(dir, out);
}
