# PyTorch baseline for bench/world_step.ts: the small world's UNet (same blocks and sizes as the project's
# UNet2DConditionModel config) and text encoder, one AdamW training step at the recipe's batch size.
# Self-contained (plain torch); prints one JSON line with the median step time.
import json, math, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
batch = int(sys.argv[2]) if len(sys.argv) > 2 else 64
vocab = int(sys.argv[3]) if len(sys.argv) > 3 else 160
torch.set_num_threads(threads)
torch.manual_seed(0)

class Resnet(nn.Module):
    def __init__(s, cin, cout, temb, groups):
        super().__init__()
        s.norm1 = nn.GroupNorm(groups, cin, eps=1e-5); s.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        s.time_emb_proj = nn.Linear(temb, cout)
        s.norm2 = nn.GroupNorm(groups, cout, eps=1e-5); s.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        s.short = nn.Conv2d(cin, cout, 1) if cin != cout else None
    def forward(s, x, t):
        h = s.conv1(F.silu(s.norm1(x))) + s.time_emb_proj(F.silu(t))[:, :, None, None]
        h = s.conv2(F.silu(s.norm2(h)))
        return (s.short(x) if s.short is not None else x) + h

class Attn(nn.Module):
    def __init__(s, q, ctx, heads):
        super().__init__()
        s.h = heads; inner = q
        s.to_q = nn.Linear(q, inner, bias=False); s.to_k = nn.Linear(ctx, inner, bias=False); s.to_v = nn.Linear(ctx, inner, bias=False)
        s.to_out = nn.Linear(inner, q)
    def forward(s, x, c=None):
        c = x if c is None else c
        b, l, d = x.shape; h = s.h
        q = s.to_q(x).view(b, l, h, -1).transpose(1, 2); k = s.to_k(c).view(b, c.shape[1], h, -1).transpose(1, 2); v = s.to_v(c).view(b, c.shape[1], h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, -1) @ v
        return s.to_out(a.transpose(1, 2).reshape(b, l, d))

class Transformer(nn.Module):
    def __init__(s, ch, ctx, heads, groups):
        super().__init__()
        s.norm = nn.GroupNorm(groups, ch, eps=1e-6); s.proj_in = nn.Conv2d(ch, ch, 1); s.proj_out = nn.Conv2d(ch, ch, 1)
        s.n1 = nn.LayerNorm(ch); s.a1 = Attn(ch, ch, heads); s.n2 = nn.LayerNorm(ch); s.a2 = Attn(ch, ctx, heads)
        s.n3 = nn.LayerNorm(ch); s.geglu = nn.Linear(ch, ch * 8); s.ff_out = nn.Linear(ch * 4, ch)
    def forward(s, x, c):
        b, ch, hh, ww = x.shape
        h = s.proj_in(s.norm(x)).permute(0, 2, 3, 1).reshape(b, hh * ww, ch)
        h = h + s.a1(s.n1(h)); h = h + s.a2(s.n2(h), c)
        g, gate = s.geglu(s.n3(h)).chunk(2, -1); h = h + s.ff_out(g * F.gelu(gate))
        return s.proj_out(h.reshape(b, hh, ww, ch).permute(0, 3, 1, 2)) + x

class UNet(nn.Module):
    # block_out_channels (32, 64, 128), layers_per_block 1, cross-attention at the two lower levels and mid
    def __init__(s, ch=(32, 64, 128), ctx=64, heads=4, groups=16):
        super().__init__()
        temb = ch[0] * 4
        s.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        s.l1 = nn.Linear(ch[0], temb); s.l2 = nn.Linear(temb, temb)
        s.down_res = nn.ModuleList([Resnet(ch[max(i - 1, 0)] if i else ch[0], ch[i], temb, groups) for i in range(3)])
        s.down_attn = nn.ModuleList([nn.Identity(), Transformer(ch[1], ctx, heads, groups), Transformer(ch[2], ctx, heads, groups)])
        s.down_samp = nn.ModuleList([nn.Conv2d(ch[0], ch[0], 3, 2, 1), nn.Conv2d(ch[1], ch[1], 3, 2, 1)])
        s.mid1 = Resnet(ch[2], ch[2], temb, groups); s.mida = Transformer(ch[2], ctx, heads, groups); s.mid2 = Resnet(ch[2], ch[2], temb, groups)
        rch = ch[::-1]
        s.up_res = nn.ModuleList(); s.up_attn = nn.ModuleList(); s.up_samp = nn.ModuleList()
        skips = [ch[0], ch[0], ch[0], ch[1], ch[1], ch[2]]  # conv_in, down0 res, down0 sample, down1 res, down1 sample, down2 res
        for i in range(3):
            prev = rch[max(i - 1, 0)]; out = rch[i]; res = []
            for j in range(2):
                skip = skips.pop(); cin = prev if j == 0 else out
                res.append(Resnet(cin + skip, out, temb, groups))
            s.up_res.append(nn.ModuleList(res))
            s.up_attn.append(nn.ModuleList([Transformer(out, ctx, heads, groups) for _ in range(2)]) if i < 2 else None)
            s.up_samp.append(nn.Conv2d(out, out, 3, padding=1) if i < 2 else None)
        s.norm_out = nn.GroupNorm(groups, ch[0]); s.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)
    def forward(s, x, t, c):
        half = 16; freqs = torch.exp(-math.log(10000) * torch.arange(half) / half)
        e = t[:, None].float() * freqs[None]; e = torch.cat([e.cos(), e.sin()], -1)
        temb = s.l2(F.silu(s.l1(e)))
        h = s.conv_in(x); skips = [h]
        for i in range(3):
            h = s.down_res[i](h, temb)
            if i > 0: h = s.down_attn[i](h, c)
            skips.append(h)
            if i < 2: h = s.down_samp[i](h); skips.append(h)
        h = s.mid2(s.mida(s.mid1(h, temb), c), temb)
        for i in range(3):
            for j in range(2):
                h = s.up_res[i][j](torch.cat([h, skips.pop()], 1), temb)
                if s.up_attn[i] is not None: h = s.up_attn[i][j](h, c)
            if s.up_samp[i] is not None: h = s.up_samp[i](F.interpolate(h, scale_factor=2, mode="nearest"))
        return s.conv_out(F.silu(s.norm_out(h)))

class TextEncoder(nn.Module):
    def __init__(s, vocab, d=64, layers=2, heads=4, length=16):
        super().__init__()
        s.tok = nn.Embedding(vocab, d); s.pos = nn.Embedding(length, d)
        s.layers = nn.ModuleList([nn.ModuleDict({"n1": nn.LayerNorm(d), "q": nn.Linear(d, d), "k": nn.Linear(d, d), "v": nn.Linear(d, d), "o": nn.Linear(d, d),
                                                  "n2": nn.LayerNorm(d), "fc1": nn.Linear(d, 4 * d), "fc2": nn.Linear(4 * d, d)}) for _ in range(layers)])
        s.final = nn.LayerNorm(d); s.h = heads
    def forward(s, ids):
        b, l = ids.shape
        x = s.tok(ids) + s.pos.weight[:l]
        mask = torch.full((l, l), float("-inf")).triu(1)
        for L in s.layers:
            y = L["n1"](x)
            q, k, v = [L[n](y).view(b, l, s.h, -1).transpose(1, 2) for n in ("q", "k", "v")]
            a = torch.softmax(q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5 + mask, -1) @ v
            x = x + L["o"](a.transpose(1, 2).reshape(b, l, -1))
            y = L["fc1"](L["n2"](x)); x = x + L["fc2"](y * torch.sigmoid(1.702 * y))
        return s.final(x)

unet, te = UNet(), TextEncoder(vocab)
params = list(unet.parameters()) + list(te.parameters())
opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01)
x0 = torch.randn(batch, 3, 16, 16); ids = torch.randint(0, vocab, (batch, 16))
times = []
for step in range(4):
    t0 = time.perf_counter()
    noise = torch.randn_like(x0); t = torch.randint(0, 1000, (batch,))
    loss = F.mse_loss(unet(x0 + noise, t, te(ids)), noise)
    opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(params, 1.0); opt.step()
    if step > 0: times.append((time.perf_counter() - t0) * 1000)
times.sort()
print(json.dumps({"ms": times[len(times) // 2], "params": sum(p.numel() for p in unet.parameters()), "threads": threads, "torch": torch.__version__}))
