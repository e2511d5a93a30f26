// The float32 GEMM API: kernel selection (relaxed-SIMD or SIMD WebAssembly through the runtime, or a
// plain TypeScript fallback), per-arena kernel cache, entry points on byte offsets into the default
// arena, and copying wrappers over Float32Arrays.

import { ShapeError, UnsupportedKernelError } from "../../../errors.ts";
import { WasmArena } from "./arena.ts";
import { take } from "../buffers.ts";
import { checkBatch, validate } from "./checks.ts";
import { probeRelaxedSimd, probeSimd, type MicroKernelConfig } from "./kernels.ts";
import { sgemmTS } from "./reference.ts";
import { WasmRuntime } from "./runtime.ts";

export { PARALLEL_MIN_WORK, WasmRuntime } from "./runtime.ts";

/** Kernel flavours: fused relaxed-SIMD wasm, plain wasm SIMD (mul + add), plain TypeScript. */
export type SgemmVariant = "relaxed" | "simd" | "ts";

/** Cache-block sizes in elements: A blocks are mc x kc, B panels kc x nc. */
export interface BlockSizes {
  mc: number;
  kc: number;
  nc: number;
}

/** Options for {@link sgemmKernel}; defaults are tuned for 128-bit SIMD on a 512 KiB L2. */
export interface SgemmKernelOptions {
  arena?: WasmArena;
  micro?: Partial<Omit<MicroKernelConfig, "fma">>;
  blocks?: Partial<BlockSizes>;
}

/** A GEMM bound to one arena; pointers are byte offsets into `arena.memory`, strides in elements. */
export interface SgemmKernel {
  readonly variant: SgemmVariant;
  readonly arena: WasmArena;
  /**
   * C = alpha * op(A) op(B) + beta * C, row-major; op(A) is M x K, op(B) is K x N, C is M x N.
   * beta = 0 overwrites C (NaNs in C are not propagated); alpha = 0 or K = 0 only scales C.
   * C must not overlap A or B. Throws ShapeError on bad sizes or leading dimensions, RangeError
   * when an operand runs past the memory.
   */
  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    bPtr: number,
    ldb: number,
    beta: number,
    cPtr: number,
    ldc: number,
  ): void;
  /** `batch` GEMMs with element strides between consecutive A, B, C (a stride of 0 broadcasts). */
  sgemmBatched(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    strideA: number,
    bPtr: number,
    ldb: number,
    strideB: number,
    beta: number,
    cPtr: number,
    ldc: number,
    strideC: number,
    batch: number,
  ): void;
}

let simdCache: boolean | undefined;
let relaxedCache: boolean | undefined;

/** Whether this runtime compiles WebAssembly 128-bit SIMD. */
export function simdAvailable(): boolean {
  return (simdCache ??= probeSimd());
}

/**
 * Whether this runtime compiles relaxed SIMD (f32x4.relaxed_madd). Probed once, at first call;
 * on Node 20 it needs `--experimental-wasm-relaxed-simd`.
 */
export function relaxedSimdAvailable(): boolean {
  return (relaxedCache ??= simdAvailable() && probeRelaxedSimd());
}

/** The fastest variant this runtime supports. */
export function bestVariant(): SgemmVariant {
  return relaxedSimdAvailable() ? "relaxed" : simdAvailable() ? "simd" : "ts";
}

let arenaSingleton: WasmArena | undefined;

/** The process-wide arena used by {@link sgemm} and {@link matmulF32}. */
export function defaultArena(): WasmArena {
  return (arenaSingleton ??= new WasmArena());
}

class TsSgemm implements SgemmKernel {
  readonly variant = "ts" as const;
  constructor(readonly arena: WasmArena) {}

  sgemm(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    bPtr: number,
    ldb: number,
    beta: number,
    cPtr: number,
    ldc: number,
  ): void {
    validate(transA, transB, M, N, K, aPtr, lda, bPtr, ldb, cPtr, ldc, this.arena.byteLength);
    const h = this.arena.heapF32();
    sgemmTS(transA, transB, M, N, K, alpha, h, aPtr / 4, lda, h, bPtr / 4, ldb, beta, h, cPtr / 4, ldc);
  }

  sgemmBatched(
    transA: boolean,
    transB: boolean,
    M: number,
    N: number,
    K: number,
    alpha: number,
    aPtr: number,
    lda: number,
    strideA: number,
    bPtr: number,
    ldb: number,
    strideB: number,
    beta: number,
    cPtr: number,
    ldc: number,
    strideC: number,
    batch: number,
  ): void {
    checkBatch(batch, strideA, strideB, strideC);
    for (let t = 0; t < batch; t++) {
      this.sgemm(
        transA,
        transB,
        M,
        N,
        K,
        alpha,
        aPtr + t * strideA * 4,
        lda,
        bPtr + t * strideB * 4,
        ldb,
        beta,
        cPtr + t * strideC * 4,
        ldc,
      );
    }
  }
}

const kernelCache = new WeakMap<WasmArena, Map<SgemmVariant, SgemmKernel>>();

/**
 * A GEMM of the given variant (default: the fastest available) on an arena (default: the shared
 * {@link defaultArena}). Kernels with default options are cached per arena and variant.
 * Throws UnsupportedKernelError if the variant is not supported by this runtime.
 */
export function sgemmKernel(variant: SgemmVariant = bestVariant(), opts: SgemmKernelOptions = {}): SgemmKernel {
  const arena = opts.arena ?? defaultArena();
  const custom = opts.micro !== undefined || opts.blocks !== undefined;
  let perArena = kernelCache.get(arena);
  if (!custom) {
    const hit = perArena?.get(variant);
    if (hit) return hit;
  }
  if (variant === "relaxed" && !relaxedSimdAvailable()) throw new UnsupportedKernelError("sgemm", "wasm-relaxed-simd");
  if (variant === "simd" && !simdAvailable()) throw new UnsupportedKernelError("sgemm", "wasm-simd");
  const k = variant === "ts" ? new TsSgemm(arena) : new WasmRuntime(arena, variant === "relaxed", opts);
  if (!custom) {
    if (!perArena) kernelCache.set(arena, (perArena = new Map()));
    perArena.set(variant, k);
  }
  return k;
}

/**
 * C = alpha * op(A) op(B) + beta * C on byte offsets into {@link defaultArena}, row-major, with the
 * fastest available kernel. See {@link SgemmKernel.sgemm}.
 */
export function sgemm(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  aPtr: number,
  lda: number,
  bPtr: number,
  ldb: number,
  beta: number,
  cPtr: number,
  ldc: number,
): void {
  sgemmKernel().sgemm(transA, transB, M, N, K, alpha, aPtr, lda, bPtr, ldb, beta, cPtr, ldc);
}

/** Strided batched {@link sgemm} on {@link defaultArena}; strides in elements, 0 broadcasts. */
export function sgemmBatched(
  transA: boolean,
  transB: boolean,
  M: number,
  N: number,
  K: number,
  alpha: number,
  aPtr: number,
  lda: number,
  strideA: number,
  bPtr: number,
  ldb: number,
  strideB: number,
  beta: number,
  cPtr: number,
  ldc: number,
  strideC: number,
  batch: number,
): void {
  sgemmKernel().sgemmBatched(
    transA,
    transB,
    M,
    N,
    K,
    alpha,
    aPtr,
    lda,
    strideA,
    bPtr,
    ldb,
    strideB,
    beta,
    cPtr,
    ldc,
    strideC,
    batch,
  );
}

/** Options of {@link matmulF32Batched}: element strides between batch items (0 broadcasts). */
export interface BatchedMatmulOptions {
  strideA?: number;
  strideB?: number;
  strideC?: number;
  variant?: SgemmVariant;
}

/** Staging blocks in the arena reused by the copying wrappers, keyed by arena. */
const staging = new WeakMap<WasmArena, { ptr: number; floats: number }>();

function stage(arena: WasmArena, floats: number): number {
  const s = staging.get(arena);
  if (s && s.floats >= floats) return s.ptr;
  if (s) arena.free(s.ptr);
  const grown = Math.max(floats, s ? s.floats * 1.5 : 0);
  const ptr = arena.alloc(Math.ceil(grown));
  staging.set(arena, { ptr, floats: Math.ceil(grown) });
  return ptr;
}

/**
 * out[M x N] = op(a) op(b) for dense row-major arrays: `a` is M x K (K x M when transA), `b` is
 * K x N (N x K when transB). Copies through the arena, runs the kernel, copies out; returns `out`
 * (allocated when omitted).
 */
export function matmulF32(
  a: Float32Array,
  b: Float32Array,
  M: number,
  N: number,
  K: number,
  transA = false,
  transB = false,
  out?: Float32Array,
  variant: SgemmVariant = bestVariant(),
): Float32Array {
  return matmulF32Batched(a, b, 1, M, N, K, transA, transB, out, { variant });
}

/**
 * Batched {@link matmulF32}: item t uses a[t*strideA ...], b[t*strideB ...], out[t*strideC ...]
 * (defaults: dense M*K, K*N, M*N; a stride of 0 broadcasts that operand).
 */
export function matmulF32Batched(
  a: Float32Array,
  b: Float32Array,
  batch: number,
  M: number,
  N: number,
  K: number,
  transA = false,
  transB = false,
  out?: Float32Array,
  opts: BatchedMatmulOptions = {},
): Float32Array {
  for (const [n, v] of [
    ["M", M],
    ["N", N],
    ["K", K],
    ["batch", batch],
  ] as const) {
    if (!Number.isInteger(v) || v < 0) throw new ShapeError(`matmulF32: ${n} must be a non-negative integer, got ${v}`);
  }
  const sa = opts.strideA ?? M * K,
    sb = opts.strideB ?? K * N,
    sc = opts.strideC ?? M * N;
  checkBatch(batch, sa, sb, sc);
  const needA = batch === 0 ? 0 : (batch - 1) * sa + M * K;
  const needB = batch === 0 ? 0 : (batch - 1) * sb + K * N;
  const needC = batch === 0 ? 0 : (batch - 1) * sc + M * N;
  if (a.length < needA) throw new ShapeError(`matmulF32: a needs ${needA} elements, got ${a.length}`);
  if (b.length < needB) throw new ShapeError(`matmulF32: b needs ${needB} elements, got ${b.length}`);
  // every element is written unless the output items have gaps between them (kept as zeros)
  const c = out ?? take(Float32Array, needC, sc === M * N);
  if (c.length < needC) throw new ShapeError(`matmulF32: out needs ${needC} elements, got ${c.length}`);
  if (batch === 0 || M === 0 || N === 0) return c;
  const lda = transA ? M : K,
    ldb = transB ? K : N;
  if ((opts.variant ?? bestVariant()) === "ts") {
    for (let t = 0; t < batch; t++)
      sgemmTS(
        transA,
        transB,
        M,
        N,
        K,
        1,
        a,
        t * sa,
        Math.max(1, lda),
        b,
        t * sb,
        Math.max(1, ldb),
        0,
        c,
        t * sc,
        Math.max(1, N),
      );
    return c;
  }
  const kern = sgemmKernel(opts.variant ?? bestVariant());
  const arena = kern.arena;
  const base = stage(arena, needA + needB + needC);
  const pa = base,
    pb = base + needA * 4,
    pc = pb + needB * 4;
  const h = arena.heapF32();
  h.set(a.subarray(0, needA), pa / 4);
  h.set(b.subarray(0, needB), pb / 4);
  // gaps between output items keep their contents
  if (sc > M * N && batch > 1) h.set(c.subarray(0, needC), pc / 4);
  kern.sgemmBatched(
    transA,
    transB,
    M,
    N,
    K,
    1,
    pa,
    Math.max(1, lda),
    sa,
    pb,
    Math.max(1, ldb),
    sb,
    0,
    pc,
    Math.max(1, N),
    sc,
    batch,
  );
  c.set(arena.heapF32().subarray(pc / 4, pc / 4 + needC));
  return c;
}
