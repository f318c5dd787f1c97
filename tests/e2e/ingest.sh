#!/usr/bin/env bash
# End to end: twin ingest, docs and authors on the State of the Union corpus and on a folder;
# bad input; and crash consistency — ingests killed with SIGKILL at several points, then run
# again, end with the same warehouse as an uninterrupted run.
# usage: ingest.sh PATH/TO/twin
set -u
twin=$1
root=$(cd "$(dirname "$0")/../.." && pwd)
corpus="$root/.cache/data/sotu"
tmp=$(mktemp -d /tmp/twin-e2e-ingest-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"
map="author=name,content=text,title=year,date=year"

# What the corpus says, read with Python: distinct authors, Washington's addresses.
n_authors=$(python3 -c 'import json, glob, sys
print(len({json.load(open(p))["name"] for p in glob.glob(sys.argv[1] + "/*.json")}))' "$corpus")

home="$tmp/home"
check init 0 "$twin" --home "$home" init
check ingest-sotu 0 "$twin" --home "$home" ingest "$corpus" --map "$map"
contains ingest-summary "found 233, ingested 233 new and 0 updated, 0 unchanged"
check authors 0 "$twin" --home "$home" authors ls
holds authors-count test "$(wc -l <<<"$out")" -eq "$n_authors"
contains authors-washington "George Washington"
check docs-washington 0 "$twin" --home "$home" docs ls --author "George Washington"
n_washington=$(ls "$corpus" | grep -c '_george_washington_.*\.json$')
holds docs-washington-count test "$(wc -l <<<"$out")" -eq "$n_washington"
contains docs-washington-1790 "1790-01-01"
id=$(head -1 <<<"$out" | cut -c1-8)
check docs-show 0 "$twin" --home "$home" docs show "$id"
contains docs-show-text "Fellow-Citizens of the Senate and House of Representatives"
contains docs-show-author "author:    George Washington"
check docs-show-json 0 "$twin" --home "$home" docs show "$id" --json
holds docs-show-json-parses python3 -c 'import json, sys; d = json.load(sys.stdin)
assert d["author"] == "George Washington" and d["title"] == "1790", d
assert d["metadata"]["party"] == "none" and d["content"].startswith("Fellow-Citizens"), d
assert d["extractor"].startswith("records/") and len(d["sha256"]) == 64, d'
check docs-ls-json 0 "$twin" --home "$home" docs ls --json --limit 5
holds docs-ls-json-5 test "$(wc -l <<<"$out")" -eq 5

# Re-ingest adds nothing; a removed document comes back, and the change log has it all.
check reingest 0 "$twin" --home "$home" ingest "$corpus" --map "$map" --json
holds reingest-json python3 -c 'import json, sys; s = json.load(sys.stdin)
assert (s["found"], s["inserted"], s["unchanged"]) == (233, 0, 233), s'
check rm 0 "$twin" --home "$home" docs rm "$id"
contains rm "removed 1 document"
check rm-again 1 "$twin" --home "$home" docs rm "$id"
contains rm-again-names "$id"
check reingest-after-rm 0 "$twin" --home "$home" ingest "$corpus" --map "$map"
contains reingest-after-rm "ingested 1 new"
check changes 0 python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
ops = [r[0] for r in db.execute("SELECT op FROM changes ORDER BY seq")]
assert ops.count("insert") == 234 and ops.count("delete") == 1 and ops[-2:] == ["delete", "insert"], ops
' "$home/twin.db"

# A folder of notes: Markdown, HTML, text, code; a binary skipped.
notes="$tmp/notes"
mkdir -p "$notes/sub"
printf '# On liberty\n\nThe *price* of liberty is eternal vigilance.\n' >"$notes/liberty.md"
printf '<html><head><title>Union</title></head><body><nav>Home | About</nav><p>A more perfect union.</p><footer>(c) 2026</footer></body></html>' >"$notes/union.html"
printf 'int main(void)\n{\n    return 0;\n}\n' >"$notes/sub/main.c"
printf 'PNG\0\0\0binary' >"$notes/data.bin"
check ingest-folder 0 "$twin" --home "$home" ingest "$notes" --author "Ada Lovelace" --json
holds ingest-folder-json python3 -c 'import json, sys; s = json.load(sys.stdin)
assert s["inserted"] == 3 and s["skipped"] >= 1, s'
check folder-docs 0 "$twin" --home "$home" docs ls --author "Ada Lovelace" --json
holds folder-docs-fields python3 -c 'import json, sys
docs = {d["title"]: d for d in map(json.loads, sys.stdin.read().splitlines())}
assert docs["On liberty"]["category"] == "article", docs
assert docs["Union"]["bytes"] > 0 and docs["sub/main.c"]["category"] == "repository", docs'
uid=$("$twin" --home "$home" docs ls --author "Ada Lovelace" --json |
    python3 -c 'import json, sys; print([d["id"] for d in map(json.loads, sys.stdin) if d["title"] == "Union"][0])')
check folder-html-text 0 "$twin" --home "$home" docs show "$uid"
contains folder-html-main "A more perfect union."
holds folder-html-no-nav bash -c '! grep -q "Home | About"'

# Bad input: nothing written, a message that names the input.
before=$("$twin" --home "$home" docs ls | wc -l)
check missing-source 1 "$twin" --home "$home" ingest "$corpus" "$tmp/nope" --map "$map"
contains missing-source-names "$tmp/nope"
check bad-map 1 "$twin" --home "$home" ingest "$corpus/1790_george_washington_n.json" --map "writer=name"
contains bad-map-names "writer"
check no-source 2 "$twin" --home "$home" ingest --author X
check bad-option 2 "$twin" --home "$home" ingest "$corpus" --frob
check bad-depth 2 "$twin" --home "$home" ingest http://127.0.0.1:9/ --depth x
check docs-bad-sub 2 "$twin" --home "$home" docs frob
check docs-show-missing 1 "$twin" --home "$home" docs show 00000000-nope
after=$("$twin" --home "$home" docs ls | wc -l)
holds nothing-written test "$before" -eq "$after"

# Crash consistency: the reference is one uninterrupted run; each victim home is killed at a
# different point of its ingest, then the same command runs to the end.
snapshot() { # the warehouse's content, without ids and times
    python3 -c 'import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
assert db.execute("PRAGMA foreign_key_check").fetchall() == []
for r in db.execute("SELECT d.uri, d.sha256, a.full_name, d.title, d.published_at, d.category "
                    "FROM documents d JOIN authors a ON a.id = d.author_id ORDER BY d.uri"):
    print(*r, sep="|")
print(db.execute("SELECT count(*) FROM changes WHERE op = \"insert\"").fetchone()[0])' "$1/twin.db"
}
ref="$tmp/ref"
"$twin" --home "$ref" init >/dev/null
"$twin" --home "$ref" ingest "$corpus" --map "$map" --quiet >/dev/null
want=$(snapshot "$ref")
holds ref-snapshot test "$(wc -l <<<"$want")" -eq 234
for delay in 0.05 0.2 0.4 0.7 1.0 1.5; do
    v="$tmp/victim-$delay"
    "$twin" --home "$v" init >/dev/null
    "$twin" --home "$v" ingest "$corpus" --map "$map" --quiet >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    partial=$(snapshot "$v" | wc -l) # consistent even now
    check "crash-rerun-$delay" 0 "$twin" --home "$v" ingest "$corpus" --map "$map" --quiet
    out=$(snapshot "$v")
    equals "crash-same-$delay (killed with $partial rows)" "$want"
done

e2e_report ingest
