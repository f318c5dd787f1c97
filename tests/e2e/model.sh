#!/usr/bin/env bash
# End to end: the model verbs (model info, generate, chat, embed, rerank, convert) on the
# golden tiny models of tests/golden/models, and their errors.
# usage: model.sh PATH/TO/twin   (TWIN_SOURCE_DIR: the source tree)
set -u
twin=$1
src=${TWIN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
models="$src/tests/golden/models"
tmp=$(mktemp -d /tmp/twin-e2e-model-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"

expected() { # expected MODEL KEY: a value of expected.json (lists space-separated)
    python3 - "$models/$1/expected.json" "$2" <<'PY'
import json, sys
v = json.load(open(sys.argv[1]))[sys.argv[2]]
sys.stdout.write(" ".join(map(str, v)) if isinstance(v, list) else str(v))
PY
}

check "info" 0 "$twin" model info "$models/llama"
contains "info arch" "LlamaForCausalLM"
contains "info rope" "llama3 scaling"
contains "info template" "chat template: llama3"
check "info bert" 0 "$twin" model info "$models/bert_embed"
contains "info pooling" "pooling:       mean, normalised, max 128 tokens"

# Greedy generation equals transformers' 64 greedy tokens, decoded.
for m in llama qwen3 mistral; do
    prompt=$(expected $m prompt)
    ids=$(expected $m greedy_ids)
    want=$("$twin" tokenize --tokenizer "$models/$m" --decode --skip-special "$ids")
    check "generate $m" 0 "$twin" generate --model "$models/$m" --temp 0 -n 64 --ignore-eos \
        --quiet "$prompt"
    equals "generate $m text" "$want"
done
check "generate stats" 0 "$twin" generate --model "$models/smollm2" --temp 0.7 --seed 3 -n 8 "We"
contains "generate stats line" "generated 8 tokens"
# --device: the CPU by name gives the same greedy text; a GPU that is not there is an error.
want=$("$twin" tokenize --tokenizer "$models/llama" --decode --skip-special \
    "$(expected llama greedy_ids)")
check "generate --device cpu" 0 "$twin" generate --device cpu --model "$models/llama" --temp 0 \
    -n 64 --ignore-eos --quiet "$(expected llama prompt)"
equals "generate --device cpu text" "$want"
if ! command -v nvidia-smi >/dev/null; then
    check "generate --device cuda:7 without it" 1 "$twin" generate --device cuda:7 \
        --model "$models/llama" -n 2 "Hi"
    contains "no such GPU named" "cuda"
fi
check "generate --device bad" 2 "$twin" generate --device gpu0 --model "$models/llama" "Hi"
check "generate stdin" 0 sh -c "echo 'The Union' | '$twin' generate --model '$models/smollm2' -n 4 --quiet"

# Chat: the second turn reuses the first turn's cache.
check "chat" 0 sh -c "printf 'What of jobs?\nAnd taxes?\n/exit\n' | '$twin' chat --model '$models/qwen3' --temp 0 -n 6 --system 'Be brief.'"
holds "chat reuse" python3 -c '
import re, sys
cached = [int(a) for a, b in re.findall(r"(\d+) of (\d+) prompt tokens cached", sys.stdin.read())]
sys.exit(not (len(cached) == 2 and cached[0] == 0 and cached[1] > 10))'

# Embeddings: normalised, one line per item, ids echoed.
printf '"We the people"\n\n{"id": "a", "text": "jobs and the economy"}\n' >"$tmp/in.jsonl"
check "embed" 0 "$twin" embed --model "$models/bert_embed" --input "$tmp/in.jsonl"
holds "embed vectors" python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines() if l.startswith("{")]
ok = len(rows) == 2 and rows[1]["id"] == "a" and rows[1]["index"] == 1
ok = ok and all(len(r["embedding"]) == 64 and abs(sum(x * x for x in r["embedding"]) - 1) < 1e-5 for r in rows)
sys.exit(not ok)'
printf '"fine"\n{"text": 3}\n' >"$tmp/bad.jsonl"
check "embed bad line" 1 "$twin" embed --model "$models/bert_embed" --input "$tmp/bad.jsonl"
contains "embed bad line names it" "bad.jsonl:2"
check "embed decoder" 1 "$twin" embed --model "$models/llama" --input "$tmp/in.jsonl"
contains "embed decoder message" "not a sentence embedder"

# Reranking: sentence-transformers' scores (the golden logits through a sigmoid).
q=$(expected bert_rerank query)
python3 -c '
import json, sys
for p in json.load(open(sys.argv[1]))["passages"]: print(json.dumps(p))' \
    "$models/bert_rerank/expected.json" >"$tmp/docs.jsonl"
check "rerank" 0 "$twin" rerank --model "$models/bert_rerank" --query "$q" --input "$tmp/docs.jsonl"
holds "rerank scores" python3 -c '
import json, math, struct, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines() if l.startswith("{")]
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]; h = json.loads(f.read(n))
data = f.read(); a, b = h["scores_sigmoid"]["data_offsets"]
want = struct.unpack("<%df" % ((b - a) // 4), data[a:b])
sys.exit(not (len(rows) == len(want) and all(abs(r["score"] - w) < 1e-5 for r, w in zip(rows, want))))' \
    "$models/bert_rerank/expected.safetensors"

# Convert: GGUF q8_0 generates; f32 GGUF back to HF gives the same greedy text.
check "convert q8_0" 0 "$twin" convert "$models/llama" "$tmp/l.gguf" --type q8_0
contains "convert says" "wrote $tmp/l.gguf (GGUF, q8_0)"
check "convert gguf exists" 1 "$twin" convert "$models/llama" "$tmp/l.gguf" --type q4_0
contains "convert gguf exists message" "exists already"
check "generate gguf" 0 "$twin" generate --model "$tmp/l.gguf" --temp 0 -n 8 --quiet "Jobs"
check "convert f32" 0 "$twin" convert "$models/qwen2" "$tmp/q.gguf" --type f32
check "convert back" 0 "$twin" convert "$tmp/q.gguf" "$tmp/q-hf"
check "generate converted back" 0 "$twin" generate --model "$tmp/q-hf" --temp 0 -n 24 --quiet "$(expected qwen2 prompt)"
b=$out
check "convert exists" 1 "$twin" convert "$tmp/q.gguf" "$tmp/q-hf"
contains "convert exists message" "exists already"
prompt=$(expected qwen2 prompt)
a=$("$twin" generate --model "$models/qwen2" --temp 0 -n 24 --quiet "$prompt")
check "generate converted gguf" 0 "$twin" generate --model "$tmp/q.gguf" --temp 0 -n 24 --quiet "$prompt"
equals "gguf equals hf" "$a"
out=$b
equals "hf from gguf equals hf" "$a"
check "bad type" 2 "$twin" convert "$models/llama" "$tmp/x.gguf" --type q5_1

# model random: a GGUF of a published shape made in a quantised dtype; the matrices whose rows
# are not whole blocks of it (SmolLM2's K = 576 for q4_K) take q4_0, and the report says so.
check "random q4_K" 0 "$twin" model random smollm2-135m "$tmp/r.gguf" --tokenizer "$models/llama" --dtype q4_K
contains "random report" "random weights in q4_K; tensors: f32 61, q4_0 181, q4_K 30"
check "random generates" 0 "$twin" generate --model "$tmp/r.gguf" --temp 0 -n 4 --quiet "Jobs"
check "random exists" 1 "$twin" model random tiny "$tmp/r.gguf" --tokenizer "$models/llama" --dtype q4_0
contains "random exists message" "exists already"

# Errors.
check "no model" 2 "$twin" generate "hello"
contains "no model message" "--model PATH is required"
check "missing model" 1 "$twin" generate --model "$tmp/nope" "hello"
contains "missing model names it" "$tmp/nope"
check "bad temp" 2 "$twin" generate --model "$models/llama" --temp -1 "hello"
check "info usage" 2 "$twin" model
e2e_report model
