#!/usr/bin/env bash
# End to end: twin ask, twin traces and twin eval retrieval on eight State of the Union
# addresses — retrieval only (no model), then with the golden tiny Llama (a nonsense answer,
# real mechanics: the self-query's invalid JSON falls back to the name matcher), the golden
# embedder (hybrid) and cross-encoder (reranking); traces listed and shown; bad input.
# usage: ask.sh PATH/TO/twin
set -u
twin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
gold="$root/tests/golden/models"
tmp=$(mktemp -d /tmp/twin-e2e-ask-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"
home="$tmp/home"
mkdir "$tmp/corpus"
for f in 1790_george_washington_n 1823_james_monroe_dr 1862_abraham_lincoln_r \
    1905_theodore_roosevelt_r 1941_franklin_d_roosevelt_d 1964_lyndon_b_johnson_d \
    1990_george_bush_r 2002_george_w_bush_r; do
    cp "$root/.cache/data/sotu/$f.json" "$tmp/corpus/"
done

check init 0 "$twin" --home "$home" init
check ask-before 1 "$twin" --home "$home" ask "anything"
contains ask-before-says "twin features"
check ingest 0 "$twin" --home "$home" ingest "$tmp/corpus" --map author=name,content=text,title=year,date=year --quiet
check features 0 "$twin" --home "$home" features

# No model: retrieval only, filtered by the author the question names.
check ask-retrieval 0 "$twin" --home "$home" ask "What did Lincoln propose about emancipation?"
contains ask-retrieval-says "retrieval only"
contains ask-retrieval-source "[1] Abraham Lincoln"
check ask-retrieval-json 0 "$twin" --home "$home" ask "What did Lincoln propose about emancipation?" --k 4 --json
holds ask-retrieval-json-trace python3 -c 'import json, sys; t = json.load(sys.stdin)
assert t["self_query"]["method"] == "fallback" and t["self_query"]["authors"] == ["Abraham Lincoln"], t
assert len(t["sources"]) == 4 and all(s["author"] == "Abraham Lincoln" for s in t["sources"]), t
assert "answer" not in t and t["id"] >= 1 and t["status"] == "ok", t
assert all(k in t["latency_ms"] for k in ("self_query", "expand", "retrieve", "rerank", "prompt", "total")), t'
check ask-bush 0 "$twin" --home "$home" ask "What did Bush say about the axis of evil?" --no-expand --json
holds ask-bush-both python3 -c 'import json, sys; t = json.load(sys.stdin)
assert sorted(t["self_query"]["authors"]) == ["George Bush", "George W Bush"], t["self_query"]
assert t["sources"][0]["author"] == "George W Bush", t["sources"]'
check ask-author 0 "$twin" --home "$home" ask "the war on poverty" --author "lyndon b johnson" --json
holds ask-author-only python3 -c 'import json, sys; t = json.load(sys.stdin)
assert t["self_query"]["method"] == "option" and {s["author"] for s in t["sources"]} == {"Lyndon B Johnson"}, t'

# The golden models: hybrid retrieval, reranking, an answer through the chat template.
check features-dense 0 "$twin" --home "$home" features --model "$gold/bert_embed"
check ask-model 0 "$twin" --home "$home" ask "What did Monroe say about colonization by European powers?" \
    --model "$gold/llama" --reranker "$gold/bert_rerank" -n 6 --json
holds ask-model-trace python3 -c 'import json, sys; t = json.load(sys.stdin)
assert t["self_query"]["method"] in ("llm", "fallback") and "llm_reply" in t["self_query"], t["self_query"]
assert t["self_query"]["authors"] == ["James Monroe"], t["self_query"]
assert len(t["expand"]["queries"]) >= 1 and t["retrieve"][0]["mode"] == "hybrid", t
assert all("rerank" in r for r in t["rerank"]) and len(t["sources"]) == 3, t
assert t["generate"]["completion_tokens"] >= 1 and isinstance(t["answer"], str), t
assert t["prompt"]["tokens"] > 0 and "[1] James Monroe" in t["prompt"]["user"], t["prompt"]'
check ask-model-text 0 "$twin" --home "$home" ask "Roosevelt on the four freedoms" \
    --model "$gold/llama" --no-expand -n 4 --show-context
contains ask-model-sources "Sources:"
contains ask-model-trace-line "[trace "

# Traces.
check traces-ls 0 "$twin" --home "$home" traces ls --limit 3 --json
holds traces-ls-three python3 -c 'import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert len(rows) == 3 and rows[0]["id"] > rows[1]["id"] > rows[2]["id"], rows
assert rows[0]["model"].endswith("llama") and rows[0]["completion_tokens"] >= 1, rows[0]'
check traces-ls-text 0 "$twin" --home "$home" traces ls
contains traces-ls-question "Roosevelt on the four freedoms"
check traces-show 0 "$twin" --home "$home" traces show 1
holds traces-show-detail python3 -c 'import json, sys; t = json.load(sys.stdin)
assert t["id"] == 1 and t["detail"]["question"].startswith("What did Lincoln") and t["status"] == "ok", t'

# Retrieval evaluation on a tiny labelled set.
cat >"$tmp/q.jsonl" <<'Q'
{"id": "q1", "question": "Which president warned European powers against new colonies in the Americas?", "relevant": ["1823_james_monroe"], "author": "James Monroe"}
{"id": "q2", "question": "What did Lincoln say about compensated emancipation?", "relevant": ["1862_abraham_lincoln"], "author": "Abraham Lincoln"}
Q
check eval 0 "$twin" --home "$home" eval retrieval --queries "$tmp/q.jsonl" --generated 20 --mode sparse --json
holds eval-rows python3 -c 'import json, sys
rows = [json.loads(l) for l in sys.stdin.read().splitlines()]
assert [(r["set"], r["self_query"]) for r in rows] == [("hand", False), ("hand", True), ("generated", False), ("generated", True)], rows
assert rows[1]["recall@10"] == 1.0 and rows[3]["queries"] == 20, rows'

# Bad input.
check ask-unknown-author 1 "$twin" --home "$home" ask "x" --author "Nobody Atall"
contains ask-unknown-author-says "Nobody Atall"
check traces-failed 0 "$twin" --home "$home" traces ls --limit 1 --json
holds traces-failed-status python3 -c 'import json, sys; t = json.loads(sys.stdin.read())
assert t["question"] == "x" and "Nobody Atall" in t["status"], t'
check ask-no-question 2 "$twin" --home "$home" ask
check ask-bad-model 1 "$twin" --home "$home" ask "x" --model "$tmp/nope"
check ask-encoder-as-llm 1 "$twin" --home "$home" ask "x" --model "$gold/bert_embed"
contains ask-encoder-says "decoder"
check traces-show-missing 1 "$twin" --home "$home" traces show 999
contains traces-show-missing-says "no trace 999"
check traces-bad 2 "$twin" --home "$home" traces frob
check eval-no-set 2 "$twin" --home "$home" eval retrieval
check eval-bad-file 1 "$twin" --home "$home" eval retrieval --queries "$tmp/nope.jsonl"

e2e_report ask
