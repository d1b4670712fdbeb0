import * as tfl from '@tensorflow/tfjs-layers';
import type { ImageShape } from '@trajlab/datasets';

/**
 * The small denoiser networks `trajlab train` builds. Both take the data (c_in x, in the model's layout) and the noise
 * level c_noise of shape [B, 1], and return a tensor shaped like the data. Every layer has a fixed name and a seeded
 * initializer, so the same options and seed give the same initial weights and stable variable names (which training
 * checkpoints rely on).
 */

/** A multilayer perceptron for flat vectors; c_noise goes through a small embedding concatenated to every block. */
export interface MlpArchitecture {
  arch: 'mlp';
  /** Hidden units per layer. @defaultValue 256 */
  width: number;
  /** Hidden layers. @defaultValue 4 */
  depth: number;
  /** Width of the noise-level embedding. @defaultValue 64 */
  embed: number;
}

/**
 * A small U-Net for images (NHWC): per level two 3x3 convolutions, 2x2 average pooling down, nearest upsampling up with
 * skip connections; the noise embedding is added to every level as a per-channel bias.
 */
export interface UnetArchitecture {
  arch: 'unet';
  /** Channels at full resolution (doubled per level). @defaultValue 32 */
  channels: number;
  /** Downsampling steps (height and width must be divisible by 2^levels). @defaultValue 2 */
  levels: number;
  /** Width of the noise-level embedding. @defaultValue 64 */
  embed: number;
}

export type Architecture = MlpArchitecture | UnetArchitecture;

/** Input names of the models trajlab builds. */
export const DATA_INPUT = 'x';
export const NOISE_INPUT = 'noise';

type Sym = tfl.SymbolicTensor;

function namer(seed: number) {
  let i = 0;
  return (name: string) => ({ name, kernelInitializer: tfl.initializers.glorotUniform({ seed: seed * 1000 + i++ }) });
}

function embedding(noise: Sym, embed: number, layer: ReturnType<typeof namer>): Sym {
  const e = tfl.layers.dense({ units: embed, activation: 'swish', ...layer('embed_1') }).apply(noise) as Sym;
  return tfl.layers.dense({ units: embed, activation: 'swish', ...layer('embed_2') }).apply(e) as Sym;
}

/** Builds the MLP for data of dimension `dim`. */
export function buildMlp(dim: number, a: MlpArchitecture, seed: number): tfl.LayersModel {
  const layer = namer(seed);
  const x = tfl.input({ shape: [dim], name: DATA_INPUT });
  const noise = tfl.input({ shape: [1], name: NOISE_INPUT });
  const e = embedding(noise, a.embed, layer);
  let h: Sym = x;
  for (let i = 0; i < a.depth; i++) {
    const joined = tfl.layers.concatenate({ name: `join_${i}` }).apply([h, e]) as Sym;
    h = tfl.layers.dense({ units: a.width, activation: 'swish', ...layer(`hidden_${i}`) }).apply(joined) as Sym;
  }
  const out = tfl.layers.dense({ units: dim, ...layer('out') }).apply(h) as Sym;
  return tfl.model({ inputs: [x, noise], outputs: out, name: 'trajlab_mlp' });
}

/** Builds the U-Net for images of the given shape. */
export function buildUnet(image: ImageShape, a: UnetArchitecture, seed: number): tfl.LayersModel {
  const f = 2 ** a.levels;
  if (image.height % f !== 0 || image.width % f !== 0) {
    throw new Error(`model.levels: ${image.height}x${image.width} images cannot be halved ${a.levels} times (height and width must be divisible by ${f})`);
  }
  const layer = namer(seed);
  const x = tfl.input({ shape: [image.height, image.width, image.channels], name: DATA_INPUT });
  const noise = tfl.input({ shape: [1], name: NOISE_INPUT });
  const e = embedding(noise, a.embed, layer);
  const conv = (h: Sym, ch: number, name: string) => tfl.layers.conv2d({ filters: ch, kernelSize: 3, padding: 'same', activation: 'swish', ...layer(name) }).apply(h) as Sym;
  // the embedding as a per-channel bias [B, 1, 1, ch], broadcast over the feature map
  const withNoise = (h: Sym, ch: number, name: string) => {
    const bias = tfl.layers.dense({ units: ch, ...layer(`${name}_noise`) }).apply(e) as Sym;
    const map = tfl.layers.reshape({ targetShape: [1, 1, ch], name: `${name}_noise_map` }).apply(bias) as Sym;
    return tfl.layers.add({ name: `${name}_add` }).apply([h, map]) as Sym;
  };
  const skips: Sym[] = [];
  let h: Sym = x;
  for (let l = 0; l <= a.levels; l++) {
    const ch = a.channels * 2 ** Math.min(l, 2);
    if (l > 0) h = tfl.layers.averagePooling2d({ poolSize: 2, name: `down_${l}` }).apply(h) as Sym;
    h = withNoise(conv(h, ch, `enc_${l}_a`), ch, `enc_${l}`);
    h = conv(h, ch, `enc_${l}_b`);
    skips.push(h);
  }
  for (let l = a.levels - 1; l >= 0; l--) {
    const ch = a.channels * 2 ** Math.min(l, 2);
    h = tfl.layers.upSampling2d({ size: [2, 2], name: `up_${l}` }).apply(h) as Sym;
    h = tfl.layers.concatenate({ name: `skip_${l}` }).apply([h, skips[l]!]) as Sym;
    h = withNoise(conv(h, ch, `dec_${l}_a`), ch, `dec_${l}`);
    h = conv(h, ch, `dec_${l}_b`);
  }
  const out = tfl.layers.conv2d({ filters: image.channels, kernelSize: 3, padding: 'same', ...layer('out') }).apply(h) as Sym;
  return tfl.model({ inputs: [x, noise], outputs: out, name: 'trajlab_unet' });
}

/** Builds the network an architecture describes for this data. */
export function buildNetwork(a: Architecture, dim: number, image: ImageShape | undefined, seed: number): tfl.LayersModel {
  if (a.arch === 'mlp') return buildMlp(dim, a, seed);
  if (!image) throw new Error(`model.arch: 'unet' needs image data; the dataset has flat vectors of dim ${dim} (use arch: mlp)`);
  return buildUnet(image, a, seed);
}
