// Finding a GPU for the gpujs backend: loads gpu.js (and, in Node, gl@9's headless WebGL on ANGLE)
// only when asked, names what it runs on (mode + renderer string), and refuses with the cause where
// gpu.js would silently fall back to its cpu or webasm modes. Nothing here runs at engine import.
import { ConfigError } from "../../errors.ts";

/** The subset of gpu.js this backend uses (typed here so the engine compiles without gpu.js installed). */
export interface GpuTexture {
  readonly output: number[];
  /** texels (width, height); each holds four float32 channels */
  readonly size?: number[];
  toArray(): Float32Array | Float32Array[] | Float32Array[][];
  delete(): void;
}
export type KernelArg = GpuTexture | Float32Array | number;
export interface GpuKernel {
  (...args: KernelArg[]): GpuTexture;
  destroy?(removeCanvasReferences?: boolean): void;
}
export interface GpuJs {
  readonly mode: string;
  readonly Kernel: { name: string; features?: Record<string, unknown> };
  createKernel(source: string, settings: Record<string, unknown>): GpuKernel;
  addNativeFunction(name: string, source: string, settings?: Record<string, unknown>): unknown;
  injectNative(source: string): unknown;
}
interface GpuJsModule {
  GPU: (new (settings?: Record<string, unknown>) => GpuJs) & {
    isHeadlessGLSupported?: boolean;
    isWebGL2Supported?: boolean;
    isWebGLSupported?: boolean;
  };
}
type CreateGL = (w: number, h: number, o?: Record<string, unknown>) => WebGLLike | null;
interface WebGLLike {
  RENDERER: number;
  VERSION: number;
  MAX_TEXTURE_SIZE: number;
  getParameter(p: number): unknown;
  getExtension(name: string): unknown;
}

/** What the gpujs backend found: a GPU path and its name, or the reason there is none. */
export interface GpujsProbe {
  ok: boolean;
  /** gpu.js mode in use: "headlessgl" (Node, gl), "webgl2" or "webgl" (browsers) */
  mode?: string;
  /** the renderer string of the GL driver underneath (e.g. ANGLE on SwiftShader's Vulkan) */
  renderer?: string;
  /** one line: mode, API, renderer, ANGLE platform */
  description?: string;
  maxTextureSize?: number;
  /** true when the renderer is a software rasterizer (SwiftShader, llvmpipe): right for correctness, slow */
  software?: boolean;
  /** why there is no GPU path (when !ok) */
  reason?: string;
  /** set when this probe chose ANGLE_DEFAULT_PLATFORM itself */
  anglePlatform?: string | undefined;
}

/** Raised when the gpujs backend is asked for and no GPU path exists; the message names the cause. */
export class GpujsUnavailableError extends ConfigError {
  constructor(reason: string) {
    super(`gpujs backend unavailable: ${reason}`);
    this.name = "GpujsUnavailableError";
  }
}

const ICD_FILES = ["libvk_swiftshader.so", "vk_swiftshader_icd.json", "libvulkan.so.1"];

type NodeRequire = (id: string) => unknown;
function nodeRequire(): { require: NodeRequire; resolve: (id: string) => string } | null {
  const proc = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process;
  const mod = proc?.getBuiltinModule?.("node:module") as
    { createRequire(url: string): NodeRequire & { resolve(id: string): string } } | undefined;
  if (!mod) return null;
  const req = mod.createRequire(import.meta.url);
  return { require: req, resolve: (id) => req.resolve(id) };
}

function env(): Record<string, string | undefined> {
  return (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env ?? {};
}

let cached: { probe: GpujsProbe; gpu: GpuJs | null } | null = null;

/** The native renderer string behind gl's wrapper (which answers a bare "ANGLE"). */
function nativeRenderer(gl: WebGLLike): string {
  let p: object | null = Object.getPrototypeOf(gl) as object | null;
  while (p && !Object.prototype.hasOwnProperty.call(p, "getParameter")) p = Object.getPrototypeOf(p) as object | null;
  const base = p
    ? (Object.getPrototypeOf(p) as { getParameter?: (this: WebGLLike, n: number) => unknown } | null)
    : null;
  const r = base?.getParameter ? base.getParameter.call(gl, gl.RENDERER) : gl.getParameter(gl.RENDERER);
  return String(r ?? "unknown");
}

function browserRenderer(gl: WebGLLike): string {
  const ext = gl.getExtension("WEBGL_debug_renderer_info") as { UNMASKED_RENDERER_WEBGL: number } | null;
  return String(ext ? gl.getParameter(ext.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER));
}

const isSoftware = (r: string): boolean => /swiftshader|llvmpipe|softpipe|software/i.test(r);

function fail(reason: string): { probe: GpujsProbe; gpu: null } {
  return { probe: { ok: false, reason }, gpu: null };
}

function openNode(): { probe: GpujsProbe; gpu: GpuJs | null } {
  const nr = nodeRequire();
  if (!nr) return fail("no module loader (neither Node's require nor a global GPU from gpu.js's browser bundle)");
  let gpujs: GpuJsModule;
  try {
    gpujs = nr.require("gpu.js") as GpuJsModule;
  } catch (e) {
    return fail(
      `gpu.js is not installed (${(e as Error).message.split("\n")[0]}); npm install gpu.js@2.24.1 gl@9.0.0-rc.10`,
    );
  }
  let createGL: CreateGL;
  let glDir = "";
  try {
    createGL = nr.require("gl") as CreateGL;
    glDir = nr.resolve("gl").replace(/[/\\]index\.js$/, "");
  } catch (e) {
    return fail(
      `headless-gl ("gl") failed to load (${(e as Error).message.split("\n")[0]}): without it gpu.js would fall back to webasm; install gl@9.0.0-rc.10 (an optional dependency: npm drops it when its install fails)`,
    );
  }
  const e = env();
  const fs = (globalThis as { process?: { getBuiltinModule?: (id: string) => unknown } }).process!.getBuiltinModule!(
    "node:fs",
  ) as { existsSync(p: string): boolean };
  const rel = `${glDir}/build/Release`;
  const icd = ICD_FILES.filter((f) => fs.existsSync(`${rel}/${f}`));
  let chosen: string | undefined;
  if (!e.ANGLE_DEFAULT_PLATFORM && icd.length === ICD_FILES.length && !e.DISPLAY) {
    // SwiftShader's ICD sits next to ANGLE and there is no display: the headless software path
    e.ANGLE_DEFAULT_PLATFORM = "swiftshader";
    chosen = "swiftshader";
  }
  const platform = e.ANGLE_DEFAULT_PLATFORM ?? "(ANGLE default)";
  let gl: WebGLLike | null = null;
  try {
    gl = createGL(2, 2, { preserveDrawingBuffer: true });
  } catch (err) {
    return fail(`gl could not create a WebGL context (${(err as Error).message})`);
  }
  if (!gl) {
    const missing = ICD_FILES.filter((f) => !icd.includes(f));
    const hint =
      platform !== "swiftshader"
        ? `ANGLE's messages above name the cause (vulkan: a Vulkan driver the loader finds, e.g. VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/nvidia_icd.json, with VK_KHR_surface and VK_KHR_xcb_surface; gl, gles: an X display)`
        : missing.length
          ? `SwiftShader's Vulkan ICD is missing next to ${rel}/libGLESv2.so (${missing.join(", ")}): run bash scripts/gpu-setup.sh`
          : `the ICD files are in place; check ANGLE's message above ("Internal Vulkan error" or "Could not open the default X display")`;
    return fail(
      `gl could not create a WebGL context with ANGLE_DEFAULT_PLATFORM=${platform}: ${hint}; gpu.js would fall back to webasm`,
    );
  }
  const renderer = nativeRenderer(gl);
  const maxTextureSize = Number(gl.getParameter(gl.MAX_TEXTURE_SIZE));
  if (!gl.getExtension("OES_texture_float"))
    return fail(`renderer ${renderer} lacks OES_texture_float: no single-precision textures`);
  const { GPU } = gpujs;
  if (!GPU.isHeadlessGLSupported)
    return fail(`gpu.js does not accept headless-gl on ${renderer}: it would fall back to webasm`);
  let gpu: GpuJs;
  try {
    gpu = new GPU({ mode: "headlessgl" });
  } catch (err) {
    return fail(`gpu.js refused the headlessgl mode (${(err as Error).message})`);
  }
  const kname = gpu.Kernel?.name ?? "?";
  if (kname !== "HeadlessGLKernel")
    return fail(`gpu.js chose ${kname} instead of headless-gl: a silent fallback, refused`);
  const description = `gpu.js ${gpu.mode} (headless-gl ${glVersion(nr)}, WebGL1 + OES_texture_float) on ${renderer}, ANGLE_DEFAULT_PLATFORM=${platform}${chosen ? " (set by the gpujs backend: SwiftShader's ICD found, no display)" : ""}`;
  return {
    probe: {
      ok: true,
      mode: "headlessgl",
      renderer,
      description,
      maxTextureSize,
      software: isSoftware(renderer),
      anglePlatform: chosen,
    },
    gpu,
  };
}

function glVersion(nr: { require: NodeRequire }): string {
  try {
    return String((nr.require("gl/package.json") as { version?: string }).version ?? "?");
  } catch {
    return "?";
  }
}

function openBrowser(GPU: GpuJsModule["GPU"]): { probe: GpujsProbe; gpu: GpuJs | null } {
  const mode = GPU.isWebGL2Supported ? "webgl2" : GPU.isWebGLSupported ? "webgl" : null;
  if (!mode) return fail("this browser offers neither WebGL2 nor WebGL: gpu.js would fall back to webasm or cpu");
  const gpu = new GPU({ mode });
  const kname = gpu.Kernel?.name ?? "?";
  if (!/^WebGL2?Kernel$/.test(kname)) return fail(`gpu.js chose ${kname}: a silent fallback, refused`);
  const doc = (globalThis as { document?: { createElement(t: string): { getContext(t: string): WebGLLike | null } } })
    .document;
  const gl = doc?.createElement("canvas").getContext(mode === "webgl2" ? "webgl2" : "webgl") ?? null;
  const renderer = gl ? browserRenderer(gl) : "unknown";
  const maxTextureSize = gl ? Number(gl.getParameter(gl.MAX_TEXTURE_SIZE)) : 4096;
  return {
    probe: {
      ok: true,
      mode,
      renderer,
      description: `gpu.js ${mode} on ${renderer}`,
      maxTextureSize,
      software: isSoftware(renderer),
    },
    gpu,
  };
}

/** Opens (once) the GPU that gpu.js offers here, or says why there is none. */
export function openGpujs(): { probe: GpujsProbe; gpu: GpuJs | null } {
  if (cached) return cached;
  const g = (globalThis as { GPU?: GpuJsModule["GPU"] }).GPU;
  try {
    cached = typeof g === "function" ? openBrowser(g) : openNode();
  } catch (err) {
    cached = fail(`probing failed: ${(err as Error).message}`);
  }
  return cached;
}

/** Whether the gpujs backend can run here, what on, or why not (loads gpu.js and gl on first call). */
export function probeGpujs(): GpujsProbe {
  return openGpujs().probe;
}
