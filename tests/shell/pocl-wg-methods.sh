#!/bin/sh
# pocl-wg-methods.sh: the kernel suites (every tests/check/test_ops_* and
# the tokenizer's) again under each of PoCL's work-group methods (how PoCL
# turns a work-group into CPU loops: a kernel that only works under one of
# them depends on unspecified behaviour, such as work-item order or missing
# barriers). PoCL 3.1 offers loopvec and
# workitemloops; cbs (from PoCL 4) runs too where the library has it.
# Skipped when the OpenCL platform is not PoCL.
set -u
lib=$(ls /usr/lib/*/libpocl.so.* /usr/lib/libpocl.so.* 2>/dev/null | head -1)
[ -n "$lib" ] || { echo "SKIP: PoCL not installed"; exit 77; }
methods="loopvec workitemloops"
if command -v strings > /dev/null 2>&1 && strings "$lib" | grep -qx cbs; then
    methods="$methods cbs"
fi
status=0
for m in $methods; do
    cache=$(mktemp -d "${TMPDIR:-/tmp}/cae-pocl-$m-XXXXXX") || exit 99
    # the suites' programs, not their objects, logs or results
    for suite in $(cd tests/check && ls test_ops_* | grep -v '\.') test_dalle; do
        # a fresh PoCL cache and no cae-cl cache: every kernel is rebuilt this way
        if POCL_WORK_GROUP_METHOD=$m POCL_CACHE_DIR=$cache CAE_CL_NO_CACHE=1 CK_FORK=no \
            "./tests/check/$suite" > "$cache/$suite.out" 2>&1; then
            echo "ok: $suite with POCL_WORK_GROUP_METHOD=$m"
        else
            echo "FAIL: $suite with POCL_WORK_GROUP_METHOD=$m"
            tail -20 "$cache/$suite.out"
            status=1
        fi
    done
    rm -rf "$cache"
done
exit $status
