#!/bin/bash
# bench/train_cuda: the training engine on the GPU beside PyTorch + PEFT, in one run on the
# same card (docs/perf.md records its tables). Run from the repository root after a build:
#   bash bench/train_cuda.sh [BUILD_DIR]
# LoRA SFT (r=32 on all seven projections, bf16 base, seq 2048) on the Llama-3.2-1B shape,
# batch 4, and on the Llama-3.1-8B shape, batch 1; a DPO step of the 1B LoRA model (2 pairs
# of 2048-token rows, the reference its adapter switched off); full training (bf16 compute,
# f32 masters) of the SmolLM2-135M shape (Llama-shaped, ~135M parameters), batch 8, and of
# GPT-2 small's dimensions as a Llama (llama-124m, llm.c's 124M), 16 x 1024; QLoRA (q4_K base,
# activation recompute) on the 8B shape, twin alone (the peer would need bitsandbytes).
set -euo pipefail
b=${1:-build}
steps=${STEPS:-5}
run() { # shape batch modes [seq]
    local seq=${4:-2048}
    "$b/bench/train" --device cuda --shape "$1" --batch "$2" --seq "$seq" --modes "$3" \
        --rank 32 --base bf16 --compute bf16 --steps "$steps" --warmup 2
    python3 bench/train_cuda_peers.py --shape "$1" --batch "$2" --seq "$seq" --modes "$3" \
        --rank 32 --steps "$steps" --warmup 2
}
run llama-3.2-1b 4 lora
run llama-3.2-1b 4 dpo
run smollm2-135m 8 full
run llama-124m 16 full 1024
if [ -z "${NO_8B:-}" ]; then
    run llama-3.1-8b 1 lora
    "$b/bench/train" --device cuda --shape llama-3.1-8b --batch 1 --seq 2048 --modes qlora \
        --qlora q4_K --rank 32 --recompute --steps "$steps" --warmup 2
fi
