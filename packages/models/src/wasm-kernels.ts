import * as tf from '@tensorflow/tfjs-core';
import { nativeMatMulActive } from '@trajlab/backend';
// tfjs-layers registers every op's gradient (tfjs-core's Node bundle ships without them)
import '@tensorflow/tfjs-layers';

/**
 * The wasm backend has Conv2D and Conv2DBackpropInput but no Conv2DBackpropFilter kernel, so a convolutional net
 * cannot be trained there. This registers that kernel for stride-1, dilation-1 NHWC convolutions (what trajlab's U-Net
 * uses), built from the backend's own Transpose and Conv2D kernels:
 *   dW[i, j, ci, co] = sum_{b, h, w} xPad[b, h + i, w + j, ci] dy[b, h, w, co]
 * is a convolution of x viewed as [ci, H, W, b] (channels as batch, batch as channels) with dy viewed as a filter
 * [H, W, b, co], padded like the forward pass; its output [ci, kh, kw, co] is dW up to a transpose.
 */

interface BackpropFilterAttrs {
  strides: number | [number, number];
  pad: 'valid' | 'same' | number | backendPad;
  dataFormat: 'NHWC' | 'NCHW';
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
  filterShape: [number, number, number, number];
}
type backendPad = tf.backend_util.ExplicitPadding;

const pair = (v: number | [number, number]) => (Array.isArray(v) ? v : [v, v]);

/** Registers Conv2DBackpropFilter on the active backend if it has none. Returns whether it did. */
export function ensureConvGradient(): boolean {
  const backendName = tf.getBackend();
  if (tf.getKernel('Conv2DBackpropFilter', backendName)) return false;
  const transpose = tf.getKernel('Transpose', backendName)?.kernelFunc;
  const conv2d = tf.getKernel('Conv2D', backendName)?.kernelFunc;
  if (!transpose || !conv2d) throw new Error(`backend ${backendName} lacks Transpose or Conv2D kernels`);
  tf.registerKernel({
    kernelName: 'Conv2DBackpropFilter',
    backendName,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { x, dy } = inputs as { x: tf.TensorInfo; dy: tf.TensorInfo };
      const a = attrs as unknown as BackpropFilterAttrs;
      if (pair(a.strides).some((s) => s !== 1) || a.dataFormat !== 'NHWC') {
        throw new Error(`Conv2DBackpropFilter on ${backendName}: only stride 1 NHWC convolutions can be trained here (strides ${a.strides}, ${a.dataFormat})`);
      }
      const info = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], a.filterShape, 1, 1, a.pad, a.dimRoundingMode);
      const p = info.padInfo;
      const run = (f: tf.KernelFunc, ins: tf.NamedTensorInfoMap, at: tf.NamedAttrMap) => f({ inputs: ins, backend, attrs: at }) as tf.TensorInfo;
      const xT = run(transpose, { x }, { perm: [3, 1, 2, 0] }); // [ci, H, W, B]
      const dyT = run(transpose, { x: dy }, { perm: [1, 2, 0, 3] }); // [H, W, B, co]
      const padding = [[0, 0], [p.top, p.bottom], [p.left, p.right], [0, 0]];
      const out = run(conv2d, { x: xT, filter: dyT }, { strides: 1, pad: padding, dataFormat: 'NHWC', dilations: 1, dimRoundingMode: a.dimRoundingMode } as unknown as tf.NamedAttrMap);
      const dW = run(transpose, { x: out }, { perm: [1, 2, 0, 3] }); // [kh, kw, ci, co]
      for (const t of [xT, dyT, out]) (backend as tf.KernelBackend).disposeData(t.dataId);
      return dW;
    },
  });
  return true;
}

let matMulPatched = false;
let nativeMatMul: tf.KernelConfig | null = null;

/**
 * wasm's BatchMatMul is about 10x slower with transposeA/transposeB than on explicitly transposed operands, and
 * every Dense layer's backward pass asks for transposed products (dW = x^T dy, dx = dy W^T). On wasm this re-registers
 * BatchMatMul so transposed operands are transposed first (same products, same shapes), unless the products already
 * run through the native binding. Returns whether it did.
 */
export function ensureFastTransposedMatMul(): boolean {
  const backendName = tf.getBackend();
  // native products (installed by @trajlab/backend) take transposed operands at full speed
  if (backendName !== 'wasm' || matMulPatched || nativeMatMulActive()) return matMulPatched;
  const original = tf.getKernel('BatchMatMul', backendName);
  const transpose = tf.getKernel('Transpose', backendName)?.kernelFunc;
  if (!original || !transpose) return false;
  nativeMatMul = original;
  tf.unregisterKernel('BatchMatMul', backendName);
  tf.registerKernel({
    ...original,
    kernelFunc: ({ inputs, backend, attrs }) => {
      const { a, b } = inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
      const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
      if (!transposeA && !transposeB) return original.kernelFunc({ inputs, backend, attrs });
      const swapLast = (t: tf.TensorInfo) => {
        const perm = t.shape.map((_, i) => i);
        [perm[perm.length - 1], perm[perm.length - 2]] = [perm[perm.length - 2]!, perm[perm.length - 1]!];
        return transpose({ inputs: { x: t }, backend, attrs: { perm } }) as tf.TensorInfo;
      };
      const aT = transposeA ? swapLast(a) : a;
      const bT = transposeB ? swapLast(b) : b;
      const out = original.kernelFunc({ inputs: { a: aT, b: bT }, backend, attrs: { ...attrs, transposeA: false, transposeB: false } });
      if (transposeA) (backend as tf.KernelBackend).disposeData(aT.dataId);
      if (transposeB) (backend as tf.KernelBackend).disposeData(bT.dataId);
      return out;
    },
  });
  matMulPatched = true;
  return true;
}

/** Puts wasm's own BatchMatMul back (benchmarks measure both). */
export function restoreNativeMatMul(): void {
  if (!matMulPatched || !nativeMatMul) return;
  tf.unregisterKernel('BatchMatMul', nativeMatMul.backendName);
  tf.registerKernel(nativeMatMul);
  matMulPatched = false;
}
