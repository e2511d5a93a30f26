#!/usr/bin/env node
// npm run pack:check: packs the project (npm pack builds dist/), installs the tarball into a fresh
// project without tsx, and there (a) a plain .mjs script imports the package's entry points, builds
// the tiny UNet and runs a forward and a backward pass, (b) a TypeScript file importing the same is
// type-checked by tsc with a consumer's usual settings, (c) `npx cdiff --help` runs.
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const work = fs.mkdtempSync(path.join(os.tmpdir(), "cdiff-pack-"));
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (cmd, args, cwd) =>
  execFileSync(cmd, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
const step = (name) => console.log(`pack:check: ${name}`);

try {
  step("npm pack");
  const packed = JSON.parse(run(npm, ["pack", "--json", "--pack-destination", work], root));
  const tgz = path.join(work, packed[0].filename);
  const files = packed[0].files.map((f) => f.path);
  for (const must of [
    "dist/index.js",
    "dist/index.d.ts",
    "dist/engine/backend/cpu/wasm/worker.js",
    "dist/data/assets/bpe_simple_vocab_16e6.txt.gz",
    "cli/cdiff.mjs",
  ]) {
    if (!files.includes(must)) throw new Error(`the tarball lacks ${must}`);
  }
  const stray = files.filter((f) => f.endsWith(".ts") && !f.endsWith(".d.ts"));
  if (stray.length) throw new Error(`the tarball holds TypeScript sources: ${stray.slice(0, 5).join(", ")}`);
  step(`${packed[0].filename}: ${files.length} files, ${(packed[0].size / 1e6).toFixed(2)} MB packed`);

  const app = path.join(work, "app");
  fs.mkdirSync(app);
  fs.writeFileSync(
    path.join(app, "package.json"),
    JSON.stringify({ name: "consumer", private: true, type: "module" }, null, 2),
  );
  step("npm install the tarball into a fresh project");
  run(npm, ["install", tgz, "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"], app);
  if (fs.existsSync(path.join(app, "node_modules", "tsx")))
    throw new Error("tsx was installed with the package: it must not be a runtime dependency");

  step("(a) plain node imports the package, builds the tiny UNet, runs forward and backward");
  fs.writeFileSync(
    path.join(app, "smoke.mjs"),
    `
import * as cd from "custom-diffusion-ts";
import { UNet2DConditionModel, TINY_UNET_CONFIG, withInitGenerator } from "custom-diffusion-ts/models";
import { Generator, randn, mseLoss, setNumThreads, closeThreads, linalg } from "custom-diffusion-ts/engine";
import { svd, mat } from "custom-diffusion-ts/engine/linalg";
if (typeof svd !== "function" || linalg.svd !== svd || mat(2, 2).rows !== 2) throw new Error("linalg is not exported");
import { selectParameters } from "custom-diffusion-ts/tune";
if (typeof cd.engine.Tensor !== "function" || typeof selectParameters !== "function") throw new Error("missing exports");
setNumThreads(2);
const unet = withInitGenerator(new Generator(0), () => UNet2DConditionModel.fromConfig(TINY_UNET_CONFIG));
const g = new Generator(1);
const x = randn([2, TINY_UNET_CONFIG.in_channels, 16, 16], { generator: g });
const ctx = randn([2, 7, TINY_UNET_CONFIG.cross_attention_dim], { generator: g });
const out = unet.forward(x, [10, 500], ctx);
const loss = mseLoss(out, randn(out.shape, { generator: g }));
loss.backward();
const w = unet.parameters().find((p) => p.grad);
if (!w || !Number.isFinite(loss.item())) throw new Error("no gradient");
console.log("forward", out.shape.join("x"), "loss", loss.item().toFixed(4), "gradients", unet.parameters().filter((p) => p.grad).length);
closeThreads();
`,
  );
  console.log(run(process.execPath, ["smoke.mjs"], app).trim());

  step("(b) tsc type-checks a consumer's TypeScript file against the package's declarations");
  fs.writeFileSync(
    path.join(app, "check.ts"),
    `
import { engine } from "custom-diffusion-ts";
import { UNet2DConditionModel, TINY_UNET_CONFIG, type UNet2DConditionConfig } from "custom-diffusion-ts/models";
import { Tensor, randn, type Backend } from "custom-diffusion-ts/engine";
import { Adam } from "custom-diffusion-ts/optim";
import { CLIPTokenizer } from "custom-diffusion-ts/data";
import * as tune from "custom-diffusion-ts/tune";
const cfg: UNet2DConditionConfig = { ...TINY_UNET_CONFIG };
const unet = UNet2DConditionModel.fromConfig(cfg);
const t: Tensor = randn([1, 4, 8, 8]);
const b: Backend = t.backend;
const opt = new Adam(unet.parameters(), { lr: 1e-3 });
const n: number = opt.steps + engine.sizeOf([2, 3]);
export { b, n, tune, CLIPTokenizer };
`,
  );
  fs.writeFileSync(
    path.join(app, "tsconfig.json"),
    JSON.stringify(
      {
        compilerOptions: {
          target: "es2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noEmit: true,
          types: [],
        },
        files: ["check.ts"],
      },
      null,
      2,
    ),
  );
  run(process.execPath, [path.join(root, "node_modules", "typescript", "bin", "tsc"), "-p", "."], app);

  step("(c) npx cdiff --help");
  const help = run("npx", ["--no-install", "cdiff", "--help"], app);
  if (!/customise/.test(help)) throw new Error(`cdiff --help printed:\n${help}`);
  console.log(help.split("\n")[0]);
  step("ok");
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
