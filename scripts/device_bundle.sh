#!/usr/bin/env bash
# Packs what the GPU machine needs from .cache/data (the corpus and the tokenizer files) into
# .device/data.tar.xz (git-ignored), small enough to travel with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .device
tar -C .cache/data -cJf .device/data.tar.xz sotu tokenizers
ls -la .device/data.tar.xz
