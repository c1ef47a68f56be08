#!/bin/sh
# Runs the DALL-E tokenizer suite on the CLBlast back end (its plain run
# uses --gemm auto, which is the host BLAS on CPU devices).
CAE_TEST_GEMM=clblast
export CAE_TEST_GEMM
exec ./tests/check/test_dalle "$@"
