#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/fuzz_*.c) with clang in build-fuzz/ and runs each for a
# time budget: scripts/fuzz.sh [SECONDS per target, default 20] [TARGET...] (default: all).
# Corpora grow in build-fuzz/corpus/<name>/, seeded from fuzz/corpus/<name>/ and the inputs
# kept in fuzz/regressions/<target>/ (which must keep passing). A crash, leak, timeout or
# out-of-memory fails the run and leaves the reproducer in build-fuzz/artifacts/<target>/;
# replay it with build-fuzz/fuzz/<target> <file>. FUZZ_BUILD overrides the build folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
seconds=${1:-20}
shift || true
build=${FUZZ_BUILD:-build-fuzz}

if ! command -v clang >/dev/null 2>&1; then
    echo "fuzz: clang is missing (scripts/deps.sh installs it)" >&2
    exit 1
fi
CC=clang cmake -S . -B "$build" -DTWIN_FUZZ=ON -DTWIN_CUDA=OFF -DTWIN_BENCH=OFF >/dev/null
if ! cmake --build "$build" -j "$(nproc 2>/dev/null || echo 2)" --target fuzzers \
    -- --no-print-directory | { grep -v '^\[' || true; }; then
    echo "fuzz: the build failed" >&2
    exit 1
fi

# Per target: the longest input (-max_len) and the seed folder under fuzz/corpus/.
declare -A max_len=([fuzz_json]=4096 [fuzz_tokenizer_json]=8192 [fuzz_encode]=1024
                    [fuzz_bm25_load]=4096 [fuzz_model]=262144 [fuzz_index_load]=65536
                    [fuzz_robots]=8192 [fuzz_feed]=16384 [fuzz_html]=16384)
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    for f in fuzz/fuzz_*.c; do targets+=("$(basename "$f" .c)"); done
fi

export TWIN_SOURCE_DIR=$root
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=0
for t in "${targets[@]}"; do
    name=${t#fuzz_}
    corpus=$build/corpus/$name artifacts=$build/artifacts/$t
    mkdir -p "$corpus" "$artifacts"
    seeds=()
    for d in "fuzz/corpus/$name" "fuzz/regressions/$t"; do
        [ -d "$d" ] && seeds+=("$d")
    done
    dict=()
    [ -f "fuzz/$name.dict" ] && dict=("-dict=fuzz/$name.dict")
    log=$build/$t.log
    start=$(date +%s)
    # Inputs in fuzz/regressions/<target>/ are run first, with the seeds (corpus loading).
    if "$build/fuzz/$t" "$corpus" "${seeds[@]}" "${dict[@]}" -max_total_time="$seconds" \
        -max_len="${max_len[$t]:-4096}" -timeout=10 -rss_limit_mb=4096 \
        -artifact_prefix="$artifacts/" -print_final_stats=1 >"$log" 2>&1; then
        execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")
        speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log")
        cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1)
        printf 'fuzz: %-20s ok  %3ss  %8s runs  %6s/s  %s  corpus %s\n' "$t" \
            "$(($(date +%s) - start))" "${execs:-?}" "${speed:-?}" "${cov:-cov: ?}" \
            "$(find "$corpus" -type f | wc -l)"
    else
        failed=1
        echo "fuzz: $t FAILED; the log is $log; its last lines:" >&2
        tail -n 40 "$log" >&2
        repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
        if [ -n "$repro" ]; then
            echo "fuzz: reproducer: $repro (replay: $build/fuzz/$t $repro)" >&2
        fi
    fi
done
exit $failed
