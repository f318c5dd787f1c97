#!/usr/bin/env bash
# End to end: the twin binary's global options, exit codes, init and status on real homes.
# usage: cli.sh PATH/TO/twin
set -u
twin=$1
tmp=$(mktemp -d /tmp/twin-e2e-cli-XXXXXX)
trap 'rm -rf "$tmp"' EXIT
. "$(dirname "$0")/lib.sh"

check help 0 "$twin" --help
contains help-lists-init "init"
contains help-lists-status "status"
check version 0 "$twin" --version
contains version "twin 0."
check no-verb 2 "$twin"
check unknown-verb 2 "$twin" frobnicate
contains unknown-verb "unknown verb 'frobnicate'"
check unknown-option 2 "$twin" --frob status
check help-verb 0 "$twin" help init
contains help-verb "usage: twin [--home DIR] init"
check help-unknown 2 "$twin" help nope
check verb-help 0 "$twin" status --help
contains verb-help "usage: twin [--home DIR] status"

home="$tmp/home"
check status-missing 1 "$twin" --home "$home" status
contains status-missing-names "$home"
contains status-missing-hint "twin init"
check init 0 "$twin" --home "$home" init
contains init "created the twin home at $home"
check init-again 0 "$twin" --home "$home" init
contains init-again "checked"
check init-extra-arg 2 "$twin" --home "$home" init extra
check status 0 "$twin" --home "$home" status
contains status-schema "schema:    version 5"
contains status-documents "documents            0 rows"
contains status-meta-table "meta"
contains status-backends "backends:  cpu"

# $TWIN_HOME, and --home over it.
check env-home 0 env TWIN_HOME="$tmp/envhome" "$twin" init
[ -f "$tmp/envhome/twin.db" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL env-home"; }
check flag-over-env 0 env TWIN_HOME="$tmp/nowhere" "$twin" --home="$home" status
[ ! -e "$tmp/nowhere" ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL flag-over-env"; }

# A folder with other files is refused and left as it was.
mkdir -p "$tmp/mine" && echo keep >"$tmp/mine/notes.txt"
check foreign-folder 1 "$twin" --home "$tmp/mine" init
contains foreign-folder "not a twin home"
[ "$(ls -A "$tmp/mine")" = notes.txt ] && passed=$((passed + 1)) || { failed=$((failed + 1)); echo "FAIL foreign-folder-untouched"; }

check bad-log-level 2 env TWIN_LOG=loud "$twin" --home "$home" status
contains bad-log-level "TWIN_LOG"

e2e_report cli
