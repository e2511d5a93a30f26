// Adam and AdamW with parameter groups (as torch.optim): only parameters handed over get state
import { Tensor, adamUpdate_, zerosLike } from "../engine/index.ts";
import { ConfigError } from "../engine/errors.ts";

export interface ParamGroup {
  params: Tensor[];
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** optional label, for logs and saved state */
  name?: string;
}
interface Group {
  params: Tensor[];
  lr: number;
  betas: [number, number];
  eps: number;
  weightDecay: number;
  name: string;
}
export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
  /** decoupled weight decay (AdamW) instead of L2 added to the gradient (Adam) */
  decoupled?: boolean;
}

/** Serializable optimizer state: step counts and moment buffers per parameter (by group and index). */
export interface AdamState {
  step: number;
  groups: { name: string; lr: number; size: number[] }[];
  moments: { m: Float32Array | Float64Array; v: Float32Array | Float64Array }[][];
}

/** Adam (Kingma & Ba) with bias correction; AdamW when `decoupled`. Updates parameters in place. */
export class Adam {
  readonly groups: Group[];
  readonly decoupled: boolean;
  private stepCount = 0;
  // moments on the parameter's backend, in its own precision (float32 for float32 weights, as torch keeps them)
  private readonly moments = new Map<Tensor, { m: Tensor; v: Tensor }>();

  constructor(params: Tensor[] | ParamGroup[], opts: AdamOptions = {}) {
    const list: ParamGroup[] =
      params.length > 0 && params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : (params as ParamGroup[]);
    this.decoupled = opts.decoupled ?? false;
    const seen = new Set<Tensor>();
    this.groups = list.map((g, i) => {
      for (const p of g.params) {
        if (seen.has(p)) throw new ConfigError(`Adam: a parameter appears in more than one group (group ${i})`);
        if (!p.requiresGrad)
          throw new ConfigError(`Adam: group ${i} holds a parameter that does not require grad, shape [${p.shape}]`);
        seen.add(p);
      }
      const grp: Group = {
        params: g.params,
        lr: g.lr ?? opts.lr ?? 1e-3,
        betas: g.betas ?? opts.betas ?? [0.9, 0.999],
        eps: g.eps ?? opts.eps ?? 1e-8,
        weightDecay: g.weightDecay ?? opts.weightDecay ?? (this.decoupled ? 1e-2 : 0),
        name: g.name ?? `group${i}`,
      };
      if (!(grp.lr >= 0)) throw new ConfigError(`Adam: lr must be >= 0, got ${grp.lr}`);
      return grp;
    });
  }

  get steps(): number {
    return this.stepCount;
  }

  /** Parameters under optimisation. */
  params(): Tensor[] {
    return this.groups.flatMap((g) => g.params);
  }

  /** The tensors this optimizer keeps across steps: the parameters and their moments (what a `tidy` around a step keeps). */
  tensors(): Tensor[] {
    const out: Tensor[] = [];
    for (const p of this.params()) {
      out.push(p);
      const st = this.moments.get(p);
      if (st) out.push(st.m, st.v);
    }
    return out;
  }

  zeroGrad(): void {
    for (const p of this.params()) p.grad = null;
  }

  /** One update with each group's current lr, one backend kernel per parameter; parameters without a gradient are skipped. */
  step(): void {
    this.stepCount++;
    const t = this.stepCount;
    for (const g of this.groups) {
      const [beta1, beta2] = g.betas;
      const hyper = { lr: g.lr, beta1, beta2, eps: g.eps, weightDecay: g.weightDecay, decoupled: this.decoupled, t };
      for (const p of g.params) {
        if (!p.grad) continue;
        let st = this.moments.get(p);
        if (!st) this.moments.set(p, (st = { m: zerosLike(p), v: zerosLike(p) }));
        adamUpdate_(p, p.grad, st.m, st.v, hyper);
      }
    }
  }

  /** Sets the lr of every group (or one group by index). */
  setLr(lr: number, group?: number): void {
    if (group === undefined) for (const g of this.groups) g.lr = lr;
    else this.groups[group].lr = lr;
  }

  stateDict(): AdamState {
    return {
      step: this.stepCount,
      groups: this.groups.map((g) => ({ name: g.name, lr: g.lr, size: g.params.map((p) => p.size) })),
      moments: this.groups.map((g) =>
        g.params.map((p) => {
          const st = this.moments.get(p);
          return {
            m: st ? st.m.data.slice() : new Float32Array(p.size),
            v: st ? st.v.data.slice() : new Float32Array(p.size),
          };
        }),
      ),
    };
  }

  loadStateDict(s: AdamState): void {
    if (s.moments.length !== this.groups.length)
      throw new ConfigError(`Adam: saved state has ${s.moments.length} groups, optimizer has ${this.groups.length}`);
    this.groups.forEach((g, gi) => {
      if (s.moments[gi].length !== g.params.length)
        throw new ConfigError(
          `Adam: group ${g.name} has ${g.params.length} parameters, saved state ${s.moments[gi].length}`,
        );
      g.params.forEach((p, pi) => {
        const mo = s.moments[gi][pi];
        if (mo.m.length !== p.size)
          throw new ConfigError(
            `Adam: group ${g.name} parameter ${pi} has ${p.size} elements, saved state ${mo.m.length}`,
          );
        this.moments.set(p, { m: zerosLike(p).copy_(mo.m), v: zerosLike(p).copy_(mo.v) });
      });
      g.lr = s.groups[gi]?.lr ?? g.lr;
    });
    this.stepCount = s.step;
  }
}

/** AdamW: Adam with decoupled weight decay (default 1e-2). */
export class AdamW extends Adam {
  constructor(params: Tensor[] | ParamGroup[], opts: Omit<AdamOptions, "decoupled"> = {}) {
    super(params, { ...opts, decoupled: true });
  }
}
