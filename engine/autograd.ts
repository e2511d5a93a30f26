// reverse-mode autograd: ops record a backward closure on their output; backward() walks the graph once
import type { Backend, ScratchScope } from "./backend/backend.ts";
import type { Tensor } from "./tensor.ts";

/** What an op records: its differentiable inputs and how to map the output gradient to theirs. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /**
   * Gradients for each input (null where an input needs none); runs with grad recording off. A node
   * marked `sums` also receives each input's pending gradient (what earlier nodes of the walk passed
   * it, or null) and returns the new totals, which replace the pending ones: so a node that runs a
   * walk of its own (gradient checkpointing) adds in the order the whole walk would have.
   */
  readonly backward: (g: Tensor, pending?: (input: number) => Tensor | null) => readonly (Tensor | null)[];
  readonly sums?: boolean;
  /**
   * Frees what the op saved for its backward outside the JS heap (e.g. attention probabilities in
   * WebAssembly memory). Called once: when backward drops the node (no retainGraph), or when the
   * graph is garbage-collected without a backward.
   */
  readonly release?: () => void;
}

// a graph dropped without backward still returns its saved blocks, whenever the collector runs
const unreleased = new FinalizationRegistry<() => void>((free) => free());

/** Wraps `free` so it runs at most once. */
function once(free: () => void): () => void {
  let done = false;
  return () => {
    if (done) return;
    done = true;
    free();
  };
}

let gradEnabled = true;

/** Whether ops currently record a graph. */
export function isGradEnabled(): boolean {
  return gradEnabled;
}

/** Runs `fn` without recording any graph (inference, optimizer updates). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/** Runs `fn` with recording switched on or off. */
export function withGrad<T>(enabled: boolean, fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = enabled;
  try {
    return fn();
  } finally {
    gradEnabled = prev;
  }
}

/**
 * Records `backward` on `out` when recording is on and some input requires grad; otherwise `out`
 * stays a plain tensor, so frozen weights and inference keep no graph at all.
 */
export function record(
  out: Tensor,
  op: string,
  inputs: readonly Tensor[],
  backward: GradNode["backward"],
  release?: () => void,
  sums = false,
): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) {
    release?.();
    return out;
  }
  out.requiresGrad = true;
  const extra = sums ? { sums: true } : {};
  if (release) {
    const free = once(release);
    const node: GradNode = { op, inputs, backward, release: free, ...extra };
    unreleased.register(node, free, node);
    out.gradNode = node;
  } else out.gradNode = { op, inputs, backward, ...extra };
  return out;
}

/** Whether {@link record} would keep a graph for an op on these inputs now. */
export function willRecord(inputs: readonly Tensor[]): boolean {
  return gradEnabled && inputs.some((t) => t.requiresGrad);
}

/** Tensors reachable from `root` through nodes that require grad, in topological order (inputs first). */
function topoSort(root: Tensor): Tensor[] {
  const order: Tensor[] = [];
  const seen = new Set<Tensor>();
  const stack: [Tensor, number][] = [[root, 0]];
  seen.add(root);
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const [t, i] = top;
    const ins = t.gradNode?.inputs ?? [];
    if (i < ins.length) {
      top[1]++;
      const c = ins[i];
      if (c.requiresGrad && !seen.has(c)) {
        seen.add(c);
        stack.push([c, 0]);
      }
    } else {
      order.push(t);
      stack.pop();
    }
  }
  return order;
}

/**
 * The buffer-pool policy of a backward pass: intermediate gradients go back to the backend as soon as
 * they are consumed, when nothing else refers to their memory. Every gradient still waiting in the walk
 * is counted by memory (so a view, or a gradient passed through unchanged, keeps it alive); leaf
 * gradients and the root gradient are pinned, never handed back; and the backend takes back only
 * memory it allocated during this pass (its scratch scope).
 */
class GradientMemory {
  private readonly scope: ScratchScope;
  private readonly refs = new Map<object, number>();
  private readonly pinned = new Set<object>();
  constructor(private readonly backend: Backend) {
    this.scope = backend.beginScratch();
  }
  private key(t: Tensor): object | null {
    return t.backend === this.backend ? this.scope.key(t.storage) : null;
  }
  /** `t` waits in the walk. */
  hold(t: Tensor): void {
    this.count(t, 1);
  }
  /** `t` no longer waits in the walk. */
  drop(t: Tensor): void {
    this.count(t, -1);
  }
  private count(t: Tensor, d: number): void {
    const k = this.key(t);
    if (k) this.refs.set(k, (this.refs.get(k) ?? 0) + d);
  }
  /** `t` outlives the pass (a leaf's `.grad`, the root gradient). */
  pin(t: Tensor): void {
    const k = this.key(t);
    if (k) this.pinned.add(k);
  }
  /** These were read for the last time: hand back those nothing waits on. */
  consumed(ts: readonly Tensor[]): void {
    for (const t of ts) {
      const k = this.key(t);
      if (k && (this.refs.get(k) ?? 0) <= 0 && !this.pinned.has(k)) this.scope.release(t.storage);
    }
  }
  end(): void {
    this.scope.end();
  }
}

/**
 * Back-propagates `grad` (default 1 for a scalar root) to every leaf that requires grad, adding to
 * its `.grad`: one walk over the graph in reverse topological order. The graph is released
 * afterwards unless `retainGraph`; consumed gradients go back to the backend ({@link GradientMemory}).
 *
 * `capture` (for gradient checkpointing) names leaves whose gradients are not accumulated into
 * `.grad` but returned, starting from the given pending sums, in the walk's own order of addition.
 */
export function runBackward(
  root: Tensor,
  grad: Tensor,
  add: (a: Tensor, b: Tensor) => Tensor,
  retainGraph = false,
  capture?: Map<Tensor, Tensor | null>,
): void {
  const order = topoSort(root);
  const grads = new Map<Tensor, Tensor>([[root, grad]]);
  const mem = new GradientMemory(root.backend);
  for (const [t, seed] of capture ?? []) {
    if (!seed || t === root) continue;
    grads.set(t, seed);
    mem.hold(seed);
  }
  mem.hold(grad);
  mem.pin(grad);
  try {
    noGrad(() => {
      for (let i = order.length - 1; i >= 0; i--) {
        const t = order[i]!,
          g = grads.get(t);
        // the walk is done with t: once its consumers' nodes are released too, nothing keeps its storage
        (order as (Tensor | undefined)[])[i] = undefined;
        grads.delete(t);
        if (!g) continue;
        mem.drop(g);
        const node = t.gradNode;
        if (!node && capture?.has(t)) {
          capture.set(t, g);
          mem.pin(g);
          continue;
        }
        if (!node) {
          // a leaf: accumulate into .grad
          const sum = t.grad ? add(t.grad, g) : g;
          mem.pin(sum);
          if (t.grad) mem.consumed([g]);
          t.grad = sum;
          continue;
        }
        const gi = node.sums ? node.backward(g, (k) => grads.get(node.inputs[k]!) ?? null) : node.backward(g);
        const done: Tensor[] = [g];
        node.inputs.forEach((inp, k) => {
          const gk = gi[k];
          if (!gk) return;
          if (!inp.requiresGrad) return void done.push(gk);
          const prev = grads.get(inp);
          if (node.sums) {
            // the node returned the new total for this input
            if (gk === prev) return;
            grads.set(inp, gk);
            mem.hold(gk);
            if (prev) {
              mem.drop(prev);
              done.push(prev);
            }
            return;
          }
          const sum = prev ? add(prev, gk) : gk;
          grads.set(inp, sum);
          mem.hold(sum);
          if (prev) {
            mem.drop(prev);
            done.push(prev, gk);
          }
        });
        // hand memory back only after every new reference of this step is counted
        mem.consumed(done);
        if (!retainGraph) releaseNode(t, node);
      }
    });
  } finally {
    mem.end();
  }
}

/** Drops `t`'s node and frees what it saved. */
function releaseNode(t: Tensor, node: GradNode): void {
  t.gradNode = null;
  if (node.release) {
    unreleased.unregister(node);
    node.release();
  }
}
