// Threads for the worker pool, the one place that knows the host: Node's worker_threads, or the Web
// Worker API (Deno, browsers, Bun: wherever a global `Worker` exists), module workers either way.
// Node cannot load a .ts entry in a worker by itself before it strips types natively (22.18 / 23.6),
// and tsx's hooks in the parent do not reach worker threads on Node 20 (whether registered by `tsx`,
// by `node --import tsx` or in-process as under `uvu -r tsx`; `execArgv: ["--import", "tsx"]` does not
// help either), so there the worker starts as boot.mjs, which registers tsx in the worker and then
// loads the entry. Compiled .js entries, and .ts where Node strips types itself, start directly.

import type * as WorkerThreads from "node:worker_threads";

interface NodeProcess {
  features?: { typescript?: unknown };
  getBuiltinModule?: (id: string) => unknown;
  env?: Record<string, string | undefined>;
}

interface WebWorker {
  postMessage(message: unknown): void;
  terminate(): void;
}
type WebWorkerConstructor = new (url: URL, options: { type: "module"; name?: string }) => WebWorker;

const host = globalThis as unknown as {
  process?: NodeProcess;
  Worker?: WebWorkerConstructor;
  navigator?: { hardwareConcurrency?: number };
  addEventListener?: (type: "message", fn: (e: { data: unknown }) => void, opts: { once: boolean }) => void;
};

/** Whether pool threads are Web Workers (a global `Worker` exists) rather than Node worker_threads. */
export const webWorkers = typeof host.Worker === "function";

function nodeBuiltin<T>(id: string): T {
  const m = host.process?.getBuiltinModule?.(id);
  if (!m)
    throw new Error(`worker threads need ${id} through process.getBuiltinModule (Node >= 20.16) or a global Worker`);
  return m as T;
}

/** A started thread. */
export interface Thread {
  terminate(): void;
}

/** Data a Node worker receives: the entry (for boot.mjs), the init message, the load-failure flag. */
interface NodeWorkerData {
  entry: string;
  init: unknown;
  status: Int32Array;
}

/**
 * Starts the module `entry` on a new thread and hands it `init` (structured-cloned: shared memories
 * and SharedArrayBuffers stay shared), which the entry receives with {@link onThreadStart}. Where
 * loading the entry fails and the host can tell, `status[0]` is set to -1 (Atomics, notified).
 * Node threads do not keep the process alive; Web Workers do until terminated.
 */
export function spawnThread(entry: URL, init: unknown, status: Int32Array, name: string): Thread {
  if (webWorkers) {
    const w = new host.Worker!(entry, { type: "module", name });
    w.postMessage(init);
    return { terminate: () => w.terminate() };
  }
  const { Worker } = nodeBuiltin<typeof WorkerThreads>("node:worker_threads");
  const boot = entry.pathname.endsWith(".ts") && !host.process?.features?.typescript;
  const workerData: NodeWorkerData = { entry: entry.href, init, status };
  const w = new Worker(boot ? new URL("./boot.mjs", import.meta.url) : entry, { workerData });
  w.unref();
  return { terminate: () => void w.terminate() };
}

/** Worker side: calls `start` with the init message of {@link spawnThread}. */
export function onThreadStart<T>(start: (init: T) => void): void {
  if (webWorkers) host.addEventListener!("message", (e) => start(e.data as T), { once: true });
  else start((nodeBuiltin<typeof WorkerThreads>("node:worker_threads").workerData as NodeWorkerData).init as T);
}

/** The URL of the module `name` next to `base`, with base's extension (.ts as source, .js compiled). */
export function siblingModule(name: string, base: string): URL {
  const ext = /\.[cm]?[jt]s$/.exec(new URL(base).pathname)?.[0] ?? ".js";
  return new URL(`./${name}${ext}`, base);
}

/** Hardware threads available to this process. */
export function hardwareThreads(): number {
  const os = host.process?.getBuiltinModule?.("node:os") as { availableParallelism?: () => number } | undefined;
  return Math.max(1, os?.availableParallelism?.() ?? host.navigator?.hardwareConcurrency ?? 1);
}

/** An environment variable, or undefined where there is none or reading it is not permitted. */
export function envVar(name: string): string | undefined {
  try {
    return host.process?.env?.[name];
  } catch {
    return undefined;
  }
}
