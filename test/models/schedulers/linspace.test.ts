// linspaceFloat32 against torch.linspace(dtype=float32) on CPU, bit for bit, for torch's avx2, avx512 and
// default kernels (golden values from torch 1.13 in test/fixtures/torch_linspace), and where they differ
import { test } from "uvu";
import * as assert from "uvu/assert";
import { ConfigError } from "../../../engine/index.ts";
import { linspaceFloat32, type TorchLinspaceKernel } from "../../../models/schedulers/index.ts";
import { TORCH_LINSPACE, decodeValues } from "./torch_linspace.ts";

const f = Math.fround;

for (const kernel of ["avx2", "avx512", "default"] as const) {
  test(`${kernel}: every golden case value for value (SD-1.x sqrt betas and odd lengths)`, () => {
    const cases = TORCH_LINSPACE.kernels[kernel];
    assert.ok(cases.length >= 5);
    for (const c of cases) {
      const want = decodeValues(c);
      let got = linspaceFloat32(c.start, c.end, c.steps, { kernel });
      if (c.square) got = got.map((v) => f(v * v));
      assert.is(got.length, want.length, c.name);
      for (let i = 0; i < want.length; i++)
        assert.ok(Object.is(got[i], want[i]), `${kernel} ${c.name}[${i}]: ${got[i]} vs torch ${want[i]}`);
    }
  });
}

test("the kernels' values differ by an ulp here and there; one scalar formula matches none of them", () => {
  const [s, e] = [Math.sqrt(0.00085), Math.sqrt(0.012)];
  const by = (k: TorchLinspaceKernel) => linspaceFloat32(s, e, 1000, { kernel: k });
  const differ = (a: Float64Array, b: Float64Array) => a.reduce((n, v, i) => n + (v !== b[i] ? 1 : 0), 0);
  const ulps = (a: Float64Array, b: Float64Array) =>
    Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i]!) / 2 ** (Math.floor(Math.log2(Math.abs(v))) - 23)));
  const avx2 = by("avx2"),
    avx512 = by("avx512"),
    plain = by("default");
  assert.ok(differ(avx2, avx512) > 0 && differ(avx2, plain) > 0 && differ(avx512, plain) > 0);
  assert.ok(ulps(avx2, avx512) <= 2 && ulps(avx2, plain) <= 2);
  // start + step * i below halfway, end - step * (steps - 1 - i) above, every value on its own
  const fs = f(s),
    fe = f(e),
    step = f(f(fe - fs) / 999);
  const scalar = Float64Array.from({ length: 1000 }, (_, i) =>
    i < 500 ? f(fs + f(step * i)) : f(fe - f(step * (999 - i))),
  );
  for (const k of [avx2, avx512, plain]) assert.ok(differ(k, scalar) > 100, `${differ(k, scalar)} values differ`);
});

test("ends, one step, and the kernel option", () => {
  const v = linspaceFloat32(0.1, 0.2, 17);
  assert.is(v[0], f(0.1));
  assert.is(v[16], f(0.2));
  assert.equal(Array.from(linspaceFloat32(3, 9, 1)), [3]);
  assert.equal(Array.from(linspaceFloat32(0, 1, 0)), []);
  assert.throws(
    () => linspaceFloat32(0, 1, 4, { kernel: "neon" as TorchLinspaceKernel }),
    (e: Error) => e instanceof ConfigError && /kernel must be one of/.test(e.message),
  );
});

test.run();
