// reverse-mode autograd: ops record a backward closure on their output; backward() walks the graph once
import type { Tensor } from "./tensor.ts";

/** What an op records: its differentiable inputs and how to map the output gradient to theirs. */
export interface GradNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  /** Gradients for each input (null where an input needs none); runs with grad recording off. */
  readonly backward: (g: Tensor) => readonly (Tensor | null)[];
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
export function record(out: Tensor, op: string, inputs: readonly Tensor[], backward: GradNode["backward"], release?: () => void): Tensor {
  if (!gradEnabled || !inputs.some((t) => t.requiresGrad)) {
    release?.();
    return out;
  }
  out.requiresGrad = true;
  if (release) {
    const free = once(release);
    const node: GradNode = { op, inputs, backward, release: free };
    unreleased.register(node, free, node);
    out.gradNode = node;
  } else out.gradNode = { op, inputs, backward };
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

/** What a backend offers for reusing the gradients a backward pass has consumed (see engine/backend/cpu/buffers.ts). */
interface ScratchBackend {
  beginScratch(): { key(s: object): object; release(s: object): void; end(): void };
}

/**
 * Back-propagates `grad` (default 1 for a scalar root) to every leaf that requires grad, adding to
 * its `.grad`. The graph is released afterwards unless `retainGraph`.
 *
 * Intermediate gradients are handed back to the backend as soon as they are consumed, when nothing
 * else refers to their memory: every gradient still waiting in the walk is counted by memory (so a
 * view or a gradient passed through unchanged keeps it alive), leaf gradients and the root gradient
 * are never handed back, and the backend takes back only memory it allocated during this pass.
 */
export function runBackward(root: Tensor, grad: Tensor, add: (a: Tensor, b: Tensor) => Tensor, retainGraph = false): void {
  const order = topoSort(root);
  const grads = new Map<Tensor, Tensor>();
  const be = root.backend as unknown as Partial<ScratchBackend>;
  const scope = typeof be.beginScratch === "function" ? be.beginScratch() : null;
  const refs = new Map<object, number>();
  const pinned = new Set<object>();
  const key = (t: Tensor): object => scope!.key(t.storage);
  const ref = (t: Tensor, d: number): void => {
    if (!scope || t.backend !== root.backend) return;
    const k = key(t);
    refs.set(k, (refs.get(k) ?? 0) + d);
  };
  const pin = (t: Tensor): void => {
    if (scope && t.backend === root.backend) pinned.add(key(t));
  };
  const consumed = (t: Tensor | null | undefined): void => {
    if (!scope || !t || t.backend !== root.backend) return;
    const k = key(t);
    if ((refs.get(k) ?? 0) <= 0 && !pinned.has(k)) scope.release(t.storage);
  };
  grads.set(root, grad);
  ref(grad, 1);
  pin(grad);
  try {
    noGrad(() => {
      for (let i = order.length - 1; i >= 0; i--) {
        const t = order[i];
        const g = grads.get(t);
        grads.delete(t);
        if (!g) continue;
        ref(g, -1);
        const node = t.gradNode;
        if (!node) {
          if (t.grad) {
            const sum = add(t.grad, g);
            t.grad = sum;
            pin(sum);
            consumed(g);
          } else {
            t.grad = g;
            pin(g);
          }
          continue;
        }
        const gi = node.backward(g);
        // hand memory back only after every new reference of this step is counted
        const done: Tensor[] = [g];
        node.inputs.forEach((inp, k) => {
          const gk = gi[k];
          if (!gk) return;
          if (!inp.requiresGrad) {
            done.push(gk);
            return;
          }
          const prev = grads.get(inp);
          if (prev) {
            const sum = add(prev, gk);
            grads.set(inp, sum);
            ref(sum, 1);
            ref(prev, -1);
            done.push(prev, gk);
          } else {
            grads.set(inp, gk);
            ref(gk, 1);
          }
        });
        for (const d of done) consumed(d);
        if (!retainGraph) {
          t.gradNode = null;
          if (node.release) {
            unreleased.unregister(node);
            node.release();
          }
        }
      }
    });
  } finally {
    scope?.end();
  }
}
