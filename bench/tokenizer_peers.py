#!/usr/bin/env python3
"""bench/tokenizer's peers, measured in the same run on the same machine: HF tokenizers (every
tokenizer) and tiktoken (gpt4o, its encoding built from the same tokenizer.json), single-thread
encode throughput over the State of the Union corpus, next to twin's (it runs
build/bench/tokenizer and reads its table). Prints one table; the last line is the headline.

  python3 bench/tokenizer_peers.py --twin build/bench/tokenizer --data .cache/data
"""
import argparse
import glob
import json
import os
import subprocess
import time

os.environ.setdefault("RAYON_NUM_THREADS", "1")  # HF's encode of one text is single-threaded
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + \
        list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def best_of(fn, docs, runs=3):
    best, ntok = 1e30, 0
    for _ in range(runs):
        t0 = time.perf_counter()
        ntok = sum(len(fn(d)) for d in docs)
        best = min(best, time.perf_counter() - t0)
    return best, ntok


def tiktoken_from_json(path):
    import tiktoken
    d = json.load(open(path, encoding="utf-8"))
    dec = {v: k for k, v in bytes_to_unicode().items()}
    ranks = {bytes(dec[c] for c in tok): i for tok, i in d["model"]["vocab"].items()}
    pat = d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"]
    return tiktoken.Encoding(name="gpt4o-json", pat_str=pat, mergeable_ranks=ranks,
                             special_tokens={a["content"]: a["id"] for a in d["added_tokens"]})


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--twin", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--names", default="llama2,llama3,qwen3,gemma3,gpt4o")
    a = ap.parse_args()
    names = a.names.split(",")
    out = subprocess.run([a.twin, a.data] + names, check=True, capture_output=True,
                         text=True).stdout
    print(out, end="")
    twin = {}
    for line in out.splitlines():
        f = line.split()
        if f and f[0] in names:
            twin[f[0]] = float(f[2])
    from tokenizers import Tokenizer
    import tokenizers
    files = sorted(glob.glob(os.path.join(a.data, "sotu", "*.txt")))
    docs = [open(p, encoding="utf-8").read() for p in files]
    nbytes = sum(len(d.encode("utf-8")) for d in docs)
    print("\npeers (tokenizers %s), single thread, best of 3:" % tokenizers.__version__)
    print("%-9s %-22s %10s %12s %12s" % ("tokenizer", "peer", "MB/s", "twin MB/s", "twin/peer"))
    ratios = []
    for name in names:
        tok = Tokenizer.from_file(os.path.join(a.data, "tokenizers", name, "tokenizer.json"))
        dt, ntok = best_of(lambda d: tok.encode(d, add_special_tokens=False).ids, docs)
        mbs = nbytes / dt / 1e6
        ratios.append((twin[name] / mbs, name, "HF tokenizers"))
        print("%-9s %-22s %10.2f %12.2f %12.2f" % (name, "HF tokenizers", mbs, twin[name],
                                                    twin[name] / mbs))
        if name == "gpt4o":
            enc = tiktoken_from_json(os.path.join(a.data, "tokenizers", name, "tokenizer.json"))
            same = sum(enc.encode_ordinary(d) == tok.encode(d, add_special_tokens=False).ids
                       for d in docs)
            dt, _ = best_of(enc.encode_ordinary, docs)
            mbs = nbytes / dt / 1e6
            ratios.append((twin[name] / mbs, name, "tiktoken"))
            print("%-9s %-22s %10.2f %12.2f %12.2f   (tiktoken ids equal HF's on %d/%d docs)"
                  % (name, "tiktoken", mbs, twin[name], twin[name] / mbs, same, len(docs)))
    worst = min(r for r in ratios if r[2] == "HF tokenizers")
    tik = [r for r in ratios if r[2] == "tiktoken"]
    print("\nheadline: twin / HF tokenizers single-thread, lowest %.2fx (%s); twin / tiktoken "
          "(gpt4o) %s" % (worst[0], worst[1], ("%.2fx" % tik[0][0]) if tik else "n/a"))


if __name__ == "__main__":
    main()
