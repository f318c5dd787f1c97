#!/usr/bin/env bash
# Checks (or with --fix, applies) clang-format with the repository's .clang-format on every
# C, header and CUDA source that git tracks or would track.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(git ls-files --cached --others --exclude-standard \
    -- '*.c' '*.h' '*.cu' '*.cuh' | while read -r f; do [ -f "$f" ] && echo "$f"; done)
[ ${#files[@]} -eq 0 ] && exit 0
if [ "${1:-}" = --fix ]; then
    clang-format -i "${files[@]}"
    exit 0
fi
if ! clang-format --dry-run --Werror "${files[@]}"; then
    echo "format-check: run 'make format' (clang-format -i) on the files above" >&2
    exit 1
fi
echo "format-check: ${#files[@]} files formatted as .clang-format says"
