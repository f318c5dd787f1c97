#!/usr/bin/env python3
"""The peer of bench/train --device cuda (bench/train_cuda.sh): PyTorch + transformers
(LlamaForCausalLM, sdpa attention) and PEFT on the same GPU, the same shapes with random
weights, one fixed batch of random ids: tokens/s of full training (f32 weights under bf16
autocast: PyTorch's mixed precision) and of LoRA on all seven projections over a bf16 base
(adapters in f32, PEFT's default), AdamW with the gradient norm clipped to 1, and the peak GPU
memory the process reserved. dpo: a DPO step of that LoRA model as TRL's sigmoid loss computes
it (beta 0.1; the reference is the model with its adapter disabled, under no_grad; the first
half of the rows chosen, the second rejected; every token an answer token). Run on the same card in the same session as bench/train.

  python3 bench/train_cuda_peers.py --shape llama-3.2-1b --modes lora --rank 32 --batch 4
                                    --seq 2048 [--steps 5] [--warmup 2]
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from infer_cuda_peers import SHAPES  # noqa: E402  the shapes infer_cuda's peer builds


def row_logps(logits, ids):
    import torch
    lp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    return lp.gather(-1, ids[:, 1:, None]).squeeze(-1).sum(-1)


def dpo_loss(model, ids, beta):
    import torch
    import torch.nn.functional as F
    n = ids.shape[0] // 2
    with torch.no_grad(), model.disable_adapter():
        ref = row_logps(model(input_ids=ids).logits, ids)
    pol = row_logps(model(input_ids=ids).logits, ids)
    z = beta * ((pol[:n] - ref[:n]) - (pol[n:] - ref[n:]))
    return -F.logsigmoid(z).mean()


def run(mode, a):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    dev = torch.device("cuda")
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_reserved()
    cfg = LlamaConfig(**SHAPES[a.shape], max_position_embeddings=8192,
                      attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(dev):
        model = LlamaForCausalLM(cfg)
    if mode in ("lora", "dpo"):
        from peft import LoraConfig, get_peft_model
        model = model.to(torch.bfloat16)
        lc = LoraConfig(r=a.rank, lora_alpha=a.rank, lora_dropout=0.0,
                        target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                        "up_proj", "down_proj"])
        model = get_peft_model(model, lc)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01 if mode == "full" else 0.0)
    ids = torch.randint(0, cfg.vocab_size, (a.batch, a.seq), device=dev)
    losses = []
    t_all = 0.0
    for s in range(a.warmup + a.steps):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        if mode == "dpo":
            loss = dpo_loss(model, ids, 0.1)
        else:
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=mode == "full"):
                loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        if s >= a.warmup:
            t_all += time.perf_counter() - t0
        losses.append(loss.item())
    n_tok = a.batch * a.seq * a.steps
    peak = (torch.cuda.max_memory_reserved() - base_mem) / 2**20
    alloc = torch.cuda.max_memory_allocated() / 2**20
    print("%-6s %-13s %9.1f %10.1f %8.4f %8.4f %10.1f %10.1f" %
          (mode, a.shape, 1e3 * t_all / a.steps, n_tok / t_all, losses[0], losses[-1], peak,
           alloc))
    sys.stdout.flush()
    del model, opt, params
    torch.cuda.empty_cache()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shape", default="llama-3.2-1b")
    ap.add_argument("--modes", default="lora")
    ap.add_argument("--rank", type=int, default=32)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=2048)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2)
    a = ap.parse_args()
    import peft
    import torch
    import transformers
    print("train_cuda peers: torch %s, transformers %s, peft %s, %s; batch %d x %d, LoRA r=%d" %
          (torch.__version__, transformers.__version__, peft.__version__,
           torch.cuda.get_device_name(0), a.batch, a.seq, a.rank))
    print("%-6s %-13s %9s %10s %8s %8s %10s %10s" %
          ("mode", "shape", "ms/step", "tokens/s", "loss[0]", "loss[-1]", "peak MiB",
           "alloc MiB"))
    for mode in a.modes.split(","):
        run(mode, a)


if __name__ == "__main__":
    main()
