# The end-to-end tests' assertions, sourced by tests/e2e/*.sh: each counts into passed/failed
# and prints what it saw on a failure; a script ends with `e2e_report NAME`.
passed=0 failed=0

e2e_tmp() { # e2e_tmp NAME: $tmp, removed at exit with the processes in $pids; $home in it
    tmp=$(mktemp -d "/tmp/twin-e2e-$1-XXXXXX")
    pids=()
    trap e2e_cleanup EXIT
    home="$tmp/home"
}
e2e_cleanup() {
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null; done
    rm -rf "$tmp"
}

check() { # check NAME EXPECTED_RC COMMAND... ; output (stdout and stderr) in $out
    local name=$1 want=$2
    shift 2
    out=$("$@" 2>&1)
    local rc=$?
    if [ "$rc" -eq "$want" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name: exit $rc, wanted $want; output:"
        echo "$out"
    fi
}
contains() { # contains NAME TEXT: the last output holds TEXT
    if grep -qF -- "$2" <<<"$out"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1: output lacks '$2':"
        echo "$out"
    fi
}
equals() { # equals NAME TEXT: the last output is TEXT
    if [ "$out" = "$2" ]; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $1: output is not '$2':"
        echo "$out"
    fi
}
holds() { # holds NAME COMMAND...: the command succeeds (it reads the last output on stdin)
    local name=$1
    shift
    if "$@" <<<"$out"; then
        passed=$((passed + 1))
    else
        failed=$((failed + 1))
        echo "FAIL $name; output:"
        echo "$out" | head -20
    fi
}
json() { # json NAME PYTHON_ASSERTIONS [ARGS...]: on the last output, parsed as j
    local name=$1 code=$2
    shift 2
    holds "$name" python3 -c "import json, sys; j = json.load(sys.stdin)
$code" "$@"
}

e2e_report() { # e2e_report NAME: the closing line, and the exit status
    echo "$1: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
