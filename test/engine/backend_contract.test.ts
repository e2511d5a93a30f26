// The backend contract: the compiler rejects a backend that lacks a kernel or declares another
// parameter type, and a backend written only against the interface (plain kernels, no SIMD, no pool)
// runs the op suite, the gradient checks, the optimizer and the attention tests.
import { test } from "uvu";
import * as assert from "uvu/assert";
import type { Backend, GroupNormParams, AttentionParams, TypedArray } from "../../engine/index.ts";
import {
  backendNames,
  cpuBackend,
  getBackend,
  getDefaultBackend,
  ones,
  registerBackend,
  setDefaultBackend,
  Tensor,
} from "../../engine/index.ts";
import { plainBackend } from "../contract/plain_backend.ts";
import { runContractSuites } from "../contract/run_suites.ts";

test("type level: a backend missing a kernel, or with another parameter type, does not compile", () => {
  const { attention: _a, ...withoutAttention } = plainBackend;
  // @ts-expect-error -- attention is missing
  const missing: Backend<TypedArray> = withoutAttention;
  const { adamUpdate: _u, ...withoutAdam } = plainBackend;
  // @ts-expect-error -- the in-place Adam update is missing
  const missingAdam: Backend<TypedArray> = withoutAdam;
  const wrongParams: Backend<TypedArray> = {
    ...plainBackend,
    // @ts-expect-error -- a group norm that needs a field the engine does not pass
    groupNorm: (
      x: TypedArray,
      w: TypedArray | null,
      b: TypedArray | null,
      p: GroupNormParams & { channelsLast: boolean },
    ) => plainBackend.groupNorm(x, w, b, p),
  };
  const wrongAttention: Backend<TypedArray> = {
    ...plainBackend,
    // @ts-expect-error -- attention over float32 only: narrower storage than the backend declares
    attention: (q: Float32Array, k: TypedArray, v: TypedArray, m: TypedArray | null, p: AttentionParams) =>
      plainBackend.attention(q, k, v, m, p),
  };
  // cpuBackend satisfies the interface as it is
  const cpu: Backend<TypedArray> = cpuBackend;
  assert.ok(missing && missingAdam && wrongParams && wrongAttention && cpu);
});

test("backends by name: cpu is registered and the default; unknown names are a named error", () => {
  assert.ok(backendNames().includes("cpu"));
  assert.is(getBackend("cpu"), cpuBackend);
  assert.is(getDefaultBackend().name, "cpu");
  assert.throws(() => getBackend("gpujs-nope"), /backend "gpujs-nope" is not registered \(known: cpu/);
  assert.throws(() => registerBackend("Bad Name", plainBackend), /registerBackend: name must be/);
  registerBackend("plain-contract", plainBackend);
  const prev = getDefaultBackend();
  setDefaultBackend("plain-contract");
  try {
    const t = ones([2, 3]);
    assert.is(t.backend.name, "plain-test");
    assert.equal(t.add(1).toArray(), [2, 2, 2, 2, 2, 2]);
  } finally {
    setDefaultBackend(prev);
  }
});

test("Tensor.copy_ copies across backends and dtypes, refuses a wrong shape and graph outputs", () => {
  const a = new Tensor(
    plainBackend.fromHost(Float64Array.from([1, 2, 3, 4])),
    [2, 2],
    "float64",
    plainBackend as unknown as Backend,
  );
  const b = ones([2, 2]);
  b.copy_(a);
  assert.equal(b.toArray(), [1, 2, 3, 4]);
  assert.is(b.dtype, "float32");
  assert.ok(b.data instanceof Float32Array);
  b.copy_([5, 6, 7, 8]);
  assert.equal(b.toArray(), [5, 6, 7, 8]);
  assert.equal(a.toArray(), [1, 2, 3, 4]);
  assert.throws(() => b.copy_([1, 2, 3]), /copy_: 3 values for a tensor of shape \[2,2\]/);
  assert.throws(() => b.copy_(ones([4])), /copy_: source shape \[4\] differs from \[2,2\]/);
  const leaf = ones([2]).requiresGrad_();
  const y = leaf.mul(2);
  assert.throws(() => y.copy_([1, 1]), /copy_: tensor of shape \[2\] is the output of "mul"/);
  // copy_ makes its own storage: writing the source later does not reach it
  const src = ones([2]);
  const dst = ones([2]).copy_(src);
  src.copy_([9, 9]);
  assert.equal(dst.toArray(), [1, 1]);
});

test("the op suite, gradient checks, optimizer and attention tests pass on a backend written only against the interface", () => {
  const { report } = runContractSuites<{ plain: Record<string, number>; cpu: Record<string, number> }>(
    "test/contract/use_plain_backend.ts",
    300_000,
  );
  const { plain, cpu } = report;
  // every kernel of the contract ran on the plain backend at least once
  for (const k of Object.keys(plainBackend)) {
    if (k === "name") continue;
    assert.ok((plain[k] ?? 0) > 0, `kernel ${k} never ran on the plain backend`);
  }
  assert.equal(cpu, {}, "a kernel of the cpu backend ran");
});

test.run();
