#!/usr/bin/env bash
# The server's benchmark: starts `twin serve` on a free loopback port, runs bench/serve against
# it (GET /health; /v1/embeddings when an embedder is given; streamed chat with the server's
# memory watched), then stops the server with SIGTERM and waits for it. The tables are also
# kept in BUILD_DIR/bench/serve_results.txt. Exits 1 when any request failed.
# Without MODEL_PATH: a SmolLM2-135M-shaped model with random bf16 weights and Llama 2's
# tokenizer (twin model random, kept in BUILD_DIR/bench/models/), and the golden tiny embedder.
# QUICK=1: a smoke run (concurrency 1 and 2, a few short requests), as `make test` does.
# DEVICE=cpu|cuda|auto (default auto: the GPU when there is one): the server's --device.
# SERVE_EXTRA="--kv-tokens 8192 ...": more flags for twin serve.
# usage: bench_serve.sh BUILD_DIR [MODEL_PATH [EMBEDDER_PATH]]
set -euo pipefail

# ---- twin serve's flags, in one place (the planned ones; adjust them here). The script adds
# --model MODEL_PATH, --embedder EMBEDDER_PATH when given, --host and --port.
SERVE_HOST=127.0.0.1
SERVE_FLAGS=(--slots 64 --ctx 512 --no-home --threads "${THREADS:-0}" --device "${DEVICE:-auto}")
read -r -a extra <<<"${SERVE_EXTRA:-}"
SERVE_FLAGS+=("${extra[@]}")
LEVELS=1,8,64                           # concurrency levels of every run
CHAT_FLAGS=(--max-tokens 64 --duration 20) # bench/serve's chat options
HEALTH_FLAGS=()
if [ "${QUICK:-0}" = 1 ]; then
    SERVE_FLAGS=(--slots 2 --ctx 256 --no-home --threads 2)
    LEVELS=1,2
    CHAT_FLAGS=(--max-tokens 8 --requests 8)
    HEALTH_FLAGS=(--requests 50)
fi
READY_TIMEOUT=${READY_TIMEOUT:-120}     # seconds for GET /health to answer 200
STOP_TIMEOUT=${STOP_TIMEOUT:-30}        # seconds for the server to exit after SIGTERM

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
    echo "usage: bench_serve.sh BUILD_DIR [MODEL_PATH [EMBEDDER_PATH]]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
build=$1 model=${2:-} embedder=${3:-}
twin="$build/twin" bench="$build/bench/serve"
for f in "$twin" "$bench"; do
    [ -x "$f" ] || { echo "bench_serve: $f: missing (build it first)" >&2; exit 1; }
done
if [ -z "$model" ]; then
    model="$build/bench/models/smollm2-135m-bf16"
    mkdir -p "$build/bench/models"
    [ -d "$model" ] || "$twin" model random smollm2-135m "$model" \
        --tokenizer "$root/.cache/data/tokenizers/llama2" --dtype bf16 >/dev/null
    SERVE_FLAGS+=(--template llama2)
    embedder="$root/tests/golden/models/bert_embed"
fi

# A free port: the kernel's pick through python3, else the first closed one of a range.
free_port() {
    if command -v python3 >/dev/null; then
        python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
        return
    fi
    for p in $(seq 18080 18999); do
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
            echo "$p"
            return
        fi
    done
    echo "bench_serve: no free port in 18080-18999" >&2
    return 1
}

port=$(free_port)
url="http://$SERVE_HOST:$port"
log=$(mktemp /tmp/twin-bench-serve.XXXXXX)
cmd=("$twin" serve --model "$model")
[ -n "$embedder" ] && cmd+=(--embedder "$embedder")
cmd+=(--host "$SERVE_HOST" --port "$port" "${SERVE_FLAGS[@]}")

server=
stop_server() {
    [ -n "$server" ] || return 0
    kill -TERM "$server" 2>/dev/null || true
    for _ in $(seq $((STOP_TIMEOUT * 10))); do
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server" 2>/dev/null; then
        echo "bench_serve: twin serve still running ${STOP_TIMEOUT}s after SIGTERM; SIGKILL" >&2
        kill -KILL "$server" 2>/dev/null || true
    fi
    local rc=0
    wait "$server" 2>/dev/null || rc=$?
    echo "bench_serve: twin serve exited with status $rc after SIGTERM" >&2
    server=
}
trap 'stop_server; rm -f "$log"' EXIT

echo "bench_serve: ${cmd[*]}" >&2
"${cmd[@]}" >"$log" 2>&1 &
server=$!

# Ready when GET /health answers 200; give up when the server dies or after READY_TIMEOUT.
deadline=$((SECONDS + READY_TIMEOUT))
until "$bench" --url "$url" --mode health --concurrency 1 --requests 1 --timeout 2 \
    >/dev/null 2>&1; do
    if ! kill -0 "$server" 2>/dev/null; then
        wait "$server" || true
        server=
        echo "bench_serve: twin serve exited before it was ready; its log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
        echo "bench_serve: $url/health: no 200 within ${READY_TIMEOUT}s; the server's log:" >&2
        tail -n 20 "$log" >&2
        exit 1
    fi
    sleep 0.2
done

out="$build/bench/serve_results.txt"
echo "# $(date -u +%Y-%m-%dT%H:%M:%SZ) ${cmd[*]}" >"$out"
status=0
run() {
    echo | tee -a "$out"
    echo "\$ $bench --url $url $*" | tee -a "$out"
    "$bench" --url "$url" "$@" | tee -a "$out" || status=1
}
run --mode health --concurrency "$LEVELS" "${HEALTH_FLAGS[@]}"
if [ -n "$embedder" ]; then
    run --mode embeddings --concurrency "$LEVELS" --pid "$server" "${HEALTH_FLAGS[@]}"
fi
run --mode chat --concurrency "$LEVELS" --pid "$server" "${CHAT_FLAGS[@]}"
stop_server
exit $status
