// `npm run web`: builds the page, then serves it on 127.0.0.1 with cross-origin isolation
// (COOP same-origin + COEP require-corp, so the cpu backend's worker pool gets SharedArrayBuffer):
//   /            the page (index.html, app.js, engine.js, worker.js from the build)
//   /model/...   the shipped world model (world/model), fetched by the page's worker
//   /data/...    the world corpus sheets (world/data: regularisation images, the images the page offers)
// Options: --port N (default 8013; 0 picks a free one), --host H (default 127.0.0.1).
import * as fs from "node:fs";
import * as http from "node:http";
import * as path from "node:path";
import { parseArgs } from "node:util";
import { WEB_DIR, buildWeb } from "./build.ts";

const ROOT = path.dirname(WEB_DIR);
const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".json": "application/json",
  ".png": "image/png",
  ".txt": "text/plain; charset=utf-8",
  ".safetensors": "application/octet-stream",
  ".css": "text/css",
};

export interface WebServer {
  url: string;
  close(): Promise<void>;
}

/** Builds the page and serves it; resolves once listening. */
export async function startWebServer(
  opts: { port?: number; host?: string; outDir?: string; log?: (s: string) => void } = {},
): Promise<WebServer> {
  const log = opts.log ?? ((s: string) => console.log(s));
  const b = await buildWeb(opts.outDir);
  log(`web: built ${b.files.join(", ")} (${(b.bytes / 1024).toFixed(0)} KiB) in ${(b.ms / 1000).toFixed(1)} s`);
  const mounts: [string, string][] = [
    ["/model/", path.join(ROOT, "world", "model")],
    ["/data/", path.join(ROOT, "world", "data")],
    ["/", b.outDir],
  ];
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? "/", "http://x");
    let p = decodeURIComponent(url.pathname);
    if (p === "/") p = "/index.html";
    const headers = {
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
      "Cache-Control": "no-store",
    };
    if (p === "/favicon.ico") {
      res.writeHead(204, headers);
      res.end();
      return;
    }
    for (const [prefix, dir] of mounts) {
      if (!p.startsWith(prefix)) continue;
      const file = path.join(dir, p.slice(prefix.length));
      if (!file.startsWith(dir + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) break;
      res.writeHead(200, { ...headers, "Content-Type": TYPES[path.extname(file)] ?? "application/octet-stream" });
      fs.createReadStream(file).pipe(res);
      return;
    }
    res.writeHead(404, { ...headers, "Content-Type": "text/plain" });
    res.end(`not found: ${p}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(opts.port ?? 8013, opts.host ?? "127.0.0.1", () => resolve());
  });
  const addr = server.address() as { port: number };
  const url = `http://${opts.host ?? "127.0.0.1"}:${addr.port}/`;
  return {
    url,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections?.();
        server.close(() => r());
      }),
  };
}

if (process.argv[1] && /web[\\/]server\.ts$/.test(process.argv[1])) {
  const { values: v } = parseArgs({ options: { port: { type: "string" }, host: { type: "string" } } });
  startWebServer({ port: v.port !== undefined ? Number(v.port) : 8013, host: v.host ?? "127.0.0.1" }).then(
    (s) =>
      console.log(
        `web: Custom Diffusion in the browser at ${s.url}  (needs module workers, WebAssembly SIMD and cross-origin isolation: Chrome/Edge 91+, Firefox 114+, Safari 16.4+; Ctrl-C stops)`,
      ),
    (e: Error) => {
      console.error(`web: ${e.message}`);
      process.exitCode = 1;
    },
  );
}
