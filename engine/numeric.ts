// Scalar numeric helpers shared by the layers above the engine.

/** Rounds to the nearest integer, ties to even: numpy's `np.round` and Python's `round`. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}
