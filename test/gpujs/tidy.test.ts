// Textures over long synchronous runs: finalizers never run while a loop keeps the thread busy, so
// without tidy scopes every texture a sampling or training run makes stays until it returns. These
// tests count live textures on the gpujs backend around loops with and without tidy, and check that
// the sampling loop and customise keep them flat (with the same numbers as on cpu).
import { test } from "uvu";
import * as assert from "uvu/assert";
import { Generator, noGrad, randn, setDefaultBackend, tidy } from "../../engine/index.ts";
import type { Tensor } from "../../engine/index.ts";
import { gpujsReport } from "../../engine/backend/gpujs/index.ts";
import { Device } from "../../engine/backend/gpujs/device.ts";
import type { GpuJs } from "../../engine/backend/gpujs/env.ts";
import { withInitGenerator } from "../../models/nn/index.ts";
import { UNet2DConditionModel } from "../../models/unets/unet_2d_condition.ts";
import { Adam } from "../../optim/index.ts";
import { customise } from "../../tune/train.ts";
import { TINY_PIXEL_UNET, conceptFolder, tinyPipeline, tmpDir } from "../tune/tiny.ts";
import { gpuOrSkip } from "./gpu.ts";

const probe = gpuOrSkip("gpujs tidy");
const live = (): number => gpujsReport().stats!.liveTextures;

/** Runs `fn` with gpujs as the default backend. */
function onGpujs<T>(fn: () => T): T {
  setDefaultBackend("gpujs");
  try {
    return fn();
  } finally {
    setDefaultBackend("cpu");
  }
}

test("out of GPU memory or a lost context is never silent: the next check names it; other GL flags pass", () => {
  const codes: number[] = [];
  const fake = {
    mode: "fake",
    Kernel: { name: "Fake" },
    createKernel: () => {
      throw new Error("no kernels here");
    },
    addNativeFunction: () => {},
    injectNative: () => {},
    context: { getError: () => codes.shift() ?? 0 },
  };
  const dev = new Device(fake as unknown as GpuJs);
  codes.push(0x0502, 0x0505, 0x0502);
  assert.throws(
    () => dev.checkGL("reading back 4 elements"),
    (e: Error) =>
      e.name === "BackendError" && /GPU ran out of memory reading back 4 elements \(GL_OUT_OF_MEMORY; /.test(e.message),
  );
  assert.is(codes.length, 0, "every flag drained");
  codes.push(0x0502);
  dev.checkGL("by the end of a tidy scope"); // INVALID_OPERATION alone: cleared, no error
  assert.is(codes.length, 0);
  codes.push(0x9242);
  assert.throws(() => dev.checkGL("by the end of a tidy scope"), /GL context was lost by the end of a tidy scope/);
});

if (probe) {
  test("a synchronous loop holds every texture it made; tidy frees each step's at its end", () => {
    onGpujs(() => {
      const unet = withInitGenerator(new Generator(1), () => UNet2DConditionModel.fromConfig(TINY_PIXEL_UNET));
      const ctx = randn([1, 4, 16], { generator: new Generator(2) });
      const x0 = randn([1, 3, 8, 8], { generator: new Generator(3) });
      const steps = (n: number, tidied: boolean): { grew: number; out: Tensor } => {
        let x = x0;
        const before = live();
        for (let i = 0; i < n; i++) {
          const step = (): Tensor =>
            noGrad(() =>
              unet
                .forward(x, 10 * i, ctx)
                .mul(0.5)
                .add(x),
            );
          x = tidied ? tidy(step) : step();
        }
        return { grew: live() - before, out: x };
      };
      const plain = steps(4, false),
        tidied = steps(4, true);
      process.stdout.write(
        `\n[gpujs tidy] 4 tiny-UNet forwards left ${plain.grew} textures, ${tidied.grew} with tidy\n`,
      );
      assert.ok(plain.grew > 4 * 50, `without tidy 4 forwards left ${plain.grew} textures`);
      // what stays: each step's result (4) and the uploads of weights on first use (none: done above)
      assert.ok(tidied.grew <= 4, `with tidy 4 forwards left ${tidied.grew} textures`);
      assert.equal(Array.from(tidied.out.data), Array.from(plain.out.data));
    });
  });

  test("tidy keeps its result and keep(), frees the rest (a later use throws), nests, and frees nothing on error", () => {
    onGpujs(() => {
      const a = randn([64], { generator: new Generator(4) });
      void a.add(0).data; // a's upload (made on first use) is a's, not the scope's
      let inner: Tensor | null = null,
        dropped: Tensor | null = null;
      const before = live();
      const out = tidy(() => {
        dropped = a.exp();
        const kept = tidy(
          () => {
            inner = a.mul(2);
            return a.add(1);
          },
          () => inner,
        );
        // the inner scope's kept tensors now belong to this scope: freed at its end unless kept again
        return kept.mul(3);
      });
      assert.equal(
        Array.from(out.data),
        Array.from(a.data).map((v) => Math.fround(Math.fround(v + 1) * 3)),
      );
      assert.throws(() => dropped!.data, /released/);
      assert.throws(() => inner!.data, /released/);
      assert.ok(live() - before <= 1, `${live() - before} textures left`);
      // an error inside: nothing freed (the half-built work stays to the collector)
      let made: Tensor | null = null;
      assert.throws(() =>
        tidy(() => {
          made = a.neg();
          throw new Error("boom");
        }),
      );
      assert.is(made!.data[0], -a.data[0]!);
    });
  });

  test("Adam updates in place on gpujs: the storage objects stay, the old textures go at once", () => {
    onGpujs(() => {
      const p = randn([16], { generator: new Generator(5) }).requiresGrad_();
      const opt = new Adam([p], { lr: 0.1 });
      const store = p.rawStorage;
      const run = (): void => {
        opt.zeroGrad();
        p.mul(p).sum().backward();
        opt.step();
        opt.zeroGrad();
      };
      run();
      const before = live(),
        released = gpujsReport().stats!.releasedTextures;
      for (let i = 0; i < 3; i++) tidy(run, () => opt.tensors());
      assert.ok(p.rawStorage === store, "the parameter's storage object is kept");
      assert.ok(live() - before <= 0, `${live() - before} more textures after 3 steps`);
      assert.ok(gpujsReport().stats!.releasedTextures - released >= 9, "three old textures per step deleted");
    });
  });

  test("GPU memory is counted: liveBytes, peakBytes", () => {
    onGpujs(() => {
      const st = () => gpujsReport().stats!;
      const b0 = st().liveBytes;
      const x = randn([64, 64], { generator: new Generator(6) }).exp(); // one upload, one kernel output
      void x.data;
      const grew = st().liveBytes - b0;
      // the upload and the kernel output are each a kernel's output texture: one value in four float32
      // channels per texel (CDIFF_GPUJS_PACK=1: four values per texel)
      const want = 2 * 4096 * (process.env.CDIFF_GPUJS_PACK === "1" ? 4 : 16);
      assert.ok(grew >= want && grew <= want * 1.1, `4096 elements took ${grew} bytes, expected about ${want}`);
      assert.ok(st().peakBytes >= st().liveBytes);
    });
  });

  test("customise and generate on gpujs: the cpu's losses, and live textures flat over the run", () => {
    const dir = conceptFolder([1, 0, 0]);
    const opts = (steps: number) => ({
      concepts: [{ instance_prompt: "photo of a <new1> square", class_prompt: "square", instance_data_dir: dir }],
      outputDir: tmpDir(),
      maxTrainSteps: steps,
      trainBatchSize: 2,
      learningRate: 5e-3,
      log: () => {},
      seed: 3,
    });
    const cpu = customise(tinyPipeline(), opts(5)).losses;
    onGpujs(() => {
      const grew = (steps: number): { grew: number; losses: number[] } => {
        const pipe = tinyPipeline();
        const before = live();
        const r = customise(pipe, opts(steps));
        return { grew: live() - before, losses: r.losses };
      };
      const two = grew(2),
        five = grew(5);
      five.losses.forEach((l, i) => assert.ok(Math.abs(l - cpu[i]!) <= 1e-4 * Math.max(1, cpu[i]!), `loss ${i}`));
      // the same model and optimizer either way: three more steps add (almost) nothing
      assert.ok(five.grew - two.grew <= 12, `5 steps left ${five.grew} textures, 2 steps ${two.grew}`);
      const pipe = tinyPipeline();
      // during the run (onStep sees each step's latents, noise prediction and x0, kept until the end)
      // and after it
      let during: number[] = [];
      const gen = (n: number): number => {
        const before = live();
        during = [];
        pipe.generate({
          prompt: "a square",
          numInferenceSteps: n,
          guidanceScale: 2,
          seed: 1,
          outputLatents: true,
          onStep: () => void during.push(live()),
        });
        return live() - before;
      };
      gen(2);
      const g2 = gen(2),
        g6 = gen(6);
      const perStep = (during[5]! - during[1]!) / 4;
      assert.ok(perStep <= 3, `generate: ${perStep} more live textures per step during the run`);
      process.stdout.write(
        `\n[gpujs tidy] customise left ${two.grew} textures after 2 steps, ${five.grew} after 5; generate ${g2} after 2 steps, ${g6} after 6, ${perStep} more per step while running\n`,
      );
      assert.ok(g6 - g2 <= 2, `generate: 6 steps left ${g6} textures, 2 steps ${g2}`);
    });
  });
}

test.run();
