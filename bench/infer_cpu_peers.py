#!/usr/bin/env python3
"""The peer of bench/infer_cpu: PyTorch (transformers' LlamaForCausalLM) on the CPU, the
same shapes with random weights, bf16 and f32, prefill and decode tokens/s for the thread
counts given. Run on the same machine in the same session as infer_cpu.

  python3 bench/infer_cpu_peers.py [--shapes smollm2-135m,llama-3.2-1b] [--threads 1,2,0]
                                   [--prefill 128] [--decode 32]
"""
import argparse
import os
import time

SHAPES = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         intermediate_size=1536, tie_word_embeddings=True,
                         rope_theta=100000.0),
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         intermediate_size=8192, tie_word_embeddings=True,
                         rope_theta=500000.0),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--threads", default="1,2,0")
    ap.add_argument("--prefill", type=int, default=128)
    ap.add_argument("--decode", type=int, default=32)
    a = ap.parse_args()
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    print("infer_cpu peers: torch %s, transformers %s, %d CPUs" %
          (torch.__version__, transformers.__version__, os.cpu_count()))
    print("%-13s %-9s %7s %11s %10s" % ("model", "dtype", "threads", "prefill t/s", "decode t/s"))
    for name in a.shapes.split(","):
        cfg = LlamaConfig(**SHAPES[name], max_position_embeddings=4096)
        for dt in a.dtypes.split(","):
            torch.manual_seed(0)
            model = LlamaForCausalLM(cfg).to(getattr(torch, dt)).eval()
            ids = torch.randint(0, cfg.vocab_size, (1, a.prefill + a.decode + 17))
            for t in a.threads.split(","):
                n = int(t) or os.cpu_count()
                torch.set_num_threads(n)
                with torch.inference_mode():
                    best = 1e30
                    for _ in range(2):
                        t0 = time.perf_counter()
                        model(ids[:, :a.prefill], use_cache=True)
                        best = min(best, time.perf_counter() - t0)
                    out = model(ids[:, :16], use_cache=True)
                    past = out.past_key_values
                    out = model(ids[:, 16:17], past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    t0 = time.perf_counter()
                    for i in range(a.decode):
                        out = model(ids[:, 17 + i:18 + i], past_key_values=past, use_cache=True)
                        past = out.past_key_values
                    dec = time.perf_counter() - t0
                print("%-13s %-9s %7d %11.1f %10.2f" % (name, dt, n, a.prefill / best,
                                                        a.decode / dec), flush=True)


if __name__ == "__main__":
    main()
