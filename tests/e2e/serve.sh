#!/usr/bin/env bash
# End to end: twin serve on loopback with the golden tiny models — every route (chat and text
# completions, plain and streamed; embeddings; rerank; models; tokenize; /rag over a home with
# a feature run; health; metrics), API keys (flag and file), CORS, every error (400, 401, 404,
# 405, 413, 429), cancellation when the client disconnects, reload (POST /admin/reload and
# SIGHUP) under load, traces in the store, and shutdown: SIGTERM lets in-flight requests
# finish; a grace period that runs out cancels them.
# usage: serve.sh PATH/TO/twin
set -u
twin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
gold="$root/tests/golden/models"
. "$(dirname "$0")/lib.sh"
e2e_tmp serve
mkdir "$tmp/corpus"
for f in 1823_james_monroe_dr 1862_abraham_lincoln_r 1941_franklin_d_roosevelt_d \
    2002_george_w_bush_r; do
    cp "$root/.cache/data/sotu/$f.json" "$tmp/corpus/"
done
check init 0 "$twin" --home "$home" init
check ingest 0 "$twin" --home "$home" ingest "$tmp/corpus" --map author=name,content=text,title=year,date=year --quiet
check features 0 "$twin" --home "$home" features

# start_server LOG ARGS...: runs twin serve in the background; sets $srv (pid) and $url.
start_server() {
    local log=$1
    shift
    TWIN_LOG=info "$twin" --home "$home" serve --port 0 "$@" >"$log" 2>&1 &
    srv=$!
    pids+=("$srv")
    url=
    for _ in $(seq 300); do
        url=$(sed -n 's/^twin serve: listening on \(http:[^ ]*\)$/\1/p' "$log")
        [ -n "$url" ] && curl -s -o /dev/null -w '%{http_code}' "$url/health" | grep -q 200 && break
        sleep 0.1
    done
}
wait_metric() { # wait_metric LINE: until GET /metrics has LINE (at most 20 s)
    for _ in $(seq 200); do
        curl -s "$url/metrics" | grep -qx "$1" && return 0
        sleep 0.1
    done
    return 1
}
echo k2 >"$tmp/keys"
printf '# a comment\n\n  k3  \n' >>"$tmp/keys"
start_server "$tmp/serve.log" --model "$gold/llama" --embedder "$gold/bert_embed" \
    --reranker "$gold/bert_rerank" --slots 2 --queue 2 --ctx 8192 --threads 2 --api-key k1 \
    --api-key-file "$tmp/keys" --cors '*' --max-body 65536 --grace 20
H=(-H 'Authorization: Bearer k1')
check listening 0 test -n "$url"

# Health and metrics are open; everything else wants a key.
check health 0 curl -sf "$url/health"
equals health-body '{"status":"ok"}'
check models-nokey 0 curl -s -w ' %{http_code}' "$url/v1/models"
contains models-401 '"code":"invalid_api_key"'
contains models-401-status ' 401'
check models-badkey 0 curl -s -w ' %{http_code}' -H 'Authorization: Bearer k4' "$url/v1/models"
contains models-badkey-401 ' 401'
for k in k1 k2 k3; do
    check "models-$k" 0 curl -sf -H "Authorization: Bearer $k" "$url/v1/models"
done
json models-list 'assert [m["id"] for m in j["data"]] == ["llama", "bert_embed", "bert_rerank"], j'

# Chat, plain and streamed: the same greedy text.
body='{"model":"llama","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the state of the Union?"}],"max_tokens":12,"temperature":0}'
check chat 0 curl -sf "${H[@]}" "$url/v1/chat/completions" -d "$body"
json chat-shape 'c = j["choices"][0]
assert j["object"] == "chat.completion" and j["model"] == "llama" and c["message"]["role"] == "assistant", j
assert c["finish_reason"] == "length" and j["usage"]["completion_tokens"] == 12 and j["usage"]["prompt_tokens"] > 5, j
open(sys.argv[0] if False else "'"$tmp"'/chat.txt", "w").write(c["message"]["content"])'
sbody=${body%\}}',"stream":true,"stream_options":{"include_usage":true}}'
check chat-stream 0 curl -sfN "${H[@]}" "$url/v1/chat/completions" -d "$sbody"
holds chat-stream-sse python3 -c 'import json, sys
ev = [l[6:] for l in sys.stdin.read().split("\n") if l.startswith("data: ")]
assert ev[-1] == "[DONE]", ev[-3:]
ch = [json.loads(e) for e in ev[:-1]]
assert ch[0]["choices"][0]["delta"]["role"] == "assistant" and ch[0]["object"] == "chat.completion.chunk"
text = "".join(c["choices"][0]["delta"].get("content", "") for c in ch if c["choices"])
assert text == open("'"$tmp"'/chat.txt").read(), (text, open("'"$tmp"'/chat.txt").read())
assert ch[-2]["choices"][0]["finish_reason"] == "length" and ch[-1]["choices"] == []
assert ch[-1]["usage"]["completion_tokens"] == 12'
check stream-type 0 curl -s -o /dev/null -D - "${H[@]}" "$url/v1/chat/completions" -d "$sbody"
contains stream-content-type 'Content-Type: text/event-stream'
check completion 0 curl -sf "${H[@]}" "$url/v1/completions" \
    -d '{"prompt":"Fellow citizens","max_tokens":5,"temperature":0,"stop":["zzzz"]}'
json completion-shape 'assert j["object"] == "text_completion" and j["usage"]["completion_tokens"] == 5, j
assert isinstance(j["choices"][0]["text"], str), j'

# Embeddings, rerank, tokenize.
check embeddings 0 curl -sf "${H[@]}" "$url/v1/embeddings" -d '{"input":["taxes","the army"]}'
json embeddings-shape 'import math
d = j["data"]; assert len(d) == 2 and d[1]["index"] == 1, j
assert all(abs(math.sqrt(sum(x * x for x in e["embedding"])) - 1) < 1e-3 for e in d), j
assert j["usage"]["prompt_tokens"] >= 4'
check rerank 0 curl -sf "${H[@]}" "$url/v1/rerank" \
    -d '{"query":"tax cuts","documents":["we cut taxes",{"text":"the army"},"liberty"],"top_n":2}'
json rerank-shape 'r = j["results"]; assert len(r) == 2 and r[0]["relevance_score"] >= r[1]["relevance_score"], j
assert {x["index"] for x in r} <= {0, 1, 2} and "text" in r[0]["document"], j'
check tokenize 0 curl -sf "${H[@]}" "$url/tokenize" -d '{"content":"We the people"}'
toks=$(python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)["tokens"]))' <<<"$out")
check detokenize 0 curl -sf "${H[@]}" "$url/detokenize" -d "{\"tokens\":$toks}"
equals detokenize-roundtrip '{"content":"We the people"}'

# /rag over the home's feature run.
check rag 0 curl -sf "${H[@]}" "$url/rag" -d '{"query":"What did Lincoln say about emancipation?","max_tokens":8}'
json rag-shape 'assert isinstance(j["answer"], str) and j["trace_id"] >= 1, j
assert len(j["sources"]) == 3 and j["sources"][0]["author"] == "Abraham Lincoln", j["sources"]
assert all(len(s["document_id"]) == 36 and s["text"] for s in j["sources"])'

# Errors.
check err-json 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/chat/completions" -d '{"messages":['
contains err-json-400 ' 400'
contains err-json-where 'line 1, column'
check err-field 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/chat/completions" \
    -d '{"messages":[{"role":"user","content":"x"}],"temperature":5}'
contains err-field-names 'temperature: 5 is outside 0..2'
check err-role 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/chat/completions" \
    -d '{"messages":[{"role":"wizard","content":"x"}]}'
contains err-role-400 'messages[0].role'
check err-model 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/chat/completions" \
    -d '{"model":"gpt-9","messages":[{"role":"user","content":"x"}]}'
contains err-model-404 '"code":"model_not_found"'
check err-route 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v2/nothing"
contains err-route-404 ' 404'
check err-method 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/completions"
contains err-method-405 ' 405'
head -c 70000 /dev/zero | tr '\0' 'a' >"$tmp/big"
check err-body 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/embeddings" --data-binary @"$tmp/big"
contains err-body-413 ' 413'
check err-ctx 0 curl -s -w ' %{http_code}' "${H[@]}" "$url/v1/completions" \
    -d "{\"prompt\":\"$(head -c 60000 /dev/zero | tr '\0' 'x')\"}"
contains err-ctx-400 '"code":"context_length_exceeded"'

# CORS preflight.
check cors 0 curl -s -D - -o /dev/null -X OPTIONS "$url/v1/chat/completions" \
    -H 'Origin: http://example.org' -H 'Access-Control-Request-Method: POST'
contains cors-204 ' 204'
contains cors-origin 'Access-Control-Allow-Origin: *'

# Two slots and a queue of two: a fifth long request gets 429; the clients that go away
# cancel their generations and free the slots.
long='{"prompt":"x","max_tokens":4000,"ignore_eos":true}'
cpids=()
for i in 1 2 3 4; do
    curl -s -o /dev/null "${H[@]}" "$url/v1/completions" -d "$long" &
    cpids+=($!)
done
check queue-filled 0 wait_metric 'twin_queue_depth 2'
check queue-full 0 curl -s -D - "${H[@]}" "$url/v1/completions" -d "$long"
contains queue-429 ' 429'
contains queue-retry 'Retry-After: 1'
check busy 0 curl -sf "$url/metrics"
contains busy-2 'twin_slots_busy 2'
contains queued-2 'twin_queue_depth 2'
kill "${cpids[@]}" 2>/dev/null
wait "${cpids[@]}" 2>/dev/null
for _ in $(seq 50); do
    curl -s "$url/metrics" | grep -q '^twin_slots_busy 0' && break
    sleep 0.1
done
check freed 0 curl -sf "$url/metrics"
contains freed-slots 'twin_slots_busy 0'
contains freed-queue 'twin_queue_depth 0'
holds cancelled-early python3 -c 'import re, sys
n = int(re.search(r"^twin_generated_tokens_total (\d+)", sys.stdin.read(), re.M).group(1))
assert n < 4 * 4000, n'

# Reload under load: streams that started on the old model finish on it.
for i in 1 2; do
    curl -sfN "${H[@]}" "$url/v1/chat/completions" -o "$tmp/s$i.txt" \
        -d '{"messages":[{"role":"user","content":"Go on"}],"max_tokens":3000,"ignore_eos":true,"stream":true,"stream_options":{"include_usage":true}}' &
    cpids+=($!)
done
check reload-busy 0 wait_metric 'twin_slots_busy 2'
check reload 0 curl -sf "${H[@]}" -X POST "$url/admin/reload"
equals reload-body '{"status":"reloaded","model":"llama"}'
kill -HUP "$srv"
wait "${cpids[-2]}" "${cpids[-1]}"
for _ in $(seq 100); do
    [ "$(grep -c 'serve: reloaded' "$tmp/serve.log")" -ge 2 ] && break
    sleep 0.1
done
check reload-streams 0 cat "$tmp/s1.txt" "$tmp/s2.txt"
holds reload-streams-whole python3 -c 'import sys
t = sys.stdin.read(); assert t.count("data: [DONE]") == 2 and t.count("\"completion_tokens\":3000") == 2, t[-300:]'
check reload-log 0 grep -c 'serve: reloaded' "$tmp/serve.log"
equals reload-twice 2
check after-reload 0 curl -sf "${H[@]}" "$url/v1/chat/completions" -d "$body"
json after-reload-same 'assert j["choices"][0]["message"]["content"] == open("'"$tmp"'/chat.txt").read(), j'

# Graceful stop: a request in flight finishes, then the server exits 0.
curl -sf "${H[@]}" "$url/v1/completions" -o "$tmp/last.json" \
    -d '{"prompt":"x","max_tokens":1500,"ignore_eos":true}' &
last=$!
check stop-busy 0 wait_metric 'twin_slots_busy 1'
kill -TERM "$srv"
wait "$last"
check stop-request 0 cat "$tmp/last.json"
contains stop-request-whole '"completion_tokens":1500'
wait "$srv"
check stop-exit 0 test $? -eq 0
check stop-log 0 cat "$tmp/serve.log"
contains stop-log-says 'twin serve: stopped'
check refused 7 curl -s "$url/health"

# Every generation, embedding and rerank request was traced.
check traces 0 "$twin" --home "$home" traces ls --limit 50
contains traces-chat 'chat'
contains traces-completion 'completion'
contains traces-cancelled 'cancelled'
contains traces-embeddings 'embeddings'
contains traces-rerank 'rerank'

# A grace period that runs out: the request is cut, the server still exits 0. Before that, a
# request's own time limit, and a client too slow to send its request. On the CPU (a GPU
# generates the tiny model's 8000 tokens within the grace period).
start_server "$tmp/serve2.log" --model "$gold/llama" --ctx 8192 --threads 2 --grace 1 --no-home \
    --idle-timeout 1 --device cpu
check time-limit 0 curl -sf "$url/v1/completions" \
    -d '{"prompt":"x","max_tokens":4000,"ignore_eos":true,"timeout":0.3}'
json time-limit-cut 'assert j["usage"]["completion_tokens"] < 4000 and j["choices"][0]["finish_reason"] == "length", j'
check slow-client 0 python3 -c 'import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1].rsplit(":", 1)[1])))
s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"pro")
t = time.time(); s.settimeout(10)
assert s.recv(4096) == b"", "the server answered a request it never got whole"
assert 0.5 < time.time() - t < 5, time.time() - t' "$url"
curl -s "$url/v1/completions" -o "$tmp/cut.json" \
    -d '{"prompt":"x","max_tokens":8000,"ignore_eos":true}' &
cut=$!
check grace-busy 0 wait_metric 'twin_slots_busy 1'
kill -TERM "$srv"
wait "$srv"
check grace-exit 0 test $? -eq 0
wait "$cut"
check grace-cut 0 cat "$tmp/cut.json"
json grace-cut-short 'assert j["usage"]["completion_tokens"] < 8000 and j["choices"][0]["finish_reason"] == "length", j'
check grace-log 0 cat "$tmp/serve2.log"
contains grace-log-says 'the grace period ended'

# Bad usage.
check no-model 2 "$twin" serve --port 0
check bad-model 1 "$twin" --home "$home" serve --model "$tmp/nothing" --port 0
contains bad-model-names "$tmp/nothing"

e2e_report serve
