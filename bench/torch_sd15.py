# The PyTorch side of bench/sd15.ts: diffusers' UNet2DConditionModel with Stable Diffusion 1.5's config,
# random weights, batch 1: a forward, or one Custom Diffusion K/V step (CustomDiffusionAttnProcessor on
# every attn2, AdamW on the to_k / to_v weights), optionally with gradient checkpointing. Prints one JSON
# line like the engine's child: case, size, engine, ms (median after one warm-up), peakRssMB, steps.
# Run: python3 bench/torch_sd15.py CASE SIZE STEPS   (CASE: fwd | step | step-ckpt)
import json
import resource
import statistics
import sys
import time

import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import CustomDiffusionAttnProcessor

case, size, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.manual_seed(0)
unet = UNet2DConditionModel(sample_size=64, cross_attention_dim=768)  # diffusers' defaults are SD-1.x's otherwise
lat = size // 8
x = torch.randn(1, 4, lat, lat)
ctx = torch.randn(1, 77, 768)
target = torch.randn(1, 4, lat, lat)
t = torch.tensor([500])
times = []
if case == "fwd":
    unet.eval()
    with torch.no_grad():
        for _ in range(steps):
            t0 = time.perf_counter()
            unet(x, t, ctx).sample
            times.append(time.perf_counter() - t0)
else:
    unet.requires_grad_(False)
    procs = {}
    for name, proc in unet.attn_processors.items():
        if name.endswith("attn2.processor"):
            block = name.rsplit(".", 2)[0]
            attn = unet.get_submodule(block + ".attn2")
            procs[name] = CustomDiffusionAttnProcessor(train_kv=True, train_q_out=False, hidden_size=attn.to_q.out_features, cross_attention_dim=768)
            procs[name].to_k_custom_diffusion.weight.data = attn.to_k.weight.data.clone()
            procs[name].to_v_custom_diffusion.weight.data = attn.to_v.weight.data.clone()
        else:
            procs[name] = proc
    unet.set_attn_processor(procs)
    params = [p for n, p in unet.named_parameters() if "custom_diffusion" in n and ("to_k" in n or "to_v" in n)]
    for p in params:
        p.requires_grad_(True)
    if case == "step-ckpt":
        unet.train()
        unet.enable_gradient_checkpointing()
    opt = torch.optim.AdamW(params, lr=1e-5)
    for _ in range(steps):
        t0 = time.perf_counter()
        loss = torch.nn.functional.mse_loss(unet(x, t, ctx).sample, target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
timed = times[1:] if len(times) > 1 else times
print(json.dumps({
    "case": case, "size": size, "engine": "pytorch", "ms": statistics.median(timed) * 1000,
    "peakRssMB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "steps": steps, "threads": torch.get_num_threads(),
}))
