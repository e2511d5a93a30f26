// Builds the page into an output folder with esbuild: app.js (the page), engine.js (the module worker
// that runs the library) and worker.js (the cpu backend's pool thread, which the pool starts next to
// engine.js: siblingModule("worker", import.meta.url)). Node built-ins never reach the bundles: node:fs
// becomes an in-memory file system (web/shims/fs.ts), node:path/url/zlib/crypto small browser
// equivalents, anything else a stub that throws when called; the build fails if a `node:` import is left.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { build, type Plugin } from "esbuild";

export const WEB_DIR = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.dirname(WEB_DIR);
const SHIMS: Record<string, string> = {
  fs: "fs.ts",
  path: "path.ts",
  url: "url.ts",
  zlib: "zlib.ts",
  crypto: "crypto.ts",
  buffer: "buffer.ts",
};

const nodeShims: Plugin = {
  name: "node-shims",
  setup(b) {
    b.onResolve(
      {
        filter:
          /^(node:)?(fs|path|url|zlib|crypto|buffer|os|util|child_process|worker_threads|module|process|events|stream|readline|perf_hooks|assert)$/,
      },
      (a) => {
        const name = a.path.replace(/^node:/, "");
        return { path: path.join(WEB_DIR, "shims", SHIMS[name] ?? "missing.cjs") };
      },
    );
  },
};

export interface WebBuild {
  outDir: string;
  files: string[];
  bytes: number;
  ms: number;
}

/** Builds the page into `outDir` (default .cache/web) and checks that no Node import is left. */
export async function buildWeb(
  outDir = path.join(ROOT, ".cache", "web"),
  opts: { minify?: boolean } = {},
): Promise<WebBuild> {
  const t0 = performance.now();
  fs.mkdirSync(outDir, { recursive: true });
  await build({
    entryPoints: {
      app: path.join(WEB_DIR, "app.ts"),
      engine: path.join(WEB_DIR, "engine.ts"),
      worker: path.join(ROOT, "engine", "backend", "cpu", "wasm", "worker.ts"),
    },
    outdir: outDir,
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    splitting: false,
    minify: opts.minify ?? false,
    sourcemap: false,
    logLevel: "error",
    plugins: [nodeShims],
    inject: [path.join(WEB_DIR, "shims", "globals.ts")],
    define: { "process.env.NODE_ENV": '"production"' },
  });
  fs.copyFileSync(path.join(WEB_DIR, "index.html"), path.join(outDir, "index.html"));
  const files = ["index.html", "app.js", "engine.js", "worker.js"];
  let bytes = 0;
  for (const f of files) {
    const text = fs.readFileSync(path.join(outDir, f), "utf8");
    bytes += text.length;
    const m = /(?:from|import)\s*\(?\s*["']node:[a-z_]+["']/.exec(text);
    if (m) throw new Error(`web build: ${f} still imports a Node built-in (${m[0]})`);
  }
  return { outDir, files, bytes, ms: performance.now() - t0 };
}
