#!/usr/bin/env bash
# End to end: twin serve driven by the official OpenAI Node client (the openai npm package
# that scripts/deps.sh pins into .cache/data/npm/openai), as an application would use it:
# models, chat (plain, streamed, the client's stream helper), text completions, embeddings
# (base64 and float), errors as the client's classes (401, 404, 400), eight streams at once;
# then SIGTERM stops the server cleanly. Skipped only when node is not installed.
# usage: serve_openai.sh PATH/TO/twin
# shellcheck source-path=SCRIPTDIR
set -u
twin=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
gold="$root/tests/golden/models"
pkg="$root/.cache/data/npm/openai"
# shellcheck source=lib.sh
. "$here/lib.sh"

if ! command -v node >/dev/null 2>&1; then
    echo "SKIP serve_openai: node is not installed"
    passed=$((passed + 1))
    e2e_report serve_openai
    exit
fi
check openai-package 0 test -f "$pkg/package.json"
if [ "$failed" -ne 0 ]; then
    echo "the openai client is not in $pkg: run scripts/deps.sh"
    e2e_report serve_openai
    exit
fi

tmp=$(mktemp -d /tmp/twin-e2e-serve-openai-XXXXXX)
srv=
cleanup() {
    [ -n "$srv" ] && kill -9 "$srv" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT
log="$tmp/serve.log"

"$twin" --home "$tmp/home" serve --model "$gold/llama" --embedder "$gold/bert_embed" \
    --port 0 --slots 4 --ctx 512 --api-key sk-test-123 --no-home >"$log" 2>&1 &
srv=$!

# The port it chose is on its log; then /health says 200 once the models are loaded.
url=
for _ in $(seq 300); do
    url=$(sed -n 's/^twin serve: listening on \(http:[^ ]*\)$/\1/p' "$log")
    [ -n "$url" ] && break
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
done
check listening 0 test -n "$url"
[ -n "$url" ] || { echo "twin serve's log:"; cat "$log"; }
health=
if [ -n "$url" ]; then
    for _ in $(seq 300); do
        health=$(curl -s --noproxy '*' -o /dev/null -w '%{http_code}' "$url/health")
        [ "$health" = 200 ] && break
        sleep 0.1
    done
fi
check health 0 test "$health" = 200

if [ -n "$url" ]; then
    check openai-client 0 timeout 60 node "$here/serve_openai.mjs" "$url/v1" sk-test-123 "$pkg" \
        "$gold/bert_embed"
    for c in models-list chat chat-deterministic chat-stream chat-stream-helper completion \
        completion-stream embeddings-base64 embeddings-float auth-wrong-key unknown-model \
        bad-request concurrent-streams; do
        contains "openai-$c" "ok $c:"
    done
    contains openai-summary ": 0 check(s) failed"
fi

# SIGTERM: the server finishes, exits 0 within 30 s, and says so.
kill -TERM "$srv" 2>/dev/null
for _ in $(seq 300); do
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$srv" 2>/dev/null; then
    rc=timeout
else
    wait "$srv"
    rc=$?
    srv=
fi
check stop-exit 0 test "$rc" = 0
out=$(cat "$log")
contains stop-says "twin serve: stopped"
[ "$failed" -eq 0 ] || { echo "twin serve's log:"; tail -20 "$log"; }

e2e_report serve_openai
