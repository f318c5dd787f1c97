#!/usr/bin/env bash
# End to end: twin train through the binary — pretraining from scratch on one author's
# addresses from the warehouse (the run and the model registered, the model generating),
# Ctrl-C (SIGINT) stopping a run with a checkpoint and --resume finishing it with exactly the
# weights of an uninterrupted run, LoRA SFT on Alpaca lines (the adapter beside the merged
# weights), DPO from the registered SFT model, and bad input: usage errors, a malformed data
# line named by file and line, data of the wrong kind, a missing base — each leaving no model.
# usage: train.sh PATH/TO/twin   (TWIN_SOURCE_DIR: the source tree)
set -u
twin=$1
src=${TWIN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
gold="$src/tests/golden/models"
corpus="$src/.cache/data/sotu"
. "$(dirname "$0")/lib.sh"
e2e_tmp train
t() { "$twin" --home "$home" "$@"; }
# the registered model.safetensors' blob of a model reference
blob() { t models show "$1" --json | python3 -c '
import json, sys
j = json.load(sys.stdin)
print([f["blob"] for f in j["files"] if f["file"] == "model.safetensors"][0])'; }

check init 0 t init
mkdir -p "$tmp/lincoln"
cp "$corpus"/*_abraham_lincoln_* "$tmp/lincoln/"
check ingest 0 t ingest "$tmp/lincoln" --map author=name,content=text,title=year,date=year

# Pretraining from scratch on the warehouse's documents of one author.
pre=(train pretrain --shape tiny --tokenizer "$gold/llama" --author "Abraham Lincoln"
    --seq 64 --batch 4 --lr 3e-3 --warmup 2 --threads 2)
check "pretrain" 0 t "${pre[@]}" --max-steps 8 --out lincoln
contains "pretrain says" "trained lincoln:1 (pretrain, 8 steps)"
contains "pretrain progress" "step 8/8"
check "runs ls" 0 t runs ls --json
holds "run recorded" python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
assert r["kind"] == "pretrain" and r["status"] == "finished" and r["steps"] == 8, r
assert r["output_model"] == "lincoln:1" and r["base_model"] == "shape:tiny", r'
check "models show" 0 t models show lincoln --json
holds "model lineage" python3 -c '
import json, sys
j = json.load(sys.stdin)
assert j["kind"] == "pretrain" and j["dtype"] == "bf16" and j["run_id"].startswith("run-"), j
assert j["base"] == "shape:tiny" and len(j["dataset_sha256"]) == 64, j
files = {f["file"] for f in j["files"]}
assert {"config.json", "model.safetensors", "tokenizer.json"} <= files, files'
check "generate from it" 0 t generate --model lincoln --temp 0 -n 8 --ignore-eos --quiet "The Union"
holds "generated text" test -n "$out"
check "runs show" 0 t runs show "$(t runs ls --json | python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["id"])')"
contains "runs show steps" "loss"

# Ctrl-C: the run stops after its step with a checkpoint, and --resume finishes it; the
# result is the very model of an uninterrupted run.
"$twin" --home "$home" "${pre[@]}" --max-steps 40 --out straight >"$tmp/straight.log" 2>&1
"$twin" --home "$home" "${pre[@]}" --max-steps 40 --out resumed >"$tmp/stop.log" 2>&1 &
pid=$!
pids+=("$pid")
for _ in $(seq 1 600); do grep -q "^step " "$tmp/stop.log" && break; sleep 0.05; done
kill -INT "$pid"
wait "$pid"
rc=$?
check "sigint exit is 1" 0 test "$rc" -eq 1
out=$(cat "$tmp/stop.log")
contains "sigint says" "resume with the same options and --resume run-"
run=$(sed -n 's/.*--resume \(run-[0-9a-f-]*\).*/\1/p' "$tmp/stop.log" | tail -n 1)
check "runs ls interrupted" 0 t runs ls --json
holds "interrupted recorded" python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
r = [r for r in rows if r["id"] == "'"$run"'"][0]
assert r["status"] == "interrupted" and 0 < r["steps"] < 40, r'
check "no model yet" 1 t models show resumed
check "resume" 0 t "${pre[@]}" --max-steps 40 --out resumed --resume "$run"
contains "resume says" "trained resumed:1 (pretrain, 40 steps)"
check "resume other options" 1 t "${pre[@]}" --max-steps 41 --out other --resume "$run"
contains "resume other options says" "written for other options"
out="$(blob straight)"
want=$out
out="$(blob resumed)"
equals "resumed weights are the uninterrupted run's" "$want"

# LoRA SFT on Alpaca lines from the golden tiny Llama, then DPO from the registered result.
cat >"$tmp/sft.jsonl" <<'EOF'
{"instruction": "Who wrote the address of 1863?", "output": "Abraham Lincoln."}
{"instruction": "What is the Union?", "output": "The states, one nation."}
{"instruction": "Name a duty of Congress.", "output": "To lay and collect taxes."}
{"instruction": "What did the President report?", "output": "The state of the Union."}
EOF
cat >"$tmp/dpo.jsonl" <<'EOF'
{"prompt": "Describe the Union.", "chosen": "It is strong.", "rejected": "No idea."}
{"prompt": "What of the economy?", "chosen": "It grows.", "rejected": "Bad."}
{"prompt": "And the army?", "chosen": "It is ready.", "rejected": "Who knows."}
EOF
check "sft lora" 0 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --lora r=4,alpha=8 \
    --out sft-tiny --epochs 5 --batch 2 --seq 64 --eval 0 --lr 1e-2 --warmup 0 --dtype f32
contains "sft says" "trained sft-tiny:1 (sft, 10 steps)"
check "sft files" 0 t models show sft-tiny --json
holds "sft adapter beside the weights" python3 -c '
import json, sys
j = json.load(sys.stdin)
files = {f["file"] for f in j["files"]}
assert {"adapter_config.json", "adapter_model.safetensors", "model.safetensors"} <= files, files
assert j["params"]["lora"]["r"] == 4, j["params"]'
check "sft adapter config" 0 cat "$home/models/sft-tiny/v1/adapter_config.json"
holds "peft config" python3 -c '
import json, sys
c = json.load(sys.stdin)
assert c["peft_type"] == "LORA" and c["r"] == 4 and c["lora_alpha"] == 8, c
assert sorted(c["target_modules"]) == sorted(["q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"]), c'
check "dpo" 0 t train dpo --base sft-tiny --data "$tmp/dpo.jsonl" --lora r=4,alpha=8 \
    --out dpo-tiny --epochs 4 --batch 3 --seq 64 --eval 0 --lr 1e-2 --warmup 0
contains "dpo first loss is log 2" "loss 0.6931 ->"
check "dpo metrics" 0 t runs ls --json --kind dpo
holds "dpo run" python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
assert r["base_model"] == "sft-tiny:1" and r["status"] == "finished", r
assert r["metrics"]["rewards/accuracies"] == 1.0 and r["metrics"]["rewards/margins"] > 0, r
assert r["metrics"]["logps/chosen"] < 0 and r["metrics"]["logps/rejected"] < 0, r'

# Full training in bf16 (f32 master weights).
check "bf16 compute" 0 t "${pre[@]}" --max-steps 6 --compute bf16 --out bf16 --quiet
contains "bf16 says" "trained bf16:1 (pretrain, 6 steps)"
check "bf16 on lora" 1 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --lora r=4 \
    --compute bf16 --out bad
contains "bf16 on lora says" "bf16 compute is for full training"

# QLoRA over a q4_0 base with activation recompute.
check "qlora recompute" 0 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --qlora q4 \
    --lora r=4,alpha=8 --recompute --out q-tiny --epochs 2 --batch 2 --seq 64 --eval 0 --quiet
contains "qlora says" "trained q-tiny:1 (sft, 4 steps)"
check "qlora run" 0 t runs ls --json --kind sft
holds "qlora params" python3 -c '
import json, sys
r = json.loads(sys.stdin.readline())
assert r["params"]["lora"]["qlora"] == "q4_0" and r["params"]["recompute"] is True, r["params"]'

# Bad input: usage errors (2), data and models that are wrong (1); no model left behind.
check "no out" 2 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl"
contains "no out says" "--out NAME is required"
check "bad lora" 2 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --lora r=x --out x
contains "bad lora says" "--lora"
check "bad task" 2 t train finetune --out x
check "bad device" 2 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --device tpu --out x
contains "bad device says" "--device needs cpu, cuda, cuda:N or auto"
check "gpus on the cpu" 2 t train sft --base "$gold/llama" --data "$tmp/sft.jsonl" --gpus 2 \
    --device cpu --out x
contains "gpus on the cpu says" "--device is cuda or auto"
# Two GPUs asked for where one is visible (or where the build has no NCCL): a clear error, and
# no run or model recorded
CUDA_VISIBLE_DEVICES=0 check "gpus not there" 1 t train sft --base "$gold/llama" \
    --data "$tmp/sft.jsonl" --gpus 2 --out twogpus
if grep -Eq 'CUDA_VISIBLE_DEVICES="0" lists 1|built without NCCL' <<<"$out"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
    echo "FAIL gpus not there says which: $out"
fi
check "no twogpus model" 1 t models show twogpus
printf '{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n' >"$tmp/bad.jsonl"
check "bad line" 1 t train sft --base "$gold/llama" --data "$tmp/bad.jsonl" --out bad
contains "bad line named" "bad.jsonl:2:"
check "wrong kind" 1 t train dpo --base "$gold/llama" --data "$tmp/sft.jsonl" --lora r=4 --out bad
check "missing base" 1 t train sft --base "$tmp/nope" --data "$tmp/sft.jsonl" --out bad
check "no bad model" 1 t models show bad

e2e_report train.sh
