#!/bin/sh
# Runs every op suite (tests/check/test_ops_*) and the attentive head's
# fixtures with the kernel shapes chosen for GPUs (a work-group per LayerNorm
# and cross-entropy row, the fused attention core; their plain runs take the
# CPU shapes on this CPU device), so both shapes are tested wherever the
# suites run.
CAE_CL_ROW_KERNELS=group
CAE_CL_ATTENTION=fused
export CAE_CL_ROW_KERNELS CAE_CL_ATTENTION
for suite in tests/check/test_ops_*; do
    case $suite in *.*) continue ;; esac # objects, logs and results
    "./$suite" "$@" || exit 1
done
exec ./tests/check/test_attentive "$@"
