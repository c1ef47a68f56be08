#!/bin/sh
# sanitizer-suites.sh SRC BUILD: configure the clean source tree SRC (make
# check-sanitizers passes a fresh distdir, so this works from a tree that is
# itself configured in place) in BUILD with --enable-sanitizers (ASan, UBSan,
# LSan), build the host-side suites (safetensors, data pipeline, augmentation
# and masking, checkpoint I/O, optimizer and schedules, LARS, the position
# table) and the programs, run each suite and
# tests/shell/bad-inputs.sh (the argument parser and every loader on bad input);
# fails on a failed test or on any sanitizer report.
set -eu
[ $# -eq 2 ] || { echo "usage: $0 SRC BUILD" >&2; exit 2; }
src=$(cd "$1" && pwd)
build=$2
suites="tests/check/test_safetensors tests/check/test_data tests/check/test_augment tests/check/test_cls_augment tests/check/test_checkpoint tests/check/test_optim \
    tests/check/test_lars tests/check/test_ops_posembed tests/check/test_loader_cls"
scripts="tests/shell/bad-inputs.sh"

rm -rf "$build"
mkdir -p "$build"
build=$(cd "$build" && pwd)
cd "$build"
"$src/configure" -q --enable-sanitizers --enable-werror
make -j"$(nproc)" $suites cae-cl-train cae-cl-step

supp="$src/tests/sanitizers"
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1"
LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
CK_FORK=no
CAE_TOP_SRCDIR=$src
CAE_TOP_BUILDDIR=$build
export ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS CK_FORK CAE_TOP_SRCDIR CAE_TOP_BUILDDIR

status=0
for t in $suites $scripts; do
    log="$build/$t.sanitizers.log"
    mkdir -p "$(dirname "$log")"
    case $t in
    *.sh) set -- sh "$src/$t" ;;
    *) set -- "./$t" ;;
    esac
    if "$@" > "$log" 2>&1; then rc=0; else rc=$?; fi
    # a report is a failure even if the program exited 0
    if grep -E -q "ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: (Address|Undefined|Leak)" "$log"; then
        [ "$rc" -ne 0 ] || rc=1
    fi
    if [ "$rc" -eq 0 ]; then
        echo "PASS (sanitizers): $t"
    else
        echo "FAIL (sanitizers): $t, exit status $rc"
        cat "$log"
        status=1
    fi
done
exit $status
