#!/usr/bin/env python3
"""The peer of bench/embed: sentence-transformers' SentenceTransformer with the
all-MiniLM-L6-v2 architecture (BertModel, mean pooling, Normalize) and random weights, on
the GPU in fp16, batches of --batch texts of --len tokens.
Sequences/s of model.forward on pre-tokenised batches (tokenisation is not timed, as in
bench/embed). Run on the same card in the same session as bench/embed.

  python3 bench/embed_peers.py [--batch 256] [--len 128] [--batches 20]
"""
import argparse
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--len", type=int, default=128)
    ap.add_argument("--batches", type=int, default=20)
    a = ap.parse_args()
    import os
    import shutil
    import tempfile
    import torch
    import sentence_transformers
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel
    # A folder that sentence-transformers loads as it would all-MiniLM-L6-v2: the architecture
    # with random weights, and a BERT tokenizer (the golden tiny embedder's: tokenisation is
    # not timed, its vocabulary does not matter).
    here = os.path.dirname(os.path.abspath(__file__))
    tok_dir = os.path.join(here, "..", "tests", "golden", "models", "bert_embed")
    folder = tempfile.mkdtemp(prefix="embed_peer_")
    cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6,
                     num_attention_heads=12, intermediate_size=1536,
                     max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(cfg, add_pooling_layer=False).save_pretrained(folder)
    for f in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        shutil.copy(os.path.join(tok_dir, f), folder)
    word = models.Transformer(folder, max_seq_length=256)
    pool = models.Pooling(384, pooling_mode="mean")
    model = SentenceTransformer(modules=[word, pool, models.Normalize()], device="cuda").half()
    model.eval()
    ids = torch.randint(1000, 29000, (a.batch, a.len), device="cuda")
    ids[:, 0], ids[:, -1] = 101, 102
    feats = {"input_ids": ids, "attention_mask": torch.ones_like(ids),
             "token_type_ids": torch.zeros_like(ids)}
    with torch.inference_mode():
        model(dict(feats))
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(a.batches):
            out = model(dict(feats))["sentence_embedding"]
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
    print("embed peers: sentence-transformers %s, torch %s, %s, %d texts of %d tokens" %
          (sentence_transformers.__version__, torch.__version__, torch.cuda.get_device_name(0),
           a.batch, a.len))
    print("headline: %.0f sequences/s (%s)" % (a.batch * a.batches / dt, tuple(out.shape)))
    shutil.rmtree(folder)


if __name__ == "__main__":
    main()
