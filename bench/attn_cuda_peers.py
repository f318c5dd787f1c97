#!/usr/bin/env python3
"""bench/attn_cuda's peer: PyTorch's scaled_dot_product_attention (bf16, causal, the flash
backend, as transformers' Llama runs it under sdpa: the KV heads repeated to the query heads
first) at the same shapes, forward and backward timed apart, rates counted as bench/attn_cuda
counts them (forward 4 B H D x the causal pairs; backward 2.5 times that).

Usage: python3 bench/attn_cuda_peers.py [--shapes 135m,1b,8b] [--seq T] [--reps R]
"""
import argparse

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

SHAPES = {"135m": (8, 9, 3, 64), "1b": (4, 32, 8, 64), "8b": (1, 32, 8, 128),
          "124m": (16, 12, 12, 64)}


def timed(fn, reps):
    best = float("inf")
    for _ in range(3):
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(reps):
            fn()
        b.record()
        torch.cuda.synchronize()
        best = min(best, a.elapsed_time(b) / reps)
    return best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="135m,1b,8b")
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=10)
    a = ap.parse_args()
    dev = torch.device("cuda")
    print(f"attn_cuda_peers: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; "
          f"sdpa flash backend, bf16, causal")
    for name in a.shapes.split(","):
        B, H, Hkv, D = SHAPES[name]
        T = a.seq
        g = torch.Generator(device=dev).manual_seed(1)
        q = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        k = torch.randn(B, Hkv, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        v = torch.randn(B, Hkv, T, D, device=dev, dtype=torch.bfloat16, generator=g)
        q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
        do = torch.randn(B, H, T, D, device=dev, dtype=torch.bfloat16, generator=g)

        def fwd():
            kr = k.repeat_interleave(H // Hkv, dim=1)
            vr = v.repeat_interleave(H // Hkv, dim=1)
            return F.scaled_dot_product_attention(q, kr, vr, is_causal=True)

        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            with torch.no_grad():
                fwd()
                tf = timed(fwd, a.reps)
            o = fwd()
            o.backward(do, retain_graph=True)

            def bwd():
                q.grad = k.grad = v.grad = None
                o.backward(do, retain_graph=True)

            tb = timed(bwd, a.reps)
        flop = 4.0 * B * H * D * T * (T + 1) / 2
        print(f"{name:5s} sdpa     {B:2d} x {T:5d}  {H:2d}/{Hkv:<2d} {D:4d}  {tf:9.3f} "
              f"{flop / tf * 1e-9:8.1f}  {tb:9.3f} {2.5 * flop / tb * 1e-9:8.1f}")


if __name__ == "__main__":
    main()
