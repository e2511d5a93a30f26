// Reuse of the cpu backend's output arrays. Kernels take their outputs from a pool of released arrays
// of the same type and length (zero-filled like fresh ones, or left as they are where the kernel
// overwrites every element), so a training loop stops paying for fresh pages and for the collector.
// Arrays come back only through a scratch scope: autograd opens one per backward pass and releases
// the intermediate gradients it has consumed, which it knows are referenced nowhere else; arrays
// allocated before the scope opened (weights, activations, cached constants) are never taken back.

import type { TypedArray } from "../../dtype.ts";

type Ctor = Float32ArrayConstructor | Float64ArrayConstructor;

/** Arrays shorter than this are left to the collector (reusing them saves nothing). */
const MIN_POOLED = 1024;
/** Default bound on the bytes the pool holds (`CDIFF_POOL_MB` overrides; 0 turns reuse off). */
const DEFAULT_POOL_BYTES = 1024 * 2 ** 20;

const envMb = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.CDIFF_POOL_MB;
let capacity = envMb !== undefined && /^\d+$/.test(envMb) ? Number(envMb) * 2 ** 20 : DEFAULT_POOL_BYTES;

const free32 = new Map<number, Float32Array[]>();
const free64 = new Map<number, Float64Array[]>();
let held = 0;
const counters = { taken: 0, reused: 0, released: 0, dropped: 0 };

/**
 * A scratch scope's identity. A closed scope points `into` the scope that was open around it, which
 * inherits what it allocated; a closed outermost scope points nowhere.
 */
interface ScopeToken {
  open: boolean;
  into: ScopeToken | null;
}
/** Scratch scopes open now (innermost last). */
const scopes: ScopeToken[] = [];
/**
 * The scope each buffer was allocated in, held weakly: a buffer nobody references any more is
 * collected even while its scope is open (a whole backward pass), instead of being kept for a
 * release that never comes.
 */
const ownerOf = new WeakMap<ArrayBufferLike, ScopeToken>();

/** The open scope that owns `b` now (following closed scopes into their parents), or null. */
function ownerNow(b: ArrayBufferLike): ScopeToken | null {
  let t = ownerOf.get(b) ?? null;
  while (t && !t.open) t = t.into;
  return t;
}

function lists(ctor: Ctor): Map<number, TypedArray[]> {
  return (ctor === Float64Array ? free64 : free32) as Map<number, TypedArray[]>;
}

/** An array of `n` elements of `ctor`: a released one when the pool has it, else new; zero-filled unless `uninit`. */
export function take<C extends Ctor>(ctor: C, n: number, uninit = false): InstanceType<C> {
  counters.taken++;
  let out: TypedArray | undefined;
  if (n >= MIN_POOLED) {
    out = lists(ctor).get(n)?.pop();
    if (out) {
      held -= out.byteLength;
      counters.reused++;
      if (!uninit) out.fill(0);
    }
  }
  out ??= new ctor(n);
  if (scopes.length > 0 && n >= MIN_POOLED) ownerOf.set(out.buffer, scopes[scopes.length - 1]!);
  return out as InstanceType<C>;
}

/** Like {@link take} with the element type of `x`. */
export function takeLike(x: TypedArray, n: number, uninit = false): TypedArray {
  return take(x instanceof Float64Array ? Float64Array : Float32Array, n, uninit);
}

/** A pooled copy of `src` (the arena's results leave through here). */
export function copyOut(src: Float32Array): Float32Array {
  const out = take(Float32Array, src.length, true);
  out.set(src);
  return out;
}

/**
 * A scope whose allocations may be given back: `release(a)` returns `a` to the pool if it is a whole
 * array allocated while this scope (or one inside it) was open and not given back yet; anything else
 * is ignored. `key(a)` identifies the memory behind an array, so views of one buffer count as one.
 */
export interface ScratchScope {
  key(a: TypedArray): object;
  release(a: TypedArray): void;
  end(): void;
}

export function beginScratch(): ScratchScope {
  const mine: ScopeToken = { open: true, into: null };
  scopes.push(mine);
  return {
    key: (a) => a.buffer,
    release(a) {
      if (!mine.open || a.byteOffset !== 0 || a.byteLength !== a.buffer.byteLength || ownerNow(a.buffer) !== mine)
        return;
      ownerOf.delete(a.buffer);
      give(a);
    },
    end() {
      if (!mine.open) return;
      mine.open = false;
      const i = scopes.lastIndexOf(mine);
      if (i >= 0) scopes.splice(i, 1);
      // what the scope allocated and kept belongs to whoever holds it now; the enclosing scope (if
      // any) may still give it back, as if it had been allocated there
      mine.into = i > 0 ? scopes[i - 1]! : null;
    },
  };
}

function give(a: TypedArray): void {
  if (a.length < MIN_POOLED || held + a.byteLength > capacity) {
    counters.dropped++;
    return;
  }
  const m = lists(a instanceof Float64Array ? Float64Array : Float32Array);
  let l = m.get(a.length);
  if (!l) m.set(a.length, (l = []));
  l.push(a);
  held += a.byteLength;
  counters.released++;
}

/** What the pool holds and has done since the start (or the last {@link clearBufferPool}). */
export function bufferPoolStats(): {
  heldBytes: number;
  capacityBytes: number;
  taken: number;
  reused: number;
  released: number;
  dropped: number;
} {
  return { heldBytes: held, capacityBytes: capacity, ...counters };
}

/** Drops every pooled array (the collector frees them) and resets the counters. */
export function clearBufferPool(): void {
  free32.clear();
  free64.clear();
  held = 0;
  counters.taken = counters.reused = counters.released = counters.dropped = 0;
}

/** Sets the bound on pooled bytes (0 disables reuse); returns the previous bound. */
export function setBufferPoolCapacity(bytes: number): number {
  if (!Number.isFinite(bytes) || bytes < 0)
    throw new RangeError(`setBufferPoolCapacity: need bytes >= 0, got ${bytes}`);
  const prev = capacity;
  capacity = bytes;
  if (held > capacity) clearBufferPool();
  return prev;
}
