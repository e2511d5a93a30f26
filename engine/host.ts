// A tensor as plain host data, the form tensors take in files, state dicts and deltas.

/** A row-major `shape` and its `product(shape)` values (Float32Array unless said otherwise). */
export interface HostTensor<A extends ArrayLike<number> = Float32Array> {
  shape: readonly number[];
  data: A;
}
