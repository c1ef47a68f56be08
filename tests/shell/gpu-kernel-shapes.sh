#!/bin/sh
# Runs the op suites and the attentive head's fixtures with the kernel
# shapes chosen for GPUs (a work-group per LayerNorm and cross-entropy row,
# the fused attention core; their plain runs take the CPU shapes on this CPU
# device), so both shapes are tested wherever the suites run.
CAE_CL_ROW_KERNELS=group
CAE_CL_ATTENTION=fused
export CAE_CL_ROW_KERNELS CAE_CL_ATTENTION
./tests/check/test_ops_norm "$@" || exit 1
./tests/check/test_ops_loss "$@" || exit 1
./tests/check/test_ops_attention "$@" || exit 1
exec ./tests/check/test_attentive "$@"
