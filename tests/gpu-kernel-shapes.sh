#!/bin/sh
# Runs the op suites with the kernel shapes chosen for GPUs (a work-group
# per LayerNorm and cross-entropy row, the fused attention core; their plain runs take the CPU
# shapes on this CPU device), so both shapes are tested wherever the suites
# run. test_ops_attention also runs both attention cores by itself.
CAE_CL_ROW_KERNELS=group
CAE_CL_ATTENTION=fused
export CAE_CL_ROW_KERNELS CAE_CL_ATTENTION
./tests/test_ops_norm "$@" || exit 1
./tests/test_ops_loss "$@" || exit 1
exec ./tests/test_ops_attention "$@"
