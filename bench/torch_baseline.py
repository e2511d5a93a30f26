# PyTorch CPU baseline for bench/run.ts: reads a JSON list of cases on stdin, prints one JSON object
# per case ({"key", "ms"} median, or {"key", "error"}). Thread count from argv[1]; set
# OMP_NUM_THREADS and OPENBLAS_NUM_THREADS to it before starting this script.
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

threads = int(sys.argv[1])
repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
torch.set_num_threads(threads)
torch.manual_seed(0)


def randn(*shape, grad=False):
    return torch.randn(*shape, dtype=torch.float32, requires_grad=grad)


def setup(c):
    kind, a = c["kind"], c["args"]
    if kind == "matmul":
        m, k, n = a
        x, y = randn(m, k), randn(k, n)
        return lambda: torch.mm(x, y)
    if kind == "conv":
        n, ci, co, hw, backward = a
        x, w = randn(n, ci, hw, hw, grad=backward), randn(co, ci, 3, 3, grad=backward)
        if backward:
            def f():
                F.conv2d(x, w, padding=1).sum().backward()
                x.grad = None
                w.grad = None
            return f
        return lambda: F.conv2d(x, w, padding=1)
    if kind == "attention":
        b, lq, lk, d, backward = a
        q, k, v = randn(b, lq, d, grad=backward), randn(b, lk, d, grad=backward), randn(b, lk, d, grad=backward)
        # the math path (no fused CPU kernel in torch 1.13): softmax(q k^T / sqrt(d)) v
        def fwd():
            s = torch.baddbmm(torch.empty(b, lq, lk), q, k.transpose(1, 2), beta=0, alpha=d ** -0.5)
            return torch.bmm(s.softmax(-1), v)
        if backward:
            def f():
                fwd().sum().backward()
                q.grad = k.grad = v.grad = None
            return f
        return fwd
    if kind == "groupnorm_silu":
        n, c, hw, g = a
        x, w, bias = randn(n, c, hw, hw), randn(c), randn(c)
        return lambda: F.silu(F.group_norm(x, g, w, bias))
    raise ValueError(f"unknown case kind {kind}")


def main():
    cases = json.load(sys.stdin)
    for c in cases:
        try:
            with torch.set_grad_enabled(True):
                f = setup(c)
                f()
                times = []
                start = time.perf_counter()
                while len(times) < repeats or (len(times) < 3 * repeats and time.perf_counter() - start < 1.0):
                    t = time.perf_counter()
                    f()
                    times.append((time.perf_counter() - t) * 1e3)
            print(json.dumps({"key": c["key"], "ms": statistics.median(times)}), flush=True)
        except Exception as e:  # report and go on
            print(json.dumps({"key": c["key"], "error": str(e)}), flush=True)


main()
