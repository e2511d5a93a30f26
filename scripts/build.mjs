#!/usr/bin/env node
// npm run build: compiles the library to dist/ (ESM JavaScript + .d.ts) with tsc, rewriting the
// sources' relative ".ts" imports to ".js" in both, and copies the runtime assets beside the code.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const dist = path.join(root, "dist");
const tmp = path.join(root, `.dist-${process.pid}.tmp`);

fs.rmSync(tmp, { recursive: true, force: true });
try {
  const tsc = path.join(root, "node_modules", "typescript", "bin", "tsc");
  execFileSync(process.execPath, [tsc, "-p", path.join(root, "tsconfig.build.json"), "--outDir", tmp], {
    stdio: ["ignore", 2, 2],
    cwd: root,
  });
  // declaration files keep the ".ts" specifiers of the sources: point them at the emitted ".js"
  const rel = /((?:from|import)\s*\(?\s*["'])(\.{1,2}\/[^"']+)\.ts(["'])/g;
  const walk = (dir) => {
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
      const p = path.join(dir, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.name.endsWith(".d.ts")) fs.writeFileSync(p, fs.readFileSync(p, "utf8").replace(rel, "$1$2.js$3"));
    }
  };
  walk(tmp);
  // runtime assets read through import.meta.url
  fs.cpSync(path.join(root, "data", "assets"), path.join(tmp, "data", "assets"), { recursive: true });
  fs.rmSync(dist, { recursive: true, force: true });
  fs.renameSync(tmp, dist);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
console.error(`built ${path.relative(process.cwd(), dist) || "."}`);
