#!/usr/bin/env bash
# End to end: the model registry and the run records through the twin binary — models add,
# ls, show, promote, export (hf, gguf, peft), --model NAME:VERSION and @promoted in generate,
# twin serve without --model serving the promoted model and following a promotion on reload
# (POST /admin/reload and SIGHUP) while a server given a path keeps it, and runs ls/show on
# an empty home and on a run written as the training pipeline writes one.
# usage: models.sh PATH/TO/twin   (TWIN_SOURCE_DIR: the source tree)
set -u
twin=$1
src=${TWIN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
gold="$src/tests/golden/models"
. "$(dirname "$0")/lib.sh"
e2e_tmp models
t() { "$twin" --home "$home" "$@"; }
check init 0 t init
# An empty home: nothing to list, said on stderr; stdout stays empty for scripts.
check "models ls empty" 0 t models ls
equals "models ls empty says" "twin: no models in $home (twin models add PATH --name NAME)"
check "models ls empty stdout" 0 sh -c "'$twin' --home '$home' models ls 2>/dev/null"
equals "models ls empty stdout is empty" ""
check "runs ls empty" 0 t runs ls
equals "runs ls empty says" "twin: no runs in $home (the training pipeline records them)"
check "runs ls json empty" 0 t runs ls --json
equals "runs ls json empty is empty" ""
check "runs show missing" 1 t runs show run-nope
contains "runs show missing names it" "no run run-nope (twin runs ls lists them)"

# Registering: versions per name; the parameters twin counts are recorded.
check "add" 0 t models add "$gold/llama" --name tiny
equals "add says" "registered tiny:1 (imported) in $home/models/tiny/v1"
check "add again" 0 t models add "$gold/llama" --name tiny --kind sft --base tiny:1
contains "add again is v2" "registered tiny:2 (sft)"
check "add other" 0 t models add "$gold/mistral" --name mis --kind base
contains "add other is v1" "registered mis:1 (base)"
check "add not a model" 1 t models add "$tmp" --name bad
contains "add not a model says" "not a model folder"
check "add bad name" 1 t models add "$gold/llama" --name ../x
contains "add bad name says" "model name \"../x\""
check "add bad kind" 1 t models add "$gold/llama" --name x --kind weird
check "add no name" 2 t models add "$gold/llama"
check "failed adds left no folder" 1 test -e "$home/models/bad" -o -e "$home/models/x"
params=$("$twin" model info "$gold/llama" | sed -n 's/^parameters: *\([0-9]*\) .*/\1/p')
check "ls json" 0 t models ls --json
holds "ls json rows" python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert [r["ref"] for r in rows] == ["mis:1", "tiny:1", "tiny:2"], rows
t1 = rows[1]
assert t1["kind"] == "imported" and t1["stage"] == "none" and not t1["promoted"], t1
assert t1["n_params"] == int(sys.argv[1]) and t1["dtype"] == "f32", t1
assert rows[2]["kind"] == "sft" and rows[2]["base"] == "tiny:1", rows[2]
assert t1["path"] == sys.argv[2] + "/models/tiny/v1", t1' "$params" "$home"
check "ls" 0 t models ls
holds "ls table" python3 -c '
import sys
lines = sys.stdin.read().splitlines()
assert lines[0].split()[:3] == ["MODEL", "KIND", "STAGE"], lines
assert [l.split()[0] for l in lines[1:]] == ["mis:1", "tiny:1", "tiny:2"], lines'

# Show: every file with its size and blob (the file's own SHA-256), the lineage.
check "show" 0 t models show tiny:2
contains "show model" "model:    tiny:2"
contains "show base" "base:     tiny:1"
contains "show source" "source:   $gold/llama"
w_size=$(stat -c %s "$gold/llama/model.safetensors")
w_sha=$(sha256sum "$gold/llama/model.safetensors" | cut -d' ' -f1)
holds "show weights line" grep -Eq "^  model\.safetensors +$w_size  $w_sha\$"
check "show json" 0 t models show tiny --json
json "show json files" 'files = {f["file"]: f for f in j["files"]}
assert j["ref"] == "tiny:2" and j["bytes"] == sum(f["bytes"] for f in j["files"]), j
assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
        "generation_config.json"} <= set(files), files
assert files["model.safetensors"]["blob"] == sys.argv[1] and files["model.safetensors"]["bytes"] == int(sys.argv[2])' \
    "$w_sha" "$w_size"
check "show missing" 1 t models show nope
contains "show missing says" "$home: no model named nope in the registry"
check "show missing version" 1 t models show tiny:7
contains "show missing version says" "model tiny has no version 7 (the newest is 2)"
# The folder is hard links to the blobs.
check "folder links" 0 stat -c %h "$home/models/tiny/v1/model.safetensors"
equals "folder links count" "3"

# --model takes a reference (the path first); the registered model generates as its source.
want=$("$twin" generate --model "$gold/llama" --temp 0 -n 16 --ignore-eos --quiet "The Union")
check "generate ref" 0 t generate --model tiny:1 --temp 0 -n 16 --ignore-eos --quiet "The Union"
equals "generate ref text" "$want"
check "generate missing ref" 1 t generate --model tiny:9 "The Union"
contains "generate missing ref says" "--model tiny:9: not a file or folder: $home: model tiny has no version 9 (the newest is 2)"
check "generate no promoted" 1 t generate --model @promoted "The Union"
contains "generate no promoted says" "no promoted model"
contains "generate no promoted how" "twin models promote"

# Promotion: one at a time; the one before is archived.
check "promote" 0 t models promote tiny:1
contains "promote says" "promoted tiny:1"
check "promote other" 0 t models promote tiny
check "promote missing" 1 t models promote nope
check "ls after promote" 0 t models ls --json
holds "stages" python3 -c '
import json, sys
rows = {r["ref"]: r["stage"] for r in map(json.loads, sys.stdin.read().splitlines())}
assert rows == {"mis:1": "none", "tiny:1": "archived", "tiny:2": "production"}, rows'
check "generate promoted" 0 t generate --model @promoted --temp 0 -n 16 --ignore-eos --quiet "The Union"
equals "generate promoted text" "$want"
check "generate still needs model" 2 t generate "The Union"
contains "generate still needs model says" "--model PATH is required"

# Export: a plain folder that transformers and twin read, a GGUF, the PEFT error.
check "export hf" 0 t models export tiny:1 --format hf "$tmp/out-hf"
equals "export hf says" "wrote $tmp/out-hf (Hugging Face)"
for f in config.json model.safetensors tokenizer.json tokenizer_config.json generation_config.json; do
    check "export hf $f" 0 cmp "$gold/llama/$f" "$tmp/out-hf/$f"
done
check "export hf plain files" 0 stat -c %h "$tmp/out-hf/model.safetensors"
equals "export hf not linked" "1"
check "export hf generates" 0 "$twin" generate --model "$tmp/out-hf" --temp 0 -n 16 --ignore-eos --quiet "The Union"
equals "export hf text" "$want"
check "export exists" 1 t models export tiny:1 --format hf "$tmp/out-hf"
contains "export exists says" "exists already"
check "export gguf" 0 t models export tiny --format gguf --type q8_0 "$tmp/out.gguf"
equals "export gguf says" "wrote $tmp/out.gguf (GGUF, q8_0)"
check "export gguf magic" 0 head -c 4 "$tmp/out.gguf"
equals "export gguf is GGUF" "GGUF"
check "export gguf generates" 0 "$twin" generate --model "$tmp/out.gguf" --temp 0 -n 4 --quiet "The Union"
check "export gguf f32" 0 t models export tiny --format gguf --type f32 "$tmp/f32.gguf"
check "export gguf f32 text" 0 "$twin" generate --model "$tmp/f32.gguf" --temp 0 -n 16 --ignore-eos --quiet "The Union"
equals "export gguf f32 equals" "$want"
check "export peft" 1 t models export tiny --format peft "$tmp/out-peft"
contains "export peft says" "tiny:2 has no PEFT adapter"
check "export peft left nothing" 1 test -e "$tmp/out-peft"
check "export bad format" 2 t models export tiny --format zip "$tmp/x"
check "export type for hf" 2 t models export tiny --format hf --type q8_0 "$tmp/x"
check "models no sub" 2 t models
check "models bad sub" 2 t models frobnicate

# Serving the promoted model; a reload follows a promotion. A server given a path keeps it.
start_server() { # start_server LOG ARGS...: sets $srv and $url
    local log=$1
    shift
    TWIN_LOG=info "$twin" --home "$home" serve --port 0 --threads 2 "$@" >"$log" 2>&1 &
    srv=$!
    pids+=("$srv")
    url=
    for _ in $(seq 300); do
        url=$(sed -n 's/^twin serve: listening on \(http:[^ ]*\)$/\1/p' "$log")
        [ -n "$url" ] && curl -s -o /dev/null -w '%{http_code}' "$url/health" | grep -q 200 && break
        sleep 0.1
    done
}
model_id() { curl -s "$url/v1/models" | python3 -c 'import json, sys; print(json.load(sys.stdin)["data"][0]["id"])'; }
start_server "$tmp/serve1.log"
check "serve promoted" 0 model_id
equals "serve promoted id" "tiny"
contains_log() { grep -qF -- "$2" "$1"; }
check "serve says promoted" 0 contains_log "$tmp/serve1.log" "the promoted model tiny:2"
req='{"prompt":"The Union","max_tokens":16,"temperature":0,"ignore_eos":true}'
check "serve completion" 0 curl -sf "$url/v1/completions" -d "$req"
served=$(python3 -c 'import json, sys; print(json.load(sys.stdin)["choices"][0]["text"])' <<<"$out")
check "promote mis" 0 t models promote mis
check "reload" 0 curl -sf -X POST "$url/admin/reload"
json "reload names mis" 'assert j == {"status": "reloaded", "model": "mis"}, j'
check "serve after reload" 0 model_id
equals "serve after reload id" "mis"
check "promote back" 0 t models promote tiny:1
kill -HUP "$srv"
for _ in $(seq 100); do [ "$(model_id)" = tiny ] && break; sleep 0.1; done
check "serve after sighup" 0 model_id
equals "serve after sighup id" "tiny"
check "sighup log" 0 contains_log "$tmp/serve1.log" "@promoted is tiny:1"
kill "$srv"
wait "$srv"
start_server "$tmp/serve2.log" --model "$gold/llama"
check "serve path" 0 model_id
equals "serve path id" "llama"
# The promoted tiny:2 served what the golden folder serves.
check "serve path completion" 0 curl -sf "$url/v1/completions" -d "$req"
json "serve same text" 'assert j["choices"][0]["text"] == sys.argv[1], (j, sys.argv[1])' "$served"
check "promote mis again" 0 t models promote mis
check "reload path" 0 curl -sf -X POST "$url/admin/reload"
json "reload path keeps it" 'assert j == {"status": "reloaded", "model": "llama"}, j'
kill "$srv"
wait "$srv"
check "serve no model no home" 2 t serve --no-home --port 0
contains "serve no model says" "give at least one of --model"

# A run as the training pipeline records it (store/registry.h's tables), read back.
python3 - "$home/twin.db" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
db.execute("INSERT INTO runs (id, kind, status, started_at, finished_at, params, base_model, "
           "dataset, output_model, message, twin_version) VALUES ('run-20250101-120000-abcd0123', "
           "'sft', 'finished', 1735732800000, 1735732830500, '{\"lr\": 0.0002}', 'tiny:1', "
           "'{\"path\": \"d.jsonl\", \"rows\": 12}', 'tiny:2', NULL, 'twin test')")
db.execute("INSERT INTO runs (id, kind, status, started_at, params, twin_version) VALUES "
           "('run-20250102-120000-ffff0000', 'dpo', 'failed', 1735819200000, '{}', 'twin test')")
for s, loss in ((1, 2.5), (2, 1.75)):
    db.execute("INSERT INTO run_steps (run_id, step, epoch, loss, lr, grad_norm, tokens_per_s, "
               "mem_bytes, elapsed_s, eval_loss) VALUES ('run-20250101-120000-abcd0123', ?, 0.5, "
               "?, 0.0002, 1.25, 1500.0, 1048576, 3.0, NULL)", (s, loss))
db.execute("INSERT INTO run_metrics VALUES ('run-20250101-120000-abcd0123', 'eval_loss', 1.5)")
db.commit()
PY
check "runs ls" 0 t runs ls
holds "runs ls rows" python3 -c '
import sys
rows = [l.split() for l in sys.stdin.read().splitlines()]
assert rows[0][:3] == ["RUN", "KIND", "STATUS"], rows
assert [r[0] for r in rows[1:]] == ["run-20250102-120000-ffff0000", "run-20250101-120000-abcd0123"], rows
assert rows[2][1:4] == ["sft", "finished", "2025-01-01"] and rows[2][5:] == ["30.5", "s", "2", "1.7500", "tiny:2"], rows'
check "runs ls kind" 0 t runs ls --kind dpo --json
json "runs ls kind one" 'assert j["id"] == "run-20250102-120000-ffff0000" and j["status"] == "failed" and j["steps"] == 0, j'
check "runs show" 0 t runs show run-20250101-120000-abcd0123
contains "runs show status" "status:   finished"
contains "runs show metrics" 'metrics:  {"eval_loss":1.5}'
holds "runs show steps" python3 -c '
import sys
lines = sys.stdin.read().splitlines()
i = next(k for k, l in enumerate(lines) if l.split()[:3] == ["step", "epoch", "loss"])
assert lines[i + 1].split() == ["1", "0.500", "2.5000", "2.000e-04", "1.250", "1500.0", "1.0", "3.0", "-"], lines[i + 1]
assert lines[i + 2].split()[:3] == ["2", "0.500", "1.7500"], lines[i + 2]'
check "runs show json" 0 t runs show run-20250101-120000-abcd0123 --json
json "runs show json steps" 'assert [s["loss"] for s in j["steps"]] == [2.5, 1.75] and j["steps"][0]["eval_loss"] is None, j
assert j["params"] == {"lr": 0.0002} and j["dataset"]["rows"] == 12 and j["metrics"] == {"eval_loss": 1.5}, j'
check "runs bad sub" 2 t runs frob
e2e_report models
