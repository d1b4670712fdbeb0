import * as tf from '@tensorflow/tfjs-core';

/**
 * Adam (Kingma & Ba 2015) with its state in plain variables: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
 * w <- w - lr (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps). The bias corrections are computed from the step count in
 * float64 each step (tf.train.adam accumulates them by repeated float32 products, which a resumed run cannot
 * reproduce bit for bit).
 */
export class Adam {
  readonly m: tf.Variable[];
  readonly v: tf.Variable[];
  /** Steps taken. */
  t = 0;
  constructor(
    weights: tf.Variable[],
    private readonly lr: number,
    private readonly beta1 = 0.9,
    private readonly beta2 = 0.999,
    private readonly eps = 1e-8,
  ) {
    this.m = weights.map((w) => tf.variable(tf.zerosLike(w), false));
    this.v = weights.map((w) => tf.variable(tf.zerosLike(w), false));
  }

  apply(weights: tf.Variable[], grads: tf.Tensor[]): void {
    this.t++;
    const c1 = 1 - this.beta1 ** this.t;
    const c2 = 1 - this.beta2 ** this.t;
    tf.tidy(() => {
      weights.forEach((w, i) => {
        const g = grads[i]!;
        const m = tf.add(tf.mul(this.m[i]!, this.beta1), tf.mul(g, 1 - this.beta1));
        const v = tf.add(tf.mul(this.v[i]!, this.beta2), tf.mul(tf.square(g), 1 - this.beta2));
        this.m[i]!.assign(m);
        this.v[i]!.assign(v);
        w.assign(tf.sub(w, tf.div(tf.mul(m, this.lr / c1), tf.add(tf.sqrt(tf.div(v, c2)), this.eps))));
      });
    });
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}
