#!/bin/sh
# gpu-mode.sh: the path a GPU runs, on whatever device make check has
# (CAE_CL_NATIVE_KERNELS=0: no native kernels, so CLBlast GEMMs; the fused
# attention core; a work-group per LayerNorm and cross-entropy row). First
# the mode takes effect (--gemm host refused in one line, --gemm auto is
# CLBlast, another value of the switch refused); then every conformance
# fixture (there also with the CPU kernel shapes: both attention cores on
# CLBlast), every op suite and the attentive head's.
set -u
. "${CAE_TOP_SRCDIR:-.}/tests/common/lib.sh"
cae_workdir gpu-mode
# the mode's own defaults, not the caller's overrides
unset CAE_CL_ATTENTION CAE_CL_ROW_KERNELS CAE_TEST_GEMM
CAE_CL_NATIVE_KERNELS=0
export CAE_CL_NATIVE_KERNELS
fail() { echo "FAIL: $*"; exit 1; }
fx="$top_srcdir/tests/fixtures/tiny"
args=$(cat "$fx/args.txt")
step() {
    # shellcheck disable=SC2086
    "$top/cae-cl-step" $args --weights "$fx/weights.safetensors" \
        --batch "$fx/batch.safetensors" --check "$fx/expected.safetensors" "$@" \
        > "$work/step.out" 2>&1
}
# one line, the refusal a GPU gives: nothing else printed
one_line() {
    [ "$(wc -l < "$work/step.out")" -eq 1 ] && grep -q "$1" "$work/step.out" ||
        { cat "$work/step.out"; fail "$2"; }
}

step --gemm host && fail "--gemm host ran under CAE_CL_NATIVE_KERNELS=0"
one_line "cannot run native kernels" "--gemm host: not the one-line refusal"
step || { cat "$work/step.out"; fail "the tiny fixture under CAE_CL_NATIVE_KERNELS=0"; }
grep -q "GEMM: CLBlast" "$work/step.out" || { cat "$work/step.out"; fail "--gemm auto is not CLBlast"; }
CAE_CL_NATIVE_KERNELS=2 step && fail "CAE_CL_NATIVE_KERNELS=2 accepted"
one_line "CAE_CL_NATIVE_KERNELS='2'" "CAE_CL_NATIVE_KERNELS=2: not a one-line error"

# oclgrind's runs pick their kernel shapes themselves: not repeated here
CK_RUN_CASE=fixtures "$top/tests/check/test_conformance" || exit 1
for suite in "$top"/tests/check/test_ops_*; do
    case $suite in *.*) continue ;; esac # objects, logs and results
    "$suite" || exit 1
done
exec "$top/tests/check/test_attentive"
