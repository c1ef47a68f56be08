# tests/common/lib.sh: what the shell tests share. Each one sources it with
#   . "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
# make check sets CAE_TOP_SRCDIR and CAE_TOP_BUILDDIR (absolute, so that
# distcheck's separate build folder works); by hand, run from the top.
# shellcheck shell=sh
top_srcdir=${CAE_TOP_SRCDIR:-.}
top=${CAE_TOP_BUILDDIR:-.}

# cae_workdir NAME: a fresh folder in $work, removed when the test exits.
cae_workdir() {
    work=$(mktemp -d "${TMPDIR:-/tmp}/cae-$1-XXXXXX") || exit 99
    trap 'rm -rf "$work"' EXIT
}

# cae_need_mpirun SECONDS: skip the test (exit 77) without mpirun; sets
# $limit, the prefix that stops a run stuck in a collective after SECONDS
# (empty without coreutils' timeout), so that make check cannot hang.
cae_need_mpirun() {
    if ! command -v mpirun >/dev/null 2>&1; then
        echo "SKIP: mpirun not found"
        exit 77
    fi
    cae_time_limit "$1"
}

# cae_time_limit SECONDS: sets $limit, a prefix that kills a run still going
# after SECONDS (then 10 more for a run that ignores SIGTERM), so that a hang
# fails make check instead of stalling it; empty without coreutils' timeout.
cae_time_limit() {
    limit=""
    if command -v timeout >/dev/null 2>&1; then
        limit="timeout -k 10 $1"
    fi
}

# cae_wait_lines FILE N: wait (up to 60 s) until FILE has N lines, e.g. a
# background run's metrics.jsonl once it has trained N steps.
cae_wait_lines() {
    i=0
    while [ "$(cat "$1" 2>/dev/null | wc -l)" -lt "$2" ] && [ $i -lt 600 ]; do
        sleep 0.1
        i=$((i + 1))
    done
}
