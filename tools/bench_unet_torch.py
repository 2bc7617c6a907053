#!/usr/bin/env python3
"""Time augment's denoiser U-Net (models/unet.cpp) in plain PyTorch eager, to compare with bench_unet.

Same layers, widths, GroupNorm group rule, zero inits and parameter count as the C++ U-Net, so
PyTorch can be timed against LibTorch's `build/bench_unet` on one model. Per precision: training
steps (forward, MSE to a random target, backward, AdamW) and no_grad denoiser forwards, one
warm-up then --iters timed each; prints one JSON object with bench_unet's field names.

  /usr/bin/python3 tools/bench_unet_torch.py [--config ref32] [--conditioning cfg] [--batch 64]
      [--iters 3] [--device cpu|cuda] [--precisions fp32,bf16] [--channels-last] [--threads N]
"""
import argparse
import json
import math
import os
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

# UNetConfig::named in models/unet.cpp (the defaults of UNetConfig fill in heads and dropout).
CONFIGS = {"ref32": dict(in_channels=3, resolution=32, base_channels=64, channel_mult=(1, 2, 2), blocks=2,
                         attention_resolutions=(16,), heads=4, dropout=0.1, num_classes=10)}


def group_count(channels):  # groups of at least two channels, at most 32 (as unet.cpp)
    g = min(32, max(1, channels // 2))
    while channels % g:
        g -= 1
    return g


def timestep_embedding(t, dim, max_period=10000.0):
    """t [N] -> [N, dim]: cos half, then sin half (zero-padded for odd dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], 1)
    return F.pad(emb, (0, 1)) if dim % 2 else emb


conv3x3 = lambda cin, cout, stride=1: nn.Conv2d(cin, cout, 3, stride=stride, padding=1)


def zero_(module):  # unet.cpp's zero_parameters
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class Norm(nn.Module):
    """GroupNorm (eps 1e-5, affine cast to the input type as unet.cpp does under CPU autocast), or
    for cbn a batch norm without affine whose scale and shift come from the class embedding."""

    def __init__(self, channels, conditioning, emb_dim):
        super().__init__()
        self.groups = group_count(channels)
        self.cbn = conditioning == "cbn"
        if self.cbn:
            self.modulation = zero_(nn.Linear(emb_dim, 2 * channels))  # starts as the plain norm
            self.register_buffer("running_mean", torch.zeros(channels))
            self.register_buffer("running_var", torch.ones(channels))
        else:
            self.weight = nn.Parameter(torch.ones(channels))
            self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x, cond):
        if not self.cbn:
            return F.group_norm(x, self.groups, self.weight.to(x.dtype), self.bias.to(x.dtype), 1e-5)
        h = F.batch_norm(x.float(), self.running_mean, self.running_var, None, None, self.training, 0.1, 1e-5)
        h = h.to(x.dtype)
        gamma, beta = self.modulation(cond[1]).to(x.dtype)[:, :, None, None].chunk(2, 1)
        return h * (gamma + 1) + beta


class Conv(nn.Module):
    """unet.cpp's ConvIn (stride 1), Downsample (stride 2) and Upsample (nearest x2, then conv)."""

    def __init__(self, cin, cout, stride=1, up=False):
        super().__init__()
        self.conv, self.up = conv3x3(cin, cout, stride), up

    def forward(self, x, cond):
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest") if self.up else x)


class ResBlock(nn.Module):
    def __init__(self, cin, cout, emb_dim, cfg, conditioning):
        super().__init__()
        self.norm1 = Norm(cin, conditioning, emb_dim)
        self.conv1 = conv3x3(cin, cout)
        self.emb_proj = nn.Linear(emb_dim, cout)
        self.norm2 = Norm(cout, conditioning, emb_dim)
        self.dropout = cfg["dropout"]
        self.conv2 = zero_(conv3x3(cout, cout))  # each block starts as the identity
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x, cond):
        h = self.conv1(F.silu(self.norm1(x, cond)))
        h = h + self.emb_proj(F.silu(cond[0])).to(h.dtype)[:, :, None, None]
        h = self.conv2(F.dropout(F.silu(self.norm2(h, cond)), self.dropout, self.training))
        return (self.skip(x) if self.skip is not None else x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the H*W positions of [N, HW, C] tokens."""

    def __init__(self, channels, heads, emb_dim, conditioning):
        super().__init__()
        self.channels, self.heads = channels, heads
        self.norm = Norm(channels, conditioning, emb_dim)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj = zero_(nn.Linear(channels, channels))

    def forward(self, x, cond):
        n, c, h, w = x.shape
        d = c // self.heads
        tokens = self.norm(x, cond).permute(0, 2, 3, 1).reshape(n, h * w, c)
        qkv = self.qkv(tokens).view(n, h * w, 3, self.heads, d).permute(2, 0, 3, 1, 4)  # [3, N, heads, HW, d]
        weights = torch.softmax(torch.matmul(qkv[0] * (1.0 / math.sqrt(d)), qkv[1].transpose(-1, -2)), -1)
        out = torch.matmul(weights.to(qkv.dtype), qkv[2])  # [N, heads, HW, d]
        out = self.proj(out.permute(0, 2, 1, 3).reshape(n, h * w, c))
        return x + out.view(n, h, w, c).permute(0, 3, 1, 2).to(x.dtype)


class UNet(nn.Module):
    def __init__(self, cfg, conditioning="cfg"):
        super().__init__()
        self.cfg, self.conditioning = cfg, conditioning
        mc, res, heads, k = cfg["base_channels"], cfg["resolution"], cfg["heads"], cfg["num_classes"]
        emb_dim = 4 * mc
        self.time_fc1, self.time_fc2 = nn.Linear(mc, emb_dim), nn.Linear(emb_dim, emb_dim)
        if conditioning in ("cfg", "cbn"):  # cfg: one extra "null" label (index num_classes)
            self.label_emb = nn.Embedding(k + 1 if conditioning == "cfg" else k, emb_dim)
        if conditioning == "ac":
            self.label_plane = nn.Embedding(k, res * res)
        res_block = lambda a, b: ResBlock(a, b, emb_dim, cfg, conditioning)
        attn = lambda c: AttentionBlock(c, heads, emb_dim, conditioning)
        has_attn = lambda ds: res // ds in cfg["attention_resolutions"]
        mult, levels = cfg["channel_mult"], len(cfg["channel_mult"])

        ch = mc * mult[0]
        self.input_blocks = nn.ModuleList([nn.ModuleList([Conv(cfg["in_channels"] + (conditioning == "ac"), ch)])])
        skips, ds = [ch], 1
        for level in range(levels):
            for _ in range(cfg["blocks"]):
                block, ch = [res_block(ch, mc * mult[level])], mc * mult[level]
                self.input_blocks.append(nn.ModuleList(block + ([attn(ch)] if has_attn(ds) else [])))
                skips.append(ch)
            if level + 1 < levels:  # downsample
                self.input_blocks.append(nn.ModuleList([Conv(ch, ch, 2)]))
                skips.append(ch)
                ds *= 2
        self.middle = nn.ModuleList([res_block(ch, ch), attn(ch), res_block(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level in reversed(range(levels)):
            for b in range(cfg["blocks"] + 1):  # the decoder has one block more per level
                block, ch = [res_block(ch + skips.pop(), mc * mult[level])], mc * mult[level]
                block += [attn(ch)] if has_attn(ds) else []
                if level > 0 and b == cfg["blocks"]:
                    block.append(Conv(ch, ch, up=True))
                    ds //= 2
                self.output_blocks.append(nn.ModuleList(block))
        self.out_norm = Norm(ch, conditioning, emb_dim)
        self.out_conv = zero_(conv3x3(ch, cfg["in_channels"]))

    @staticmethod
    def run(block, h, cond):
        for layer in block:
            h = layer(h, cond)
        return h

    def forward(self, x, t, y):
        emb = self.time_fc2(F.silu(self.time_fc1(timestep_embedding(t, self.cfg["base_channels"]))))
        if self.conditioning == "cfg":
            emb = emb + self.label_emb(y)
        cond, h = (emb, self.label_emb(y) if self.conditioning == "cbn" else None), x  # (emb, class_emb)
        if self.conditioning == "ac":
            r = self.cfg["resolution"]
            h = torch.cat([x, self.label_plane(y).view(-1, 1, r, r).to(x.dtype)], 1)
        skips = []
        for block in self.input_blocks:
            h = self.run(block, h, cond)
            skips.append(h)
        h = self.run(self.middle, h, cond)
        for block in self.output_blocks:
            h = self.run(block, torch.cat([h, skips.pop().to(h.dtype)], 1), cond)
        return self.out_conv(F.silu(self.out_norm(h, cond)))


def measure(cfg, args, device, precision):
    torch.manual_seed(0)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = UNet(cfg, args.conditioning).to(device, memory_format=fmt)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    r = cfg["resolution"]
    x = torch.randn(args.batch, cfg["in_channels"], r, r, device=device).contiguous(memory_format=fmt)
    target = torch.randn_like(x)
    t = torch.randint(1000, (args.batch,), device=device)
    y = torch.randint(cfg["num_classes"], (args.batch,), device=device)
    autocast = lambda: torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def timed(step, iters):
        step()  # warm-up
        sync()
        start = time.perf_counter()
        for _ in range(iters):
            step()
        sync()  # CUDA: wait for the queued kernels before reading the clock
        return args.batch * iters / (time.perf_counter() - start)

    def train_step():
        with autocast():
            out = net(x, t, y)
        loss = (out.float() - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    def denoise():
        with autocast():
            return net(x, t, y)

    net.train()  # dropout on, as bench_unet trains
    train = timed(train_step, args.iters)
    net.eval()
    with torch.no_grad():
        return {"train_images_per_s": train, "denoise_images_per_s": timed(denoise, args.iters)}


def cpu_model():
    with open("/proc/cpuinfo") as f:
        return next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="ref32", choices=sorted(CONFIGS))
    p.add_argument("--conditioning", default="cfg", choices=["cfg", "none", "ac", "cbn"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=os.cpu_count())  # bench_unet: all cores by default
    args = p.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device, cfg = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu"), CONFIGS[args.config]
    out = {"implementation": "pytorch_eager", "torch_version": torch.__version__, "config": args.config,
           "conditioning": args.conditioning,
           "parameters": sum(q.numel() for q in UNet(cfg, args.conditioning).parameters()),
           "batch": args.batch, "iterations": args.iters, "device": str(device),
           "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model(),
           "threads": torch.get_num_threads(), "cpu": cpu_model(), "results": []}
    for prec in args.precisions.split(","):
        row = {"precision": prec, "memory_format": "channels_last" if args.channels_last else "contiguous"}
        try:
            if prec not in ("fp32", "bf16"):
                raise ValueError(f"precision must be fp32 or bf16, not {prec!r}")
            row.update(measure(cfg, args, device, prec))
        except Exception as e:  # e.g. an op without a bf16 kernel in this torch: report, keep going
            row["error"] = f"{type(e).__name__}: {e}"
        out["results"].append(row)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
