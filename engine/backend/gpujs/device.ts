// The gpujs backend's storage and kernel runner: float32 storage lives in gpu.js pipeline textures
// (one flat texture per tensor, read back only when host data is asked for and then cached: storage
// changes only through the optimizer step, which drops the cache); float64 storage stays on the host (WebGL has no
// double). Kernels are gpu.js source strings with every shape baked in as a literal, compiled once
// per (source, output size, input sizes) and cached.
import type { FloatDType, TypedArray } from "../../dtype.ts";
import type { GpuJs, GpuKernel, GpuTexture, KernelArg } from "./env.ts";
import { BackendError } from "../../errors.ts";

export { coordLines, f, offsetExpr, stridesOf } from "./codegen.ts";

/** Elements one texture may hold: gpu.js computes the thread index in float32, exact below 2^24. */
export const MAX_GPU_ELEMENTS = 1 << 24;

interface Holder {
  /** one texture, or the chunks of a storage over {@link MAX_GPU_ELEMENTS} elements (none: host only) */
  texs: GpuTexture[];
}

/** Textures alive now (made by kernels and uploads, not yet deleted) and their bytes: see {@link DeviceStats}. */
const textures = { live: 0, released: 0, bytes: 0, peakBytes: 0 };

/** GPU bytes of a texture: four float32 channels per texel. */
const bytesOf = (t: GpuTexture): number => (t.size ? t.size[0]! * t.size[1]! * 16 : 0);

function addAll(ts: readonly GpuTexture[]): void {
  textures.live += ts.length;
  for (const t of ts) textures.bytes += bytesOf(t);
  if (textures.bytes > textures.peakBytes) textures.peakBytes = textures.bytes;
}

function deleteAll(h: Holder): number {
  const ts = h.texs;
  h.texs = [];
  textures.live -= ts.length;
  for (const t of ts) {
    textures.bytes -= bytesOf(t);
    t.delete();
  }
  return ts.length;
}

// a texture is deleted when the storage that owns it is collected (or released by a scratch scope)
const registry = new FinalizationRegistry<Holder>((h) => {
  try {
    deleteAll(h);
  } catch {
    // the context is gone at exit
  }
});

/**
 * A tensor's storage on the gpujs backend: a texture (float32, device-resident), a host array, or
 * both (a download or an upload is cached; contents never change once made). Float32 storage over
 * {@link MAX_GPU_ELEMENTS} elements lives in chunks of that many elements, one texture each: only the
 * chunked kernels (fill, cast, unary, binary and where over full-size or single-element operands)
 * take it; the others read it back to the host.
 */
export class GpuStorage {
  readonly dtype: FloatDType;
  readonly size: number;
  private readonly h: Holder = { texs: [] };
  private hostData: TypedArray | null = null;
  released = false;

  constructor(dtype: FloatDType, size: number, tex: GpuTexture | GpuTexture[] | null, host: TypedArray | null) {
    this.dtype = dtype;
    this.size = size;
    this.hostData = host;
    if (Array.isArray(tex)) this.setChunks(tex);
    else if (tex) this.setTex(tex);
  }

  /** The one texture of storage within {@link MAX_GPU_ELEMENTS}, once on the device. */
  get tex(): GpuTexture | null {
    return this.chunked ? null : (this.h.texs[0] ?? null);
  }

  /** The chunk textures of a chunked storage, once on the device. */
  get chunks(): readonly GpuTexture[] | null {
    return this.chunked && this.h.texs.length ? this.h.texs : null;
  }

  get host(): TypedArray | null {
    return this.hostData;
  }

  /** Whether a GPU kernel can take this storage (float32, non-empty, within one texture's reach). */
  get onDevice(): boolean {
    return this.dtype === "float32" && this.size > 0 && this.size <= MAX_GPU_ELEMENTS;
  }

  /** Float32 storage over {@link MAX_GPU_ELEMENTS} elements: held in chunks, taken by the chunked kernels. */
  get chunked(): boolean {
    return this.dtype === "float32" && this.size > MAX_GPU_ELEMENTS;
  }

  setTex(t: GpuTexture): void {
    this.setChunks([t]);
  }

  setChunks(ts: GpuTexture[]): void {
    this.h.texs = ts;
    addAll(ts);
    registry.register(this, this.h, this.h);
  }

  setHost(a: TypedArray): void {
    this.hostData = a;
  }

  /**
   * Takes `next`'s textures in place of this storage's own, which are deleted now: an in-place update
   * (the optimizer step), seen by every tensor that shares this storage. `next` is spent.
   */
  takeFrom(next: GpuStorage): void {
    if (next.size !== this.size || next.dtype !== this.dtype || this.released || next.released)
      throw new Error(`gpujs: cannot move ${next.size} elements into storage of ${this.size}`);
    const ts = next.h.texs;
    next.h.texs = [];
    registry.unregister(next.h);
    next.released = true;
    next.hostData = null;
    registry.unregister(this.h);
    textures.released += deleteAll(this.h);
    this.hostData = null;
    this.h.texs = ts;
    if (ts.length) registry.register(this, this.h, this.h);
  }

  /** Frees the texture now (scratch scopes); a later use is an error. */
  release(): void {
    if (this.released) return;
    this.released = true;
    registry.unregister(this.h);
    textures.released += deleteAll(this.h);
    this.hostData = null;
  }
}

/**
 * A scratch scope's identity (as in the cpu backend's buffer pool): a closed scope points `into` the
 * scope that was open around it, which inherits what it allocated; a closed outermost scope points nowhere.
 */
interface ScopeToken {
  open: boolean;
  into: ScopeToken | null;
}

/**
 * Early texture release: storage made by a kernel while a scratch scope is open belongs to the
 * innermost one (held weakly: storage nobody references is still collected, its texture deleted by
 * the finalizer). `release(s)` deletes the texture of storage this scope (or a closed scope inside
 * it) made; anything else (uploads of host data, storage from before the scope) is left alone. The
 * autograd walk releases only gradients it knows nothing else references; a later use of released
 * storage throws instead of reading a deleted texture.
 */
export class Scratch {
  private readonly scopes: ScopeToken[] = [];
  private readonly ownerOf = new WeakMap<GpuStorage, ScopeToken>();

  /** storage made while each open tidy scope is innermost (outermost first) */
  private readonly tidies: GpuStorage[][] = [];

  /** Marks `s` as made inside the innermost open scope (if any). */
  adopt(s: GpuStorage): GpuStorage {
    const top = this.scopes[this.scopes.length - 1];
    if (top) this.ownerOf.set(s, top);
    return this.track(s);
  }

  /** Records `s` (a kernel's result or an upload) in the innermost open tidy scope, if any. */
  track(s: GpuStorage): GpuStorage {
    const t = this.tidies[this.tidies.length - 1];
    if (t) t.push(s);
    return s;
  }

  /**
   * A tidy scope: `end(keep)` deletes the textures of everything made while it was open except
   * `keep` (which passes to the enclosing tidy scope); `cancel()` passes everything on. Scopes close
   * innermost first.
   */
  beginTidy(): { end(keep: readonly GpuStorage[]): void; cancel(): void } {
    const mine: GpuStorage[] = [];
    this.tidies.push(mine);
    let open = true;
    const close = (): GpuStorage[] | null => {
      if (!open) throw new Error("gpujs: a tidy scope was closed twice");
      if (this.tidies[this.tidies.length - 1] !== mine)
        throw new Error("gpujs: tidy scopes must close innermost first");
      open = false;
      this.tidies.pop();
      return this.tidies[this.tidies.length - 1] ?? null;
    };
    return {
      end: (keep) => {
        const parent = close();
        const kept = new Set(keep);
        for (const s of mine) {
          if (kept.has(s)) parent?.push(s);
          else s.release();
        }
        mine.length = 0;
      },
      cancel: () => {
        const parent = close();
        if (parent) for (const s of mine) parent.push(s);
        mine.length = 0;
      },
    };
  }

  private ownerNow(s: GpuStorage): ScopeToken | null {
    let t = this.ownerOf.get(s) ?? null;
    while (t && !t.open) t = t.into;
    return t;
  }

  begin(): { key(s: GpuStorage): object; release(s: GpuStorage): void; end(): void } {
    const mine: ScopeToken = { open: true, into: null };
    this.scopes.push(mine);
    return {
      key: (s) => s,
      release: (s) => {
        if (!mine.open || s.released || this.ownerNow(s) !== mine) return;
        this.ownerOf.delete(s);
        s.release();
      },
      end: () => {
        if (!mine.open) return;
        mine.open = false;
        const i = this.scopes.lastIndexOf(mine);
        if (i >= 0) this.scopes.splice(i, 1);
        mine.into = i > 0 ? this.scopes[i - 1]! : null;
      },
    };
  }
}

/** Counts of kernel calls on the GPU and on the host (by kernel name), and transfers. */
export interface DeviceStats {
  gpu: Record<string, number>;
  host: Record<string, number>;
  compiled: number;
  uploads: number;
  uploadMs: number;
  downloads: number;
  downloadMs: number;
  /** textures alive now (kernel outputs and uploads not yet deleted by a release or the collector) */
  liveTextures: number;
  /** textures deleted early by scratch scopes (the backward pass's consumed gradients) */
  releasedTextures: number;
  /** GPU memory of the live textures (four float32 channels per texel), and its peak since start */
  liveBytes: number;
  peakBytes: number;
  /**
   * With CDIFF_GPUJS_PROFILE=1 only: milliseconds per kernel name, each call timed between two
   * gl.finish() calls (so the figures are the GPU's, at the cost of the overlap a pipeline gives)
   */
  kernelMs?: Record<string, number>;
}

/** GLSL ES 1.0 helpers added to every kernel (gpu.js includes those a kernel calls). */
export const NATIVE: Record<string, string> = {
  exp32: `float exp32(float x) {
  if (x > 88.72284) { return 1.0 / 0.0; } if (x < -103.97208) { return 0.0; } if (x != x) { return x; }
  float k = floor(x * 1.442695 + 0.5);
  float r = x - k * 0.693145751953125; r = r - k * 1.428606765330187e-06;
  float p = 1.0 + r * (1.0 + r * (0.5 + r * (0.16666667 + r * (0.041666668 + r * (0.008333334 + r * (0.0013888889 + r * 0.0001984127))))));
  float h = floor(k * 0.5);
  return p * exp2(h) * exp2(k - h); }`,
  expm1_32: `float expm1_32(float x) {
  if (abs(x) >= 0.5) { return exp32(x) - 1.0; }
  return x * (1.0 + x * (0.5 + x * (0.16666667 + x * (0.041666668 + x * (0.008333334 + x * (0.0013888889 + x * (0.0001984127 + x * 2.4801587e-05))))))); }`,
  log32: `float log32(float x) {
  if (x < 0.0) { return 0.0 / 0.0; } if (x == 0.0) { return -1.0 / 0.0; } if (x > 3.4028234e38) { return x; } if (x != x) { return x; }
  float e = floor(log2(x)); float m = x / exp2(e);
  if (m < 0.70710678) { m = m * 2.0; e = e - 1.0; } if (m > 1.41421356) { m = m * 0.5; e = e + 1.0; }
  float s = (m - 1.0) / (m + 1.0); float s2 = s * s;
  float p = s2 * (0.33333334 + s2 * (0.2 + s2 * (0.14285715 + s2 * 0.11111111)));
  return e * 0.693145751953125 + (e * 1.428606765330187e-06 + (2.0 * s + 2.0 * s * p)); }`,
  sincos32: `float sincos32(float x, float c) {
  float k = floor(x * 0.63661977 + 0.5);
  float r = x - k * 1.5703125; r = r - k * 4.837512969970703e-4; r = r - k * 7.549789948768648e-8;
  float q = mod(k + c, 4.0); float r2 = r * r;
  if (q == 0.0 || q == 2.0) { float s = r + r * r2 * (-0.16666667 + r2 * (0.008333331 + r2 * (-0.00019840874 + r2 * 2.7525562e-6))); return q == 0.0 ? s : -s; }
  float co = 1.0 + r2 * (-0.5 + r2 * (0.041666638 + r2 * (-0.0013888378 + r2 * 2.4390449e-5))); return q == 1.0 ? co : -co; }`,
  tanh32: `float tanh32(float x) {
  float ax = abs(x); if (ax > 9.0) { return x < 0.0 ? -1.0 : 1.0; }
  float t = expm1_32(2.0 * ax); float r = t / (t + 2.0); return x < 0.0 ? -r : r; }`,
  // fdlibm's erf: x + x P(x^2)/Q(x^2) below 0.84375, erx + P(s)/Q(s) with s = |x| - 1 below 1.25,
  // Abramowitz-Stegun 7.1.26 beyond (within 1.5e-7 there)
  erf32: `float erf32(float x) {
  float ax = abs(x); float sg = x < 0.0 ? -1.0 : 1.0;
  if (ax < 0.84375) { float z = x * x;
    float r = 1.2837916613e-01 + z * (-3.2504209876e-01 + z * (-2.8481749818e-02 + z * (-5.7702702470e-03 + z * -2.3763017452e-05)));
    float q = 1.0 + z * (3.9791721106e-01 + z * (6.5022252500e-02 + z * (5.0813062117e-03 + z * (1.3249473704e-04 + z * -3.9602282413e-06))));
    return x + x * (r / q); }
  if (ax < 1.25) { float s = ax - 1.0;
    float p = -2.3621185683e-03 + s * (4.1485610604e-01 + s * (-3.7220788002e-01 + s * (3.1834661961e-01 + s * (-1.1089469492e-01 + s * (3.5478305072e-02 + s * -2.1663755178e-03)))));
    float q = 1.0 + s * (1.0642088205e-01 + s * (5.4039794207e-01 + s * (7.1828655899e-02 + s * (1.2617121637e-01 + s * (1.3637083583e-02 + s * 1.1984500103e-02)))));
    return sg * (8.4506291151e-01 + p / q); }
  float t = 1.0 / (1.0 + 0.3275911 * ax);
  float y = 1.0 - ((((1.061405429 * t - 1.453152027) * t + 1.421413741) * t - 0.284496736) * t + 0.254829592) * t * exp32(-ax * ax); return sg * y; }`,
  pow32: `float pow32(float x, float y) {
  if (y == 0.0) { return 1.0; } if (y == 1.0) { return x; } if (y == 2.0) { return x * x; } if (y == 3.0) { return x * x * x; }
  if (y == 0.5) { return sqrt(x); } if (y == -1.0) { return 1.0 / x; }
  if (x == 0.0) { return y > 0.0 ? 0.0 : 1.0 / 0.0; }
  if (x > 0.0) { return exp32(y * log32(x)); } if (floor(y) != y) { return 0.0 / 0.0; }
  float r = exp32(y * log32(-x)); return mod(y, 2.0) == 1.0 ? -r : r; }`,
};

const GL_OUT_OF_MEMORY = 0x0505,
  GL_CONTEXT_LOST = 0x9242;

/** Whether environment variable `name` is "1" (false where there is no process, as in a browser). */
function envFlag(name: string): boolean {
  return (globalThis as { process?: { env: Record<string, string | undefined> } }).process?.env[name] === "1";
}

export class Device {
  readonly gpu: GpuJs;
  private readonly kernels = new Map<string, GpuKernel>();
  private readonly st: DeviceStats = {
    gpu: {},
    host: {},
    compiled: 0,
    uploads: 0,
    uploadMs: 0,
    downloads: 0,
    downloadMs: 0,
    liveTextures: 0,
    releasedTextures: 0,
    liveBytes: 0,
    peakBytes: 0,
  };
  readonly scratch = new Scratch();
  /** CDIFF_GPUJS_PROFILE=1: wait for each kernel and add its time to stats.kernelMs */
  private readonly profile = envFlag("CDIFF_GPUJS_PROFILE");
  /**
   * CDIFF_GPUJS_PACK=1: kernel outputs packed four values per texel (gpu.js's optimizeFloatMemory):
   * a quarter of the GPU memory (4 bytes per element instead of 16), each read picking its channel
   */
  readonly packed = envFlag("CDIFF_GPUJS_PACK");

  /** Kernel calls, transfers and textures since start. */
  get stats(): DeviceStats {
    this.st.liveTextures = textures.live;
    this.st.releasedTextures = textures.released;
    this.st.liveBytes = textures.bytes;
    this.st.peakBytes = textures.peakBytes;
    return this.st;
  }

  constructor(gpu: GpuJs) {
    this.gpu = gpu;
    // exact integer quotient of non-negative integer-valued floats below 2^24: the fix-up steps undo a
    // division that rounds across an integer (GPUs may divide by reciprocal)
    gpu.addNativeFunction(
      "idiv",
      `float idiv(float a, float b) { float q = floor(a / b); float r = a - q * b; if (r < 0.0) { q -= 1.0; } else if (r >= b) { q += 1.0; } return q; }`,
      { returnType: "Number" },
    );
    // float32 special functions: GLSL's exp, log and sin on SwiftShader are off by up to 56, 823 and
    // thousands of ulp; these stay within 1-2 ulp (Cody-Waite range reduction + short polynomials)
    // gpu.js includes only the native functions a kernel calls, not what they call: the bodies go into
    // every shader (as h_<name>) and each callable name is a one-line wrapper
    const names = Object.keys(NATIVE);
    const rename = (src: string): string =>
      names.reduce((t, n) => t.replace(new RegExp(`\\b${n}\\(`, "g"), `h_${n}(`), src);
    gpu.injectNative(Object.values(NATIVE).map(rename).join("\n"));
    for (const [name, src] of Object.entries(NATIVE)) {
      const params = /\(([^)]*)\)/.exec(src)![1]!;
      const call = params
        .split(",")
        .map((a) => a.trim().split(/\s+/)[1])
        .join(", ");
      gpu.addNativeFunction(name, `float ${name}(${params}) { return h_${name}(${call}); }`, { returnType: "Number" });
    }
  }

  /**
   * Throws a BackendError where the GL context has flagged OUT_OF_MEMORY or lost the context since the
   * last check: GL errors are sticky and silent, and a texture the driver could not allocate leaves a
   * kernel's output unwritten. The message names the live texture memory and what to do. Other flags
   * are cleared and let pass: gpu.js's argument uploads on headless-gl raise INVALID_OPERATION on
   * every re-upload (traced to headless-gl's texImage2D wrapper; the uploaded data checks out, and
   * the parity suites compare every kernel's results). Run at every readback and at the end of every
   * tidy scope.
   */
  checkGL(where: string): void {
    const gl = (this.gpu as { context?: { getError(): number } | null }).context;
    if (!gl) return;
    let fatal = 0;
    for (let k = 0, e = gl.getError(); e && k < 16; k++, e = gl.getError())
      if (e === GL_OUT_OF_MEMORY || e === GL_CONTEXT_LOST) fatal ||= e;
    if (!fatal) return;
    const mem = `${textures.live} live textures, ${(textures.bytes / 2 ** 20).toFixed(0)} MiB`;
    throw new BackendError(
      fatal === GL_OUT_OF_MEMORY
        ? `gpujs: the GPU ran out of memory ${where} (GL_OUT_OF_MEMORY; ${mem}): results since the last check are not to be trusted - wrap loop steps in tidy(), lower the batch or resolution, or set CDIFF_GPUJS_PACK=1 (a quarter of the memory)`
        : `gpujs: the GL context was lost ${where} (${mem}): every texture is gone; start again (a driver reset or another process took the GPU)`,
    );
  }

  count(where: "gpu" | "host", name: string): void {
    const m = this.stats[where];
    m[name] = (m[name] ?? 0) + 1;
  }

  /** Runs kernel `src` over `n` outputs; GpuStorage arguments are uploaded first if they live on the host. */
  run(name: string, src: string, n: number, args: (GpuStorage | number)[]): GpuStorage {
    return this.scratch.adopt(new GpuStorage("float32", n, this.launch("run", name, src, n, args, this.packed), null));
  }

  /**
   * Runs kernel `src`, which returns four values (`return [a, b, c, d];`), over `texels` outputs: a
   * texture of four floats per texel (gpu.js's ArrayTexture(4)) that other kernels read as a vec4
   * (`v = q[i]; v[0]`). Such storage is an intermediate of one backend kernel: it is not adopted by
   * scratch or tidy scopes, never read back, and the caller releases it when done. Compiled without
   * optimizeFloatMemory, which gpu.js takes for one-value kernels only.
   */
  run4(name: string, src: string, texels: number, args: (GpuStorage | number)[]): GpuStorage {
    return new GpuStorage("float32", texels, this.launch("run4", name, src, texels, args, false), null);
  }

  /** The kernel of `src` for these outputs and argument sizes, called (and timed when profiling). */
  private launch(
    tag: string,
    name: string,
    src: string,
    n: number,
    args: (GpuStorage | number)[],
    packed: boolean,
  ): GpuTexture {
    const kargs = args.map((a): KernelArg => (typeof a === "number" ? a : this.texOf(a)));
    const sizes = args.map((a) => (typeof a === "number" ? "s" : String(a.size))).join(",");
    const k = this.kernelFor(tag, src, n, sizes, packed);
    this.count("gpu", name);
    return this.profile ? this.timed(name, () => k(...kargs)) : k(...kargs);
  }

  private timed<T>(name: string, f: () => T): T {
    const gl = (this.gpu as { context?: { finish(): void } }).context;
    gl?.finish();
    const t0 = performance.now();
    const r = f();
    gl?.finish();
    const ms = (this.st.kernelMs ??= {});
    ms[name] = (ms[name] ?? 0) + performance.now() - t0;
    return r;
  }

  /**
   * Runs kernel `src` over `n` > {@link MAX_GPU_ELEMENTS} outputs chunk by chunk: `this.thread.x` is the
   * index within the chunk, so every storage argument must be of `n` elements (its chunk is passed) or
   * of one (passed whole, read at 0).
   */
  runChunked(name: string, src: string, n: number, args: (GpuStorage | number)[]): GpuStorage {
    const out: GpuTexture[] = [];
    for (let off = 0; off < n; off += MAX_GPU_ELEMENTS) {
      const len = Math.min(MAX_GPU_ELEMENTS, n - off);
      const k = this.kernelFor(
        "chunk",
        src,
        len,
        args.map((a) => (typeof a === "number" ? "s" : a.size === n ? String(len) : String(a.size))).join(","),
      );
      const kargs = args.map((a): KernelArg => {
        if (typeof a === "number") return a;
        if (a.size === n) return this.chunksOf(a)[off / MAX_GPU_ELEMENTS]!;
        if (a.size === 1) return this.texOf(a);
        throw new Error(`gpujs: chunked ${name} takes operands of ${n} or 1 elements, got ${a.size}`);
      });
      out.push(k(...kargs));
    }
    this.count("gpu", name);
    return this.scratch.adopt(new GpuStorage("float32", n, out, null));
  }

  /** The chunk textures of chunked storage `s`, uploading its host data first if needed. */
  chunksOf(s: GpuStorage): readonly GpuTexture[] {
    if (s.released) throw new Error("gpujs: storage used after a scratch or tidy scope released it");
    const have = s.chunks;
    if (have) return have;
    const host = s.host;
    if (!host || !s.chunked) throw new Error(`gpujs: cannot upload ${s.dtype} storage of ${s.size} elements in chunks`);
    const t0 = performance.now();
    const ts: GpuTexture[] = [];
    for (let off = 0; off < s.size; off += MAX_GPU_ELEMENTS) {
      const part = (host as Float32Array).subarray(off, Math.min(s.size, off + MAX_GPU_ELEMENTS));
      ts.push(this.kernelFor("upload", `function(a) { return a[this.thread.x]; }`, part.length)(part));
      this.stats.uploads++;
    }
    s.setChunks(ts);
    this.stats.uploadMs += performance.now() - t0;
    return ts;
  }

  /** The texture of `s`, uploading its host data first if needed. */
  texOf(s: GpuStorage): GpuTexture {
    if (s.released) throw new Error("gpujs: storage used after a scratch or tidy scope released it");
    const t = s.tex;
    if (t) return t;
    const host = s.host;
    if (!host || !s.onDevice)
      throw new Error(`gpujs: cannot upload ${s.dtype} storage of ${s.size} elements to one texture`);
    const t0 = performance.now();
    const up = this.kernelFor(`upload`, `function(a) { return a[this.thread.x]; }`, s.size);
    const tex = up(host as Float32Array);
    s.setTex(tex);
    this.stats.uploads++;
    this.stats.uploadMs += performance.now() - t0;
    return tex;
  }

  /** Host data of `s`, downloading (once) from its texture. */
  hostOf(s: GpuStorage): TypedArray {
    if (s.released) throw new Error("gpujs: storage used after a scratch or tidy scope released it");
    const h = s.host;
    if (h) return h;
    const ts = s.chunks ?? (s.tex ? [s.tex] : null);
    if (!ts) throw new Error("gpujs: storage has neither texture nor host data");
    const t0 = performance.now();
    const read = (t: GpuTexture, len: number): Float32Array => {
      const raw = t.toArray();
      const arr =
        raw instanceof Float32Array
          ? raw
          : Float32Array.from((raw as Float32Array[]).flatMap((r) => Array.from(r as Float32Array)));
      return arr.length === len ? arr : arr.slice(0, len);
    };
    let out: Float32Array;
    if (ts.length === 1) out = read(ts[0]!, s.size);
    else {
      out = new Float32Array(s.size);
      ts.forEach((t, k) =>
        out.set(read(t, Math.min(MAX_GPU_ELEMENTS, s.size - k * MAX_GPU_ELEMENTS)), k * MAX_GPU_ELEMENTS),
      );
    }
    this.checkGL(`reading back ${s.size} elements`);
    s.setHost(out);
    this.stats.downloads += ts.length;
    this.stats.downloadMs += performance.now() - t0;
    return out;
  }

  private kernelFor(tag: string, src: string, n: number, sizes = "", packed = this.packed): GpuKernel {
    const key = `${tag}|${n}|${sizes}|${src}`;
    let k = this.kernels.get(key);
    if (!k) {
      k = this.gpu.createKernel(src, {
        output: [n],
        pipeline: true,
        immutable: true,
        precision: "single",
        tactic: "precision",
        optimizeFloatMemory: packed,
        dynamicOutput: false,
        dynamicArguments: false,
      });
      this.kernels.set(key, k);
      this.stats.compiled++;
    }
    return k;
  }
}
