// autograd semantics: accumulation, noGrad, detach, frozen weights keep no graph, graph release
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");

test("gradients accumulate across backward calls and zeroGrad clears them", () => {
  const x = T.tensor([1, 2, 3], undefined, { requiresGrad: true });
  T.sum(T.mul(x, x)).backward();
  T.sum(T.mul(x, 3)).backward();
  assert.equal(x.grad!.toArray(), [5, 7, 9]);
  x.zeroGrad();
  assert.is(x.grad, null);
});

test("a tensor used twice gets the sum of both paths", () => {
  const x = T.tensor([2], undefined, { requiresGrad: true });
  const y = T.mul(x, x).add(x); // x^2 + x -> 2x + 1
  y.backward(T.ones([1]));
  assert.equal(x.grad!.toArray(), [5]);
});

test("backward with an explicit gradient; non-scalar without one is an error", () => {
  const x = T.tensor([1, 2], undefined, { requiresGrad: true });
  const y = T.mul(x, 3);
  assert.throws(() => y.backward(), /implicit gradient needs a scalar/);
  y.backward(T.tensor([1, 10]));
  assert.equal(x.grad!.toArray(), [3, 30]);
});

test("noGrad records nothing; detach cuts the graph", () => {
  const w = T.tensor([1, 2], undefined, { requiresGrad: true });
  const y = T.noGrad(() => T.mul(w, 2));
  assert.is(y.requiresGrad, false);
  assert.is(y.gradNode, null);
  const z = T.mul(w.detach(), 2);
  assert.is(z.requiresGrad, false);
  assert.throws(() => T.sum(z).backward(), /does not require grad/);
});

test("frozen weights keep no graph and get no gradient", () => {
  const frozen = T.randn([4, 4]);
  const trained = T.randn([4, 4]).requiresGrad_();
  const x = T.randn([2, 4]);
  const h = T.matmul(x, frozen); // no input requires grad: no node
  assert.is(h.gradNode, null);
  const out = T.sum(T.matmul(h, trained));
  assert.ok(out.gradNode);
  out.backward();
  assert.is(frozen.grad, null);
  assert.ok(trained.grad);
});

test("the graph is released after backward (unless retained)", () => {
  const x = T.tensor([1, 2], undefined, { requiresGrad: true });
  const h = T.exp(x);
  const y = T.sum(h);
  y.backward();
  assert.is(h.gradNode, null);
  assert.is(y.gradNode, null);
  const y2 = T.sum(T.exp(x));
  y2.backward(undefined, { retainGraph: true });
  assert.ok(y2.gradNode);
  y2.backward();
  assert.equal(
    x.grad!.toArray().map((v) => Math.round(v * 1e6) / 1e6),
    [3 * Math.E, 3 * Math.exp(2)].map((v) => Math.round(v * 1e6) / 1e6),
  );
});

test("after backward nothing keeps the forward's activations: every one is collected", () => {
  // a child with --expose-gc: the walk, the scratch scopes and the buffer pool must not reach the
  // forward's tensors once backward returned (the pool may keep their arrays; it never keeps tensors)
  const code = `const T = await import("./engine/index.ts");
    let collected = 0;
    const reg = new FinalizationRegistry(() => collected++);
    const w = T.randn([64, 64]).requiresGrad_();
    const n = 20;
    (() => {
      let h = T.randn([32, 64]);
      for (let i = 0; i < n; i++) { h = T.tanh(T.matmul(h, w)); reg.register(h, i); }
      T.sum(h).backward();
    })();
    for (let k = 0; k < 3; k++) { await new Promise((r) => setTimeout(r, 20)); globalThis.gc(); }
    await new Promise((r) => setTimeout(r, 50));
    console.log("COLLECTED " + collected + " OF " + n + " GRAD " + (w.grad ? w.grad.shape.join("x") : "none"));`;
  const r = spawnSync(process.execPath, ["--expose-gc", "--import", "tsx", "-e", code], {
    cwd: root,
    encoding: "utf8",
    timeout: 60_000,
  });
  assert.match(r.stdout, /COLLECTED 20 OF 20 GRAD 64x64/, r.stdout + r.stderr);
});

test("seeded generators reproduce bit for bit; different seeds differ", () => {
  const a = T.randn([1000], { generator: new T.Generator(42) }).data;
  const b = T.randn([1000], { generator: new T.Generator(42) }).data;
  const c = T.randn([1000], { generator: new T.Generator(43) }).data;
  assert.equal(Array.from(a), Array.from(b));
  assert.not.equal(Array.from(a), Array.from(c));
  // moments of the normal and uniform draws
  const n = T.randn([20000], { dtype: "float64", generator: new T.Generator(1) });
  assert.ok(Math.abs(T.mean(n).item()) < 0.03);
  assert.ok(Math.abs(T.variance(n).item() - 1) < 0.05);
  const u = T.rand([20000], { dtype: "float64", generator: new T.Generator(2) });
  assert.ok(Math.abs(T.mean(u).item() - 0.5) < 0.01);
  const r = T.randint(3, 7, [5000], { generator: new T.Generator(3) }).toArray();
  assert.equal([...new Set(r)].sort(), [3, 4, 5, 6]);
  // state save and restore continues the same stream
  const g = new T.Generator(9);
  g.normal();
  const st = g.getState();
  const next = [g.normal(), g.normal(), g.random()];
  g.setState(st);
  assert.equal([g.normal(), g.normal(), g.random()], next);
});

test("creation helpers", () => {
  assert.equal(T.arange(1, 7, 2).toArray(), [1, 3, 5]);
  assert.equal(T.linspace(0, 1, 5).toArray(), [0, 0.25, 0.5, 0.75, 1]);
  assert.equal(T.full([2], 7).toArray(), [7, 7]);
  assert.equal(
    T.tensor([
      [1, 2],
      [3, 4],
    ]).shape,
    [2, 2],
  );
  assert.is(T.tensor([1], undefined, { dtype: "float64" }).data instanceof Float64Array, true);
  assert.throws(() => T.tensor([[1, 2], [3]]), /ragged/);
  assert.throws(() => T.reshape(T.zeros([6]), [4, 2]), /reshape: cannot reshape \[6\] \(6 elements\) to \[4,2\]/);
});

test("ndarray interop copies shape and strided data both ways", async () => {
  const ndarray = (await import("ndarray")).default;
  const arr = ndarray(new Float32Array([1, 2, 3, 4, 5, 6]), [2, 3]);
  const t = T.fromNdarray(arr.transpose(1, 0));
  assert.equal(t.shape, [3, 2]);
  assert.equal(t.toArray(), [1, 4, 2, 5, 3, 6]);
  const back = T.toNdarray(t, ndarray as never);
  assert.equal(back.shape, [3, 2]);
  assert.is(back.get(2, 1), 6);
});

test("tidy: the result and keep() come out intact on any backend, nested scopes and errors included", () => {
  const w = T.tensor([1, 2, 3]).requiresGrad_();
  const opt = { moments: [] as T.Tensor[] };
  // a training-step shape: forward, backward, state made inside and kept
  const loss = T.tidy(
    () => {
      const l = w.mul(w).sum();
      l.backward();
      opt.moments.push(w.grad!.mul(0.5));
      return T.tidy(() => l.detach().add(1));
    },
    () => opt.moments,
  );
  assert.equal(loss.toArray(), [15]);
  assert.equal(opt.moments[0]!.toArray(), [1, 2, 3]);
  assert.equal(T.tidy(() => ({ a: [T.ones([2])], n: 3 })).a[0]!.toArray(), [1, 1]);
  assert.throws(
    () =>
      T.tidy(() => {
        throw new Error("inside");
      }),
    /inside/,
  );
  // after an error the scopes are closed: a new one works
  assert.equal(T.tidy(() => w.detach().add(0)).toArray(), [1, 2, 3]);
});

test.run();
