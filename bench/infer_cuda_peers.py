#!/usr/bin/env python3
"""The peer of bench/infer_cuda: PyTorch + transformers (LlamaForCausalLM, bf16, sdpa
attention) on the same GPU, the same shapes with random weights: prefill tokens/s of one
forward over the prompt, and decode tokens/s of `generate` with a static KV cache (greedy,
min_new_tokens = max_new_tokens so that it never stops early). Run on the same card in the
same session as infer_cuda.

  python3 bench/infer_cuda_peers.py [--shapes smollm2-135m,llama-3.2-1b,llama-3.1-8b]
                                    [--prefill 2048] [--decode 128]
"""
import argparse
import time

SHAPES = {
    "smollm2-135m": dict(vocab_size=49152, hidden_size=576, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, head_dim=64,
                         intermediate_size=1536, tie_word_embeddings=True,
                         rope_theta=100000.0),
    "llama-3.2-1b": dict(vocab_size=128256, hidden_size=2048, num_hidden_layers=16,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=64,
                         intermediate_size=8192, tie_word_embeddings=True,
                         rope_theta=500000.0,
                         rope_scaling=dict(rope_type="llama3", factor=32.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
    # GPT-2 small's dimensions (llm.c's 124M) as a Llama (src/model/shapes.c)
    "llama-124m": dict(vocab_size=50304, hidden_size=768, num_hidden_layers=12,
                       num_attention_heads=12, num_key_value_heads=12, head_dim=64,
                       intermediate_size=2048, tie_word_embeddings=True, rope_theta=10000.0),
    "llama-3.1-8b": dict(vocab_size=128256, hidden_size=4096, num_hidden_layers=32,
                         num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                         intermediate_size=14336, tie_word_embeddings=False,
                         rope_theta=500000.0,
                         rope_scaling=dict(rope_type="llama3", factor=8.0, low_freq_factor=1.0,
                                           high_freq_factor=4.0,
                                           original_max_position_embeddings=8192)),
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shapes", default="smollm2-135m,llama-3.2-1b,llama-3.1-8b")
    ap.add_argument("--prefill", type=int, default=2048)
    ap.add_argument("--decode", type=int, default=128)
    a = ap.parse_args()
    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM
    dev = torch.device("cuda")
    print("infer_cuda peers: torch %s, transformers %s, %s" %
          (torch.__version__, transformers.__version__, torch.cuda.get_device_name(0)))
    print("%-13s %-9s %11s %10s" % ("model", "dtype", "prefill t/s", "decode t/s"))
    for name in a.shapes.split(","):
        cfg = LlamaConfig(**SHAPES[name], max_position_embeddings=8192,
                          attn_implementation="sdpa")
        torch.manual_seed(0)
        with torch.device(dev):
            model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
        ids = torch.randint(0, cfg.vocab_size, (1, a.prefill), device=dev)
        with torch.inference_mode():
            best = 1e30
            for rep in range(3):
                torch.cuda.synchronize()
                t0 = time.perf_counter()
                model(ids, use_cache=False, logits_to_keep=1)
                torch.cuda.synchronize()
                if rep > 0:
                    best = min(best, time.perf_counter() - t0)
            prompt = ids[:, :16]
            kw = dict(do_sample=False, cache_implementation="static", pad_token_id=0)
            # Warm-up with the same lengths: a static cache of another size recompiles.
            model.generate(prompt, max_new_tokens=a.decode, min_new_tokens=a.decode, **kw)
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            model.generate(prompt, max_new_tokens=a.decode, min_new_tokens=a.decode, **kw)
            torch.cuda.synchronize()
            dec = time.perf_counter() - t0
        print("%-13s %-9s %11.0f %10.1f" % (name, "bfloat16", a.prefill / best, a.decode / dec),
              flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
