// backends by name: "cpu" is built in; others (gpujs, a test backend) register themselves
import { ConfigError } from "../errors.ts";
import type { Backend, Storage } from "./backend.ts";
import { cpuBackend } from "./cpu/index.ts";
import { createGpujsBackend } from "./gpujs/index.ts";

const backends = new Map<string, Backend | (() => Backend)>();

/**
 * Makes a backend findable by `name` (a factory runs on first use, so a backend may start lazily).
 * Here a backend's storage type becomes opaque to the rest of the engine: tensors hand each backend
 * back only the storage it made.
 */
export function registerBackend<S extends Storage>(name: string, backend: Backend<S> | (() => Backend<S>)): void {
  if (!/^[a-z][a-z0-9_-]*$/.test(name))
    throw new ConfigError(`registerBackend: name must be lower-case letters, digits, "-" or "_", got "${name}"`);
  backends.set(name, backend as unknown as Backend | (() => Backend));
}

registerBackend("cpu", cpuBackend);
// gpu.js (and gl) load on first use only; a machine without a GPU path gets an error naming the cause
registerBackend("gpujs", createGpujsBackend);

/** The backend registered as `name`. */
export function getBackend(name: string): Backend {
  const b = backends.get(name);
  if (!b) throw new ConfigError(`backend "${name}" is not registered (known: ${[...backends.keys()].join(", ")})`);
  if (typeof b !== "function") return b;
  const made = b();
  backends.set(name, made);
  return made;
}

/** Names of the registered backends. */
export function backendNames(): string[] {
  return [...backends.keys()];
}
