#!/bin/sh
# Runs the GEMM-using suites on the CLBlast back end (their plain runs use
# --gemm auto, which is the host BLAS on CPU devices): the runtime's GEMM
# tests, the linear layer, and attention (the softmax beside it).
CAE_TEST_GEMM=clblast
export CAE_TEST_GEMM
for suite in test_runtime test_ops_linear test_ops_softmax test_ops_mha; do
    ./tests/check/$suite "$@" || exit 1
done
