// Minimal typings of the WebAssembly JS API (the project's lib settings exclude the DOM typings).

/** A WebAssembly.Memory as used here. */
export interface WasmMemory {
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  grow(deltaPages: number): number;
}

interface WasmApi {
  Memory: new (d: { initial: number; maximum?: number; shared?: boolean }) => WasmMemory;
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: object) => { exports: Record<string, unknown> };
  validate(bytes: Uint8Array): boolean;
}

/** The global WebAssembly object, or undefined where the runtime has none. */
export const wasmApi: WasmApi | undefined = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;

/** The global WebAssembly object; throws where the runtime has none. */
export function requireWasm(): WasmApi {
  if (!wasmApi) throw new Error("WebAssembly is not available in this runtime");
  return wasmApi;
}
