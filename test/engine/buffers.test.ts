// reuse of consumed gradients: the same numbers with and without the pool, leaf gradients never handed
// back, views and pass-through gradients kept alive while anything refers to them
import { test } from "uvu";
import * as assert from "uvu/assert";
import * as T from "../../engine/index.ts";

const N = 64 * 48; // above the pool's minimum length

/** A graph with the aliasing cases: reshape views, x + x, a pass-through add, a branch into a frozen input, a leaf fed by a reshape. */
function step(x: T.Tensor, w: T.Tensor, frozen: T.Tensor, bias: T.Tensor) {
  const h = T.matmul(T.reshape(x, [64, 48]), w); // (64, 32)
  const a = T.silu(h);
  const b = T.add(a, a); // x + x: one gradient to both inputs
  const c = T.add(b, frozen); // a frozen input: its gradient is dropped
  const r = T.reshape(c, [32, 64]); // a view of c's gradient flows back
  const d = T.add(T.mul(r, r), T.reshape(bias, [32, 64])); // a leaf whose gradient is a reshape of an intermediate
  return T.sum(T.mul(d, d));
}

function grads(pool: boolean) {
  const prev = T.setBufferPoolCapacity(pool ? 2 ** 30 : 0);
  T.clearBufferPool();
  try {
    const g = new T.Generator(1);
    const x = T.randn([N], { generator: g }).mul(0.1).requiresGrad_(),
      w = T.randn([48, 32], { generator: g }).mul(0.1).requiresGrad_();
    const frozen = T.randn([64, 32], { generator: g }),
      bias = T.randn([64 * 32], { generator: g }).requiresGrad_();
    const out: Float32Array[][] = [];
    for (let it = 0; it < 3; it++) {
      for (const t of [x, w, bias]) t.grad = null;
      step(x, w, frozen, bias).backward();
      out.push([x, w, bias].map((t) => Float32Array.from(t.grad!.data as Float32Array)));
    }
    return { out, x, w, bias, stats: T.bufferPoolStats() };
  } finally {
    T.setBufferPoolCapacity(prev);
  }
}

test("consumed gradients are reused and the gradients equal those without reuse", () => {
  const plain = grads(false),
    pooled = grads(true);
  assert.ok(pooled.stats.released > 0, "consumed gradients went back to the pool");
  assert.ok(pooled.stats.reused > 0, "later allocations reused them");
  assert.is(plain.stats.reused, 0, "no reuse with capacity 0");
  for (let it = 0; it < 3; it++) {
    for (let i = 0; i < 3; i++)
      assert.equal(Array.from(pooled.out[it]![i]!), Array.from(plain.out[it]![i]!), `iteration ${it} gradient ${i}`);
  }
});

test("leaf gradients stay intact while later passes reuse memory", () => {
  const prev = T.setBufferPoolCapacity(2 ** 30);
  try {
    const g = new T.Generator(2);
    const x = T.randn([N], { generator: g }).requiresGrad_(),
      w = T.randn([48, 32], { generator: g }).requiresGrad_();
    const frozen = T.randn([64, 32], { generator: g }),
      bias = T.randn([64 * 32], { generator: g }).requiresGrad_();
    step(x, w, frozen, bias).backward();
    const kept = [x.grad!, w.grad!, bias.grad!];
    const copies = kept.map((t) => Float32Array.from(t.data as Float32Array));
    for (let it = 0; it < 3; it++) {
      const x2 = x.detach().requiresGrad_(),
        w2 = w.detach().requiresGrad_(),
        b2 = bias.detach().requiresGrad_();
      step(x2, w2, T.mul(frozen, it + 2), b2).backward();
    }
    kept.forEach((t, i) => assert.equal(Array.from(t.data), Array.from(copies[i]!), `leaf gradient ${i} unchanged`));
  } finally {
    T.setBufferPoolCapacity(prev);
  }
});

test("the pool is bounded by its capacity", () => {
  const prev = T.setBufferPoolCapacity(64 * 1024);
  try {
    T.clearBufferPool();
    grads(true); // sets its own capacity; run one more with the small bound
    T.setBufferPoolCapacity(64 * 1024);
    T.clearBufferPool();
    const g = new T.Generator(3);
    const x = T.randn([N], { generator: g }).requiresGrad_(),
      w = T.randn([48, 32], { generator: g }).requiresGrad_();
    step(x, w, T.randn([64, 32], { generator: g }), T.randn([64 * 32], { generator: g }).requiresGrad_()).backward();
    assert.ok(T.bufferPoolStats().heldBytes <= 64 * 1024);
  } finally {
    T.setBufferPoolCapacity(prev);
  }
});

test("a scope inside another: what the inner one keeps may still be given back by the outer one", () => {
  const prev = T.setBufferPoolCapacity(2 ** 30);
  T.clearBufferPool();
  try {
    const outer = T.cpuBackend.beginScratch(),
      inner = T.cpuBackend.beginScratch();
    const kept = T.cpuBackend.zeros("float32", N) as Float32Array,
      dropped = T.cpuBackend.zeros("float32", N) as Float32Array;
    inner.release(dropped);
    assert.is(T.bufferPoolStats().released, 1, "the inner scope gives back its own allocation");
    inner.end();
    inner.release(kept); // ignored: the inner scope is closed
    assert.is(T.bufferPoolStats().released, 1);
    outer.release(kept);
    assert.is(T.bufferPoolStats().released, 2, "the outer scope gives back what the inner one kept");
    outer.release(kept); // twice: ignored
    assert.is(T.bufferPoolStats().released, 2);
    outer.end();
  } finally {
    T.setBufferPoolCapacity(prev);
  }
});

test.run();
