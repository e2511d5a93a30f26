// esbuild `inject`: free references to `process` and `Buffer` in the library resolve to these (the
// engine's own `globalThis.process` checks still see no process, so it takes the Web Worker paths).
import { Buffer } from "./buffer.ts";
export { Buffer };
export const process = {
  pid: 1,
  env: {} as Record<string, string | undefined>,
  argv: [] as string[],
  platform: "browser",
  kill(pid: number, signal?: string | number): boolean {
    if (pid === 1 && (signal === 0 || signal === undefined)) return true;
    const e = new Error(`kill ${pid}: no such process in the page`) as Error & { code: string };
    e.code = "ESRCH";
    throw e;
  },
  cwd: (): string => "/",
  exitCode: 0,
  stdout: { write: (s: string): boolean => (console.log(s), true), isTTY: false },
  stderr: { write: (s: string): boolean => (console.warn(s), true), isTTY: false },
  emitWarning: (m: string): void => console.warn(m),
  hrtime: { bigint: (): bigint => BigInt(Math.round(performance.now() * 1e6)) },
};
