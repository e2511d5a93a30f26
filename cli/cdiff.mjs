#!/usr/bin/env node
// command-line entry: in a checkout, the TypeScript sources through tsx; in an installed package, the
// compiled CLI (dist/, built by `npm run build` when the package is packed)
import { existsSync } from "node:fs";

const source = new URL("./main.ts", import.meta.url);
let cli;
if (existsSync(source)) {
  const { register } = await import("tsx/esm/api");
  register();
  cli = await import(source.href);
} else {
  cli = await import(new URL("../dist/cli/main.js", import.meta.url).href);
}
process.exitCode = cli.main(process.argv.slice(2));
