#!/usr/bin/env bash
# make bench: runs every benchmark under bench/ at its full size; each prints one table whose
# last line is the headline. The output is also kept in BUILD/bench/results.txt.
# usage: bench.sh BUILD_DIR
set -euo pipefail
build=${1:-build}
out="$build/bench/results.txt"
{
    echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) $(git rev-parse --short=12 HEAD 2>/dev/null || echo '?')"
    echo "# cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores"
    for b in "$build"/bench/*; do
        [ -x "$b" ] && [ -f "$b" ] || continue
        echo
        echo "\$ $b"
        "$b"
    done
} | tee "$out"
