#!/bin/sh
# Runs the GEMM-using suites on the CLBlast back end (their plain runs use
# --gemm auto, which is the host BLAS on CPU devices).
CAE_TEST_GEMM=clblast
export CAE_TEST_GEMM
./tests/check/test_runtime "$@" || exit 1
exec ./tests/check/test_ops_attention "$@"
