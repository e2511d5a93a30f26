// Arena allocator over one WebAssembly.Memory (shared when the runtime allows it, so the pool's
// workers see it too): the blocks the fast kernels stage their operands and results in, GEMM packing
// buffers, per-thread scratch, and attention probabilities kept for the backward. Tensors themselves
// live in ordinary typed arrays and are copied in and out.

import { requireWasm, type WasmMemory } from "./api.ts";

/** Options for a {@link WasmArena}; page counts are in 64 KiB WebAssembly pages. */
export interface ArenaOptions {
  /** Pages at creation (default 256 = 16 MiB). */
  initialPages?: number;
  /** Upper bound on growth (default 65536 = 4 GiB). */
  maximumPages?: number;
  /** Request a shared memory (default true); falls back to a non-shared one if that fails. */
  shared?: boolean;
}

const PAGE = 65536;
/** Every block is aligned to and a multiple of this many bytes (one cache line). */
const ALIGN = 64;
/** Blocks of at least this many bytes are large: allocated from merged free ranges. */
const LARGE = 1 << 20;
/** A large free range is split when at least this much would be left over. */
const MIN_SPLIT = 1 << 18;

/** Rounds a byte count up to its size class: 4 classes per power of two, at least 64 bytes. */
export function sizeClass(bytes: number): number {
  if (bytes <= ALIGN) return ALIGN;
  const p = 2 ** Math.floor(Math.log2(bytes - 1));
  const step = Math.max(ALIGN, p / 4);
  return Math.ceil(bytes / step) * step;
}

/**
 * Allocator over a WebAssembly.Memory. Pointers are byte offsets, 64-byte aligned, never 0. Small
 * blocks (under 1 MiB) come from size-class free lists, reused only for the same class; large blocks
 * from a list of free ranges (best fit, split, neighbours merged on free, the range at the top handed
 * back to the bump pointer), so a model whose operands take many different large sizes (a UNet's
 * stages) reuses the same memory instead of growing by every size it ever staged. New blocks come
 * from a bump pointer and the memory grows on demand. Block sizes are kept on the JS side, so
 * kernels writing inside the memory cannot corrupt the allocator. Views go stale when the memory
 * grows: take them with {@link WasmArena.f32view} / {@link WasmArena.heapF32} after allocating.
 */
export class WasmArena {
  /** The memory that generated kernels import. */
  readonly memory: WasmMemory;
  /** Whether `memory` is shared (its buffer is a SharedArrayBuffer). */
  readonly shared: boolean;
  /** Initial and maximum size in pages, as declared to the kernels' memory import. */
  readonly initialPages: number;
  readonly maximumPages: number;
  private top = ALIGN;
  private readonly freeLists = new Map<number, number[]>();
  /** Free large ranges, sorted by address, none adjacent to another or to the top. */
  private readonly ranges: { ptr: number; size: number }[] = [];
  private readonly live = new Map<number, number>();
  private liveBytes = 0;
  private view: Float32Array;

  constructor(opts: ArenaOptions = {}) {
    const initial = opts.initialPages ?? 256;
    const maximum = opts.maximumPages ?? 65536;
    if (
      !Number.isInteger(initial) ||
      !Number.isInteger(maximum) ||
      initial < 1 ||
      maximum < initial ||
      maximum > 65536
    ) {
      throw new RangeError(`WasmArena: need 1 <= initialPages <= maximumPages <= 65536, got ${initial}, ${maximum}`);
    }
    const api = requireWasm();
    let memory: WasmMemory | undefined;
    let shared = false;
    if (opts.shared ?? true) {
      try {
        memory = new api.Memory({ initial, maximum, shared: true });
        shared = true;
      } catch {
        memory = undefined;
      }
    }
    memory ??= new api.Memory({ initial, maximum });
    this.memory = memory;
    this.shared = shared;
    this.initialPages = initial;
    this.maximumPages = maximum;
    this.view = new Float32Array(memory.buffer);
  }

  /** Current size of the memory in bytes. */
  get byteLength(): number {
    return this.memory.buffer.byteLength;
  }

  /**
   * Allocates room for `nFloats` float32 values and returns its byte offset (64-byte aligned,
   * contents unspecified). Grows the memory when needed; throws RangeError past `maximumPages`.
   */
  alloc(nFloats: number): number {
    if (!Number.isInteger(nFloats) || nFloats < 0) {
      throw new RangeError(`WasmArena.alloc: nFloats must be a non-negative integer, got ${nFloats}`);
    }
    let size = sizeClass(nFloats * 4);
    let ptr: number | undefined;
    if (size >= LARGE) {
      let best = -1;
      for (let i = 0; i < this.ranges.length; i++) {
        const r = this.ranges[i]!;
        if (r.size >= size && (best < 0 || r.size < this.ranges[best]!.size)) best = i;
      }
      if (best >= 0) {
        const r = this.ranges[best]!;
        ptr = r.ptr;
        if (r.size - size >= MIN_SPLIT) {
          r.ptr += size;
          r.size -= size;
        } else {
          this.ranges.splice(best, 1);
          size = r.size;
        }
      }
    } else {
      ptr = this.freeLists.get(size)?.pop();
    }
    if (ptr === undefined) {
      ptr = this.top;
      this.ensure(ptr + size);
      this.top = ptr + size;
    }
    this.live.set(ptr, size);
    this.liveBytes += size;
    return ptr;
  }

  /** Returns a block from {@link alloc} to its size-class free list; throws on unknown or double free. */
  free(ptr: number): void {
    const size = this.live.get(ptr);
    if (size === undefined) throw new RangeError(`WasmArena.free: ${ptr} is not a live allocation`);
    this.live.delete(ptr);
    this.liveBytes -= size;
    if (size >= LARGE) return this.freeRange(ptr, size);
    let list = this.freeLists.get(size);
    if (!list) this.freeLists.set(size, (list = []));
    list.push(ptr);
  }

  /** Puts a large block back: merged with free neighbours, or given back to the bump pointer at the top. */
  private freeRange(ptr: number, size: number): void {
    const rs = this.ranges;
    let i = 0;
    while (i < rs.length && rs[i]!.ptr < ptr) i++;
    let start = ptr,
      end = ptr + size;
    if (i > 0 && rs[i - 1]!.ptr + rs[i - 1]!.size === start) {
      start = rs[i - 1]!.ptr;
      rs.splice(--i, 1);
    }
    if (i < rs.length && rs[i]!.ptr === end) {
      end += rs[i]!.size;
      rs.splice(i, 1);
    }
    if (end === this.top) this.top = start;
    else rs.splice(i, 0, { ptr: start, size: end - start });
  }

  /** Usable size in bytes of the live block at `ptr` (its size class), or undefined. */
  blockBytes(ptr: number): number | undefined {
    return this.live.get(ptr);
  }

  /** A fresh Float32Array over `n` floats at byte offset `ptr` (valid until the memory grows). */
  f32view(ptr: number, n: number): Float32Array {
    if (ptr % 4 !== 0 || ptr < 0 || n < 0 || ptr + n * 4 > this.byteLength) {
      throw new RangeError(
        `WasmArena.f32view: range [${ptr}, ${ptr + n * 4}) outside memory of ${this.byteLength} bytes`,
      );
    }
    return new Float32Array(this.memory.buffer, ptr, n);
  }

  /** A Float32Array over the whole memory, re-created after growth (index = byte offset / 4). */
  heapF32(): Float32Array {
    const buf = this.memory.buffer;
    if (this.view.buffer !== buf || this.view.byteLength !== buf.byteLength) this.view = new Float32Array(buf);
    return this.view;
  }

  /** Byte counts: `live` allocated, `reserved` below the bump pointer, `capacity` of the memory. */
  stats(): { live: number; reserved: number; capacity: number; blocks: number } {
    return { live: this.liveBytes, reserved: this.top, capacity: this.byteLength, blocks: this.live.size };
  }

  private ensure(end: number): void {
    const have = this.byteLength;
    if (end <= have) return;
    const havePages = have / PAGE;
    const needPages = Math.ceil(end / PAGE);
    if (needPages > this.maximumPages) {
      throw new RangeError(`WasmArena.alloc: out of memory, need ${end} bytes, maximum ${this.maximumPages * PAGE}`);
    }
    // grow geometrically (x1.5) to amortise, bounded by the maximum
    const want = Math.min(this.maximumPages, Math.max(needPages, Math.ceil(havePages * 1.5)));
    try {
      this.memory.grow(want - havePages);
    } catch {
      this.memory.grow(needPages - havePages);
    }
    this.heapF32();
  }
}
