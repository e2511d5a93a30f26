// Deterministic release of backend memory around a unit of work (a sampling step, a training step).
// On the gpujs backend a tensor's texture is deleted when the collector finalizes its storage, and
// finalizers run only between tasks of the event loop: a synchronous loop (a training run, a
// 50-step sampling) would otherwise hold every texture it ever made until it returns. On cpu the
// arrays are the collector's and `tidy` frees nothing.
import { Tensor, getDefaultBackend } from "./tensor.ts";
import type { Storage } from "./backend/backend.ts";

/** What `tidy` keeps: tensors, and arrays or plain objects of them (other values are ignored; a tensor's `.grad` is kept only when listed). */
export type Keep = unknown;

function collect(x: unknown, out: Storage[], depth: number): void {
  if (x instanceof Tensor) {
    out.push(x.rawStorage);
    return;
  }
  if (depth > 4 || x === null || typeof x !== "object") return;
  if (Array.isArray(x)) for (const v of x) collect(v, out, depth + 1);
  else if (Object.getPrototypeOf(x) === Object.prototype)
    for (const v of Object.values(x as Record<string, unknown>)) collect(v, out, depth + 1);
}

/**
 * Runs `fn` and then frees at once the memory of every tensor made on the default backend while it
 * ran, except the tensors in its result (tensors, arrays and plain objects of them) and those
 * `keep()` returns, evaluated after `fn` (optimizer moments made on the first step, say). Gradients
 * made inside are freed unless listed: `opt.zeroGrad()` (or keeping `p.grad`) after a tidied step.
 * A freed tensor that is used later throws on the gpujs backend; nothing is freed on cpu. Tidy
 * scopes nest: what an inner scope keeps belongs to the outer one. When `fn` throws, nothing is freed.
 *
 *   for (const t of timesteps) latents = tidy(() => step(latents, t));
 *   tidy(() => { loss = ...; loss.backward(); opt.step(); }, () => opt.tensors());
 */
export function tidy<T>(fn: () => T, keep?: () => Keep): T {
  const scope = getDefaultBackend().beginTidy();
  let out: T;
  try {
    out = fn();
  } catch (e) {
    scope.cancel();
    throw e;
  }
  const kept: Storage[] = [];
  collect(out, kept, 0);
  if (keep) collect(keep(), kept, 0);
  scope.end(kept);
  return out;
}
